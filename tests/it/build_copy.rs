//! COPY/ADD into a real overlayfs merged dir: Docker's source and destination
//! rules, owners and modes, `.dockerignore`, archives, and symlink escapes.

use crate::build_common;

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use build_common::*;
use d2v::build::copy::{copy, CopyError, CopyRequest};
use d2v::build::overlay::Overlay;
use d2v::dockerfile::{CopyStep, Heredoc};

fn step(sources: &[&str], dest: &str) -> CopyStep {
    CopyStep::new(
        false,
        sources.iter().map(|s| s.to_string()).collect(),
        dest.into(),
    )
}

struct Env {
    _dir: tempfile::TempDir,
    base: PathBuf,
    lower: PathBuf,
    ctx: PathBuf,
    n: std::cell::Cell<u32>,
}

fn env() -> Option<Env> {
    if !facilities(false) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let lower = base.join("lower");
    std::fs::create_dir_all(lower.join("etc")).unwrap();
    std::fs::write(
        lower.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nd2vtestuser:x:1234:1300::/home/u:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        lower.join("etc/group"),
        "root:x:0:\nd2vtestgroup:x:1555:\nusers:x:1300:\n",
    )
    .unwrap();
    let ctx = base.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    Some(Env {
        _dir: dir,
        base,
        lower,
        ctx,
        n: 0.into(),
    })
}

impl Env {
    /// Run one COPY over the lower dir; the upper dir (the layer's content).
    fn run(&self, step: CopyStep, src_root: Option<&Path>) -> Result<PathBuf, CopyError> {
        self.n.set(self.n.get() + 1);
        let scratch = scratch(&self.base, &format!("step{}", self.n.get()));
        let ov = Overlay::create(&scratch, vec![self.lower.clone()]).unwrap();
        let req = CopyRequest {
            step,
            src_root: src_root.unwrap_or(&self.ctx).to_path_buf(),
            from_context: src_root.is_none(),
            dockerfile_in_context: Some("Dockerfile".into()),
            workdir: "/".into(),
            users_root: None,
        };
        let result = ov.with_mounted(|merged| copy(&req, merged)).unwrap();
        assert!(
            mounts_mentioning(&ov.merged).is_empty(),
            "overlay left mounted"
        );
        result.map(|()| ov.upper.clone())
    }

    fn file(&self, rel: &str, content: &str, mode: u32) {
        let p = self.ctx.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn meta(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn files_keep_mode_get_root_owner_and_dirs_copy_their_contents() {
    let Some(e) = env() else { return };
    e.file("a.txt", "A", 0o640);
    std::os::unix::fs::chown(e.ctx.join("a.txt"), Some(4321), Some(4321)).unwrap();
    e.file("dir/sub/b", "B", 0o755);
    symlink("sub/b", e.ctx.join("dir/link")).unwrap();
    let up = e.run(step(&["a.txt"], "/dst/"), None).unwrap();
    let m = meta(&up.join("dst/a.txt"));
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 0));
    let d = meta(&up.join("dst"));
    assert_eq!((d.mode() & 0o7777, d.uid()), (0o755, 0));

    let up = e.run(step(&["dir"], "/d2"), None).unwrap();
    assert_eq!(std::fs::read_to_string(up.join("d2/sub/b")).unwrap(), "B");
    assert_eq!(meta(&up.join("d2/sub/b")).mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read_link(up.join("d2/link")).unwrap(),
        Path::new("sub/b")
    );
    assert!(
        !up.join("d2/dir").exists(),
        "a directory source copies its contents"
    );

    // File to a new file name.
    let up = e.run(step(&["a.txt"], "/renamed"), None).unwrap();
    assert_eq!(std::fs::read_to_string(up.join("renamed")).unwrap(), "A");
}

#[test]
fn globs_match_per_element_and_several_sources_need_a_directory() {
    let Some(e) = env() else { return };
    e.file("x1.txt", "1", 0o644);
    e.file("x2.txt", "2", 0o644);
    e.file("y.md", "y", 0o644);
    e.file("sub/x3.txt", "3", 0o644);
    let up = e.run(step(&["x?.txt"], "/out/"), None).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(up.join("out"))
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["x1.txt", "x2.txt"]);
    let up = e.run(step(&["*/x[0-9].txt"], "/o2/"), None).unwrap();
    assert!(up.join("o2/x3.txt").exists());
    assert!(matches!(
        e.run(step(&["x1.txt", "x2.txt"], "/file"), None),
        Err(CopyError::DestNotDir)
    ));
    assert!(matches!(
        e.run(step(&["*.txt"], "/file"), None),
        Err(CopyError::DestNotDir)
    ));
    assert!(
        e.run(step(&["nomatch*"], "/none/"), None).is_ok(),
        "an empty wildcard is not an error"
    );
    assert!(matches!(
        e.run(step(&["missing"], "/m"), None),
        Err(CopyError::NotFound(_))
    ));
}

