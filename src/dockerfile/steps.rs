//! The build plan's types: stages, steps and the state each step runs in.
//!
//! Everything here is `Serialize`: the builder derives cache keys from these
//! values, and `d2v plan` prints them.

use super::config::ImageConfig;
use super::error::Location;
use serde::Serialize;

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Base {
    /// `FROM scratch`: an empty filesystem and config.
    Scratch,
    /// An image reference, after ARG expansion.
    Image(String),
    /// An earlier stage, by its index in the Dockerfile.
    Stage(usize),
}

/// One build stage (a FROM and the instructions up to the next FROM).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// Index of the stage in the Dockerfile (0 for the first FROM).
    pub index: usize,
    /// The `AS` name, lower-cased as BuildKit compares it.
    pub name: Option<String>,
    /// What the stage starts from.
    pub base: Base,
    /// Filesystem and config steps, in order (ONBUILD triggers of the base first).
    pub steps: Vec<Step>,
    /// The image config at the end of the stage.
    pub config: ImageConfig,
}

/// One instruction to execute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Where the instruction is (for triggers: the FROM that ran them).
    pub location: Location,
    /// The instruction's first line as written, continuations joined.
    pub text: String,
    /// What to do.
    pub kind: StepKind,
    /// Env, args, user, workdir and shell as the step sees them.
    pub state: StepState,
}

/// The state a step runs in (a snapshot taken before the step).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StepState {
    /// The image env, in order, as `KEY=VALUE` (inherited entries included).
    pub env: Vec<String>,
    /// Build args in scope that have a value, in declaration order. For RUN,
    /// Docker adds those not shadowed by `env` to the process environment.
    pub args: Vec<(String, String)>,
    /// USER (empty: root).
    pub user: String,
    /// WORKDIR (absolute; `/` when unset).
    pub workdir: String,
    /// SHELL for shell-form commands.
    pub shell: Vec<String>,
}

/// The kinds of steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// RUN: execute a command in the stage's filesystem.
    Run(RunStep),
    /// COPY or ADD: put files into the stage's filesystem.
    Copy(CopyStep),
    /// WORKDIR: BuildKit creates the directory (with parents, owned by
    /// `state.user`) if it is missing; the path is absolute and clean.
    Workdir(String),
    /// ENV, LABEL, CMD, …: no filesystem change; the effect is in the
    /// following steps' state and the stage's config.
    Config,
}

/// A RUN instruction, ready to execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunStep {
    /// The process argv: exec form as written, or shell form wrapped in
    /// the current SHELL (heredocs already folded in as BuildKit does).
    pub argv: Vec<String>,
    /// Here-documents of the instruction, in order.
    pub heredocs: Vec<Heredoc>,
    /// When the command is a single heredoc starting with `#!`, BuildKit
    /// writes it to a file and runs that: this is the file, and `argv` runs it.
    pub script: Option<Heredoc>,
    /// `--mount` flags.
    pub mounts: Vec<RunMount>,
    /// `--network`.
    pub network: Network,
    /// `--security=insecure`.
    pub insecure: bool,
}

/// A here-document (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word (for COPY, the source's file name).
    pub name: String,
    /// The body (for `<<-`, leading tabs already stripped; for COPY with an
    /// unquoted delimiter, variables already expanded).
    pub content: String,
    /// False when the delimiter was quoted (no expansion).
    pub expand: bool,
}

/// `RUN --network=…`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The builder's default (sandboxed with network).
    #[default]
    Default,
    /// No network at all.
    None,
    /// The host's network namespace.
    Host,
}

/// The `type=` of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A read-only (by default) view of the context, a stage or an image.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret file (or env var).
    Secret,
    /// An SSH agent socket.
    Ssh,
}

/// Where a mount's or a COPY's files come from, when not the context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyFrom {
    /// An earlier stage by index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// One `RUN --mount=…`, with BuildKit's option names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunMount {
    /// `type=` (default `bind`).
    pub kind: MountKind,
    /// `target=` / `dst=` / `destination=`.
    pub target: Option<String>,
    /// `source=` / `src=`.
    pub source: Option<String>,
    /// `from=`: a stage or image (default: the context, or an empty cache).
    pub from: Option<CopyFrom>,
    /// `id=` (cache and secret).
    pub id: Option<String>,
    /// `sharing=shared|private|locked` (cache).
    pub sharing: Option<String>,
    /// `ro`/`readonly` or `rw`/`readwrite`; `None` means the type's default.
    pub readonly: Option<bool>,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `size=` (tmpfs, bytes).
    pub size: Option<u64>,
    /// `required` (secret, ssh).
    pub required: bool,
    /// `env=` (secret exposed as an env var).
    pub env: Option<String>,
}

/// A COPY or ADD instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyStep {
    /// True for ADD (URLs, git, and local archive unpacking allowed).
    pub is_add: bool,
    /// Source paths or patterns, expanded but not globbed.
    pub sources: Vec<String>,
    /// Here-document sources (file name and content).
    pub heredocs: Vec<Heredoc>,
    /// The destination, expanded (relative to `state.workdir` if relative).
    pub dest: String,
    /// `--from`: a stage or image instead of the context.
    pub from: Option<CopyFrom>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=mode`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// ADD `--checksum`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// ADD `--unpack` (`None`: the default, unpack local archives).
    pub unpack: Option<bool>,
}

impl CopyStep {
    /// `COPY SOURCES DEST` (or ADD) without flags or here-documents.
    pub fn new(is_add: bool, sources: Vec<String>, dest: String) -> CopyStep {
        CopyStep {
            is_add,
            sources,
            heredocs: Vec::new(),
            dest,
            from: None,
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            exclude: Vec::new(),
            checksum: None,
            keep_git_dir: false,
            unpack: None,
        }
    }
}
