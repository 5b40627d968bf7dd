//! The build context sent to a daemon: a tar of the context directory with
//! `.dockerignore` applied as the Docker CLI does, plus the Dockerfile.

use crate::build::dockerignore::DockerIgnore;
use std::io::Write;
use std::path::Path;

/// Writes the context at `context` as a tar to `out`. `dockerfile` is where
/// the Dockerfile is in the context (kept even if `.dockerignore` matches it);
/// when the Dockerfile lives outside the context, pass its text as
/// `extra_dockerfile` with the name to give it in the tar instead.
pub fn write_context_tar(
    context: &Path,
    dockerfile: &str,
    extra_dockerfile: Option<&str>,
    out: impl Write,
) -> Result<(), String> {
    let ignore = DockerIgnore::load(context)
        .and_then(|i| i.keep_build_files(dockerfile))
        .map_err(|e| e.to_string())?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    let mut walk = walkdir::WalkDir::new(context)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(|e| format!("reading the build context: {e}"))?;
        let rel = entry
            .path()
            .strip_prefix(context)
            .expect("walkdir stays under its root")
            .to_string_lossy()
            .into_owned();
        let kind = entry.file_type();
        if ignore.is_excluded(&rel) {
            if kind.is_dir() && !ignore.has_exceptions() {
                walk.skip_current_dir();
            }
            continue;
        }
        // Sockets, fifos and devices have no place in a context.
        if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
            continue;
        }
        tar.append_path_with_name(entry.path(), &rel)
            .map_err(|e| format!("adding {rel} to the build context: {e}"))?;
    }
    if let Some(text) = extra_dockerfile {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, dockerfile, text.as_bytes())
            .map_err(|e| format!("adding the Dockerfile to the build context: {e}"))?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| format!("writing the build context: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        tar::Archive::new(tar_bytes)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn applies_dockerignore_and_keeps_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join(".dockerignore"), "secret\nbuild/\nDockerfile\n").unwrap();
        std::fs::write(d.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(d.join("secret"), "x").unwrap();
        std::fs::write(d.join("app.txt"), "x").unwrap();
        std::fs::create_dir(d.join("build")).unwrap();
        std::fs::write(d.join("build/out"), "x").unwrap();
        std::os::unix::fs::symlink("app.txt", d.join("link")).unwrap();
        let mut out = Vec::new();
        write_context_tar(d, "Dockerfile", None, &mut out).unwrap();
        assert_eq!(
            names(&out),
            vec![".dockerignore", "Dockerfile", "app.txt", "link"]
        );

        let mut out = Vec::new();
        write_context_tar(d, ".d2v-dockerfile", Some("FROM x\n"), &mut out).unwrap();
        assert!(names(&out).contains(&".d2v-dockerfile".to_string()));
    }
}