#[test]
fn chown_names_resolve_in_the_target_rootfs_and_chmod_is_octal_or_symbolic() {
    let Some(e) = env() else { return };
    e.file("a", "A", 0o644);
    let mut s = step(&["a"], "/a");
    s.chown = Some("d2vtestuser:d2vtestgroup".into());
    s.chmod = Some("0600".into());
    let up = e.run(s, None).unwrap();
    let m = meta(&up.join("a"));
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 1555, 0o600));
    let mut s = step(&["a"], "/b");
    s.chown = Some("d2vtestuser".into());
    let m = meta(&e.run(s, None).unwrap().join("b"));
    assert_eq!(
        (m.uid(), m.gid()),
        (1234, 1300),
        "a user name takes its primary group"
    );
    let mut s = step(&["a"], "/c");
    s.chown = Some("77".into());
    let m = meta(&e.run(s, None).unwrap().join("c"));
    assert_eq!((m.uid(), m.gid()), (77, 77));
    let mut s = step(&["a"], "/d");
    s.chown = Some("root:nosuchgroup".into());
    assert!(matches!(e.run(s, None), Err(CopyError::Chown(_))));
    let mut s = step(&["a"], "/e");
    s.chmod = Some("u+x,o-r".into());
    let m = meta(&e.run(s, None).unwrap().join("e"));
    assert_eq!(m.mode() & 0o7777, 0o740);
    let mut s = step(&["a"], "/d");
    s.chmod = Some("u+y".into());
    assert!(matches!(e.run(s, None), Err(CopyError::Chmod(_))));
}

#[test]
fn dockerignore_and_exclude_filter_the_context() {
    let Some(e) = env() else { return };
    e.file(
        ".dockerignore",
        "*.log\n!keep.log\nsecret\nDockerfile\n",
        0o644,
    );
    e.file("Dockerfile", "FROM scratch\n", 0o644);
    e.file("a.log", "no", 0o644);
    e.file("keep.log", "yes", 0o644);
    e.file("secret/s", "no", 0o644);
    e.file("src/main.c", "int main;", 0o644);
    e.file("src/notes.md", "md", 0o644);
    let up = e.run(step(&["."], "/app/"), None).unwrap();
    assert!(up.join("app/keep.log").exists());
    assert!(up.join("app/src/main.c").exists());
    assert!(
        up.join("app/Dockerfile").exists(),
        "the Dockerfile is still sent"
    );
    assert!(!up.join("app/a.log").exists());
    assert!(!up.join("app/secret").exists());
    assert!(matches!(
        e.run(step(&["a.log"], "/x"), None),
        Err(CopyError::NotFound(_))
    ));
    let mut s = step(&["src"], "/e/");
    s.exclude = vec!["*.md".into(), "src/*.md".into()];
    let up = e.run(s, None).unwrap();
    assert!(up.join("e/main.c").exists());
    assert!(!up.join("e/notes.md").exists());
}

#[test]
fn image_symlinks_cannot_send_a_copy_outside_the_rootfs() {
    let Some(e) = env() else { return };
    e.file("payload", "P", 0o644);
    let outside = e.base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let up_levels = "../".repeat(20);
    symlink(
        format!("{up_levels}{}", outside.display()),
        e.lower.join("rel"),
    )
    .unwrap();
    symlink(&outside, e.lower.join("abs")).unwrap();
    symlink("/", e.lower.join("root")).unwrap();
    for dest in ["/rel/", "/abs/", "/root/../../../../tmp/", "/rel/deeper/"] {
        let up = e.run(step(&["payload"], dest), None).unwrap();
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "COPY to {dest} escaped into {}",
            outside.display()
        );
        // It landed inside the rootfs instead.
        let inside: Vec<_> = walkdir::WalkDir::new(&up)
            .into_iter()
            .filter_map(|x| x.ok())
            .filter(|x| x.file_name() == "payload")
            .collect();
        assert_eq!(inside.len(), 1, "{dest}");
    }
    // A file destination through a symlinked parent stays inside too.
    e.run(step(&["payload"], "/abs/file"), None).unwrap();
    assert!(!outside.join("file").exists());
}

