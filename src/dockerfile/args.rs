//! ARG scopes: the predefined platform args, proxy args, the global scope
//! (ARGs before the first FROM, usable in FROM lines), and the warning for
//! build args nothing declares. In-stage ARGs are dispatched with the stage.

use super::error::{FrontendError, SourceMap};
use super::instruction::Instruction;
use super::lex::{self, expand_word, split_words};
use super::PLATFORM;
use std::collections::HashSet;

/// Args in a scope, in declaration order; `None` for an ARG with no value.
pub(crate) type ArgList = Vec<(String, Option<String>)>;

/// Proxy build args: usable without an ARG, never in the image config.
pub(crate) const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The predefined platform args, valued for linux/amd64.
pub(crate) fn predefined_args() -> Vec<(String, Option<String>)> {
    [
        ("TARGETPLATFORM", PLATFORM),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "amd64"),
        ("TARGETVARIANT", ""),
        ("BUILDPLATFORM", PLATFORM),
        ("BUILDOS", "linux"),
        ("BUILDARCH", "amd64"),
        ("BUILDVARIANT", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
    .collect()
}

/// The args that have a value, as expansion variables.
pub(crate) fn with_values(args: &[(String, Option<String>)]) -> Vec<(String, String)> {
    args.iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect()
}

/// The proxy args given as build args (in scope in every stage).
pub(crate) fn proxy_args(build_args: &[(String, String)]) -> Vec<(String, Option<String>)> {
    build_args
        .iter()
        .filter(|(k, _)| PROXY_ARGS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect()
}

/// The global scope: predefined args, then each ARG before the first FROM
/// (a build arg overrides its default). Also returns the declared names.
pub(crate) fn global_scope(
    arg_insts: &[&Instruction],
    escape: char,
    build_args: &[(String, String)],
    map: &SourceMap<'_>,
) -> Result<(ArgList, HashSet<String>), FrontendError> {
    let mut global_args = predefined_args();
    let mut declared: HashSet<String> = HashSet::new();
    for arg in arg_insts {
        let at = arg.args_at(0);
        for w in split_words(&arg.args.text, escape) {
            let vars = with_values(&global_args);
            let (key, default) = match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w.clone(), None),
            };
            let lex_err = |e: lex::LexError| map.error(at, Some("ARG"), e.0);
            let key = expand_word(&key, escape, &vars).map_err(lex_err)?;
            let default = match default {
                Some(d) => Some(expand_word(&d, escape, &vars).map_err(lex_err)?),
                None => None,
            };
            let value = build_args
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
                .or(default);
            declared.insert(key.clone());
            global_args.retain(|(k, _)| *k != key);
            global_args.push((key, value));
        }
    }
    Ok((global_args, declared))
}

/// One warning per build arg that no ARG in the planned stages (or the
/// global scope) declares, as `docker build` prints them.
pub(crate) fn unused_build_args(
    build_args: &[(String, String)],
    declared: &HashSet<String>,
) -> Vec<String> {
    let mut reported = HashSet::new();
    build_args
        .iter()
        .filter(|(k, _)| !declared.contains(k) && !PROXY_ARGS.contains(&k.as_str()))
        .filter(|(k, _)| reported.insert(k.clone()))
        .map(|(k, _)| {
            format!("build arg {k} was not consumed: no ARG in the target's stages declares it")
        })
        .collect()
}
