//! `d2v build --stage-builder docker`: named stages built by the daemon.
//!
//! The daemon gets the whole Dockerfile, the context (`.dockerignore`
//! applied) and the build args, with `target` set to the stage; the image it
//! builds is exported into the store and its layers are the stage's result,
//! so `COPY --from=stage` reads files out of them.

use super::{Daemon, DaemonError};
use crate::build::executor::{StageBuilder, StageBuilderError};
use crate::dockerfile::Stage;
use crate::store::ExternalImage;
use crate::store::Store;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a running daemon build checks for an interruption.
const CANCEL_POLL: Duration = Duration::from_millis(250);

/// Where the Dockerfile goes in the context tar when it is not in the context.
const OUTSIDE_DOCKERFILE: &str = ".d2v-build.Dockerfile";

/// What the daemon needs to build any stage of one Dockerfile.
#[derive(Clone, Debug, Default)]
pub struct BuildRequest {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile's text.
    pub dockerfile_text: String,
    /// The Dockerfile's path relative to the context, when it is inside it.
    pub dockerfile_in_context: Option<String>,
    /// `--build-arg`s.
    pub build_args: Vec<(String, String)>,
    /// `--no-cache`: the daemon ignores its build cache too.
    pub no_cache: bool,
}

/// A [`StageBuilder`] that builds stages through a Docker-API daemon.
#[derive(Debug)]
pub struct DockerStageBuilder {
    daemon: Daemon,
    request: BuildRequest,
}

impl DockerStageBuilder {
    /// Connects to the daemon at `host`; an unreachable daemon is an error here
    /// since the user asked for it.
    pub fn connect(host: &str, request: BuildRequest) -> Result<DockerStageBuilder, DaemonError> {
        Ok(DockerStageBuilder {
            daemon: Daemon::connect(host)?,
            request,
        })
    }
}

/// The tag the daemon gives a stage it builds (`d2v-stage/NAME:HASH`, the hash
/// over the context path and Dockerfile, so builds of other projects don't
/// retag it).
pub fn stage_tag(stage_name: &str, request: &BuildRequest) -> String {
    let mut repo: String = stage_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    repo = repo.trim_matches('-').to_string();
    if repo.is_empty() {
        repo = "stage".into();
    }
    let hash = crate::store::oci::Digest::of(
        format!("{}\0{}", request.context.display(), request.dockerfile_text).as_bytes(),
    );
    format!("d2v-stage/{repo}:{}", &hash.hex()[..12])
}

impl StageBuilder for DockerStageBuilder {
    fn describe(&self) -> String {
        format!("the Docker daemon at {}", self.daemon.host())
    }

    fn build_stage(
        &self,
        store: &Store,
        stage: &Stage,
        output: &mut dyn FnMut(&[u8]),
        cancel: &AtomicBool,
    ) -> Result<ExternalImage, StageBuilderError> {
        let name = stage
            .name
            .as_deref()
            .ok_or("the daemon can only build named stages")?;
        let req = &self.request;
        let (dockerfile, extra) = match &req.dockerfile_in_context {
            Some(rel) => (rel.as_str(), None),
            None => (OUTSIDE_DOCKERFILE, Some(req.dockerfile_text.as_str())),
        };
        // The context goes to a scratch file first, then streams to the daemon.
        let scratch = store.scratch_dir()?;
        let tar_path = scratch.path().join("context.tar");
        let file = std::fs::File::create(&tar_path)?;
        super::context::write_context_tar(
            &req.context,
            dockerfile,
            extra,
            std::io::BufWriter::new(file),
        )?;
        let file = std::fs::File::open(&tar_path)?;
        let body = bollard::body_try_stream(futures_util::stream::unfold(file, |mut f| async {
            let mut buf = vec![0u8; 1 << 20];
            match f.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        }));

        let tag = stage_tag(name, req);
        let args: HashMap<String, String> = req.build_args.iter().cloned().collect();
        let options = BuildImageOptionsBuilder::new()
            .dockerfile(dockerfile)
            .t(&tag)
            .target(name)
            .buildargs(&args)
            .nocache(req.no_cache)
            .rm(true)
            .forcerm(true)
            .build();
        let daemon = &self.daemon;
        let mut id = None;
        daemon.runtime.block_on(async {
            let mut stream = daemon.docker.build_image(options, None, Some(body));
            loop {
                if cancel.load(Ordering::SeqCst) {
                    return Err("interrupted".to_string());
                }
                // Wake up now and then to notice an interruption.
                let next = tokio::time::timeout(CANCEL_POLL, stream.next()).await;
                let Ok(item) = next else { continue };
                let Some(item) = item else { break };
                let info = item.map_err(super::connect::error_message)?;
                if let Some(text) = &info.stream {
                    output(text.as_bytes());
                }
                if let Some(status) = &info.status {
                    output(format!("{status}\n").as_bytes());
                }
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(detail.trim().to_string());
                }
                if let Some(aux_id) = info.aux.and_then(|a| a.id) {
                    id = Some(aux_id);
                }
            }
            Ok::<(), String>(())
        })?;
        let id = match id {
            Some(id) => id,
            None => daemon
                .image_id(&tag)?
                .ok_or_else(|| format!("the daemon reported success but has no image {tag}"))?,
        };
        output(format!("exporting {id} ({tag}) from the daemon\n").as_bytes());
        Ok(daemon.export(store, &id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_tags_are_valid_references() {
        let req = BuildRequest::default();
        let tag = stage_tag("Build.Env_1-", &req);
        assert!(tag.starts_with("d2v-stage/build-env-1:"), "{tag}");
        assert!(crate::source::reference::normalize(&tag).is_some(), "{tag}");
    }
}