#[test]
fn context_symlinks_are_followed_only_inside_the_context() {
    let Some(e) = env() else { return };
    std::fs::write(e.base.join("host-secret"), "HOST").unwrap();
    symlink("../host-secret", e.ctx.join("up")).unwrap();
    symlink(e.base.join("host-secret"), e.ctx.join("abs")).unwrap();
    e.file("real", "REAL", 0o644);
    symlink("real", e.ctx.join("good")).unwrap();
    e.file("d/inner", "I", 0o644);
    symlink("../../host-secret", e.ctx.join("d/nested")).unwrap();
    // A top-level symlink is followed (inside the context): content, not link.
    let up = e.run(step(&["good"], "/g"), None).unwrap();
    assert!(meta(&up.join("g")).is_file());
    assert_eq!(std::fs::read_to_string(up.join("g")).unwrap(), "REAL");
    // Links out of the context resolve inside it, where there is nothing.
    assert!(matches!(
        e.run(step(&["up"], "/u"), None),
        Err(CopyError::NotFound(_))
    ));
    assert!(matches!(
        e.run(step(&["abs"], "/a"), None),
        Err(CopyError::NotFound(_))
    ));
    // Links inside copied dirs are copied as links.
    let up = e.run(step(&["d"], "/d/"), None).unwrap();
    assert!(meta(&up.join("d/nested")).file_type().is_symlink());
    for entry in walkdir::WalkDir::new(&up)
        .into_iter()
        .filter_map(|x| x.ok())
    {
        if entry.file_type().is_file() {
            assert_ne!(std::fs::read(entry.path()).unwrap(), b"HOST");
        }
    }
}

#[test]
fn from_a_rootfs_owners_are_kept_and_paths_resolve_in_that_root() {
    let Some(e) = env() else { return };
    let stage = e.base.join("stage");
    std::fs::create_dir_all(stage.join("app")).unwrap();
    std::fs::write(stage.join("app/bin"), "BIN").unwrap();
    std::os::unix::fs::chown(stage.join("app/bin"), Some(1000), Some(1001)).unwrap();
    symlink("/app", stage.join("link")).unwrap();
    let up = e
        .run(step(&["/link/bin"], "/usr/local/bin/"), Some(&stage))
        .unwrap();
    let m = meta(&up.join("usr/local/bin/bin"));
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(meta(&up.join("usr/local")).mode() & 0o7777, 0o755);
}

fn tar_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o640);
    h.set_uid(7);
    h.set_gid(8);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "pkg/hello.txt", &b"hello"[..])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_entry_type(tar::EntryType::Symlink);
    b.append_link(&mut h, "pkg/link", "/etc/passwd").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    // A member trying to climb out of the destination.
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../../escaped");
    h.set_cksum();
    b.append(&h, &b"esc"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn add_unpacks_local_tar_gzip_and_zstd_archives_inside_the_dest() {
    let Some(e) = env() else { return };
    let raw = tar_bytes();
    std::fs::write(e.ctx.join("a.tar"), &raw).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    std::fs::write(e.ctx.join("a.tgz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        e.ctx.join("a.tar.zst"),
        zstd::encode_all(&raw[..], 3).unwrap(),
    )
    .unwrap();
    for name in ["a.tar", "a.tgz", "a.tar.zst"] {
        let mut s = step(&[name], "/ex/");
        s.is_add = true;
        let up = e.run(s, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(up.join("ex/pkg/hello.txt")).unwrap(),
            "hello",
            "{name}"
        );
        let m = meta(&up.join("ex/pkg/hello.txt"));
        assert_eq!(
            (m.mode() & 0o777, m.uid(), m.gid()),
            (0o640, 7, 8),
            "archive owners are kept"
        );
        assert_eq!(
            std::fs::read_link(up.join("ex/pkg/link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(
            up.join("ex/escaped").exists(),
            "{name}: .. is clamped at the destination"
        );
        assert!(!e.base.join("escaped").exists());
    }
    // COPY does not unpack; ADD --unpack=false neither.
    let up = e.run(step(&["a.tgz"], "/c/"), None).unwrap();
    assert!(meta(&up.join("c/a.tgz")).is_file());
    let mut s = step(&["a.tar"], "/c/");
    s.is_add = true;
    s.unpack = Some(false);
    assert!(meta(&e.run(s, None).unwrap().join("c/a.tar")).is_file());
}

#[test]
fn heredocs_and_parents() {
    let Some(e) = env() else { return };
    let mut s = step(&[], "/etc/motd");
    s.heredocs = vec![Heredoc {
        name: "EOF".into(),
        content: "hello\n".into(),
        expand: true,
    }];
    let up = e.run(s, None).unwrap();
    assert_eq!(
        std::fs::read_to_string(up.join("etc/motd")).unwrap(),
        "hello\n"
    );
    assert_eq!(meta(&up.join("etc/motd")).mode() & 0o777, 0o644);

    e.file("a/b/c.txt", "C", 0o644);
    e.file("a/x/c.txt", "X", 0o644);
    let mut s = step(&["a/*/c.txt"], "/p/");
    s.parents = true;
    let up = e.run(s, None).unwrap();
    assert_eq!(
        std::fs::read_to_string(up.join("p/a/b/c.txt")).unwrap(),
        "C"
    );
    assert_eq!(
        std::fs::read_to_string(up.join("p/a/x/c.txt")).unwrap(),
        "X"
    );
    let mut s = step(&["a/./b/c.txt"], "/q/");
    s.parents = true;
    let up = e.run(s, None).unwrap();
    assert_eq!(std::fs::read_to_string(up.join("q/b/c.txt")).unwrap(), "C");
}

#[test]
fn add_unpacks_bzip2_and_xz_archives_too() {
    let Some(e) = env() else { return };
    let raw = tar_bytes();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    std::io::Write::write_all(&mut bz, &raw).unwrap();
    std::fs::write(e.ctx.join("a.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut &raw[..], &mut xz).unwrap();
    std::fs::write(e.ctx.join("a.tar.xz"), xz).unwrap();
    for name in ["a.tar.bz2", "a.tar.xz"] {
        let mut s = step(&[name], "/ex/");
        s.is_add = true;
        let up = e.run(s, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(up.join("ex/pkg/hello.txt")).unwrap(),
            "hello",
            "{name}"
        );
    }
}

/// A one-shot HTTP server on localhost answering every request with `body`.
fn serve(body: &'static [u8], requests: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut stream, head.as_bytes());
            let _ = std::io::Write::write_all(&mut stream, body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_downloads_urls_with_checksum_mtime_and_mode_0600() {
    let Some(e) = env() else { return };
    let base = serve(b"downloaded", 3);
    let mut s = step(&[&format!("{base}/files/tool.tar.gz?v=1")], "/opt/");
    s.is_add = true;
    use sha2::Digest;
    s.checksum = Some(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(b"downloaded"))
    ));
    let up = e.run(s, None).unwrap();
    let p = up.join("opt/tool.tar.gz");
    assert_eq!(
        std::fs::read(&p).unwrap(),
        b"downloaded",
        "URLs are not unpacked"
    );
    let m = meta(&p);
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.mtime()),
        (0o600, 0, 784111777)
    );

    let mut s = step(&[&format!("{base}/x")], "/y");
    s.is_add = true;
    s.checksum = Some(format!("sha256:{}", "0".repeat(64)));
    assert!(matches!(e.run(s, None), Err(CopyError::Url(_))));

    let s = step(&[&format!("{base}/x")], "/y");
    assert!(
        matches!(e.run(s, None), Err(CopyError::Unsupported(_))),
        "COPY takes no URLs"
    );
}

#[test]
fn hard_links_inside_a_copied_tree_stay_hard_links() {
    let Some(e) = env() else { return };
    e.file("tree/a", "same", 0o644);
    std::fs::hard_link(e.ctx.join("tree/a"), e.ctx.join("tree/b")).unwrap();
    let up = e.run(step(&["tree"], "/t/"), None).unwrap();
    let (a, b) = (meta(&up.join("t/a")), meta(&up.join("t/b")));
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    assert_eq!(std::fs::read_to_string(up.join("t/b")).unwrap(), "same");
}
