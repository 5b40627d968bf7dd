//! Oracle test for `d2v mount`: multi-layer images built by buildah from
//! `testdata/oracle/<case>/Dockerfile` are pushed to an OCI layout, imported into
//! d2v and mounted, and every path of the mount (type, mode, owner, size, mtime,
//! link target, device number, xattrs, content, hard-link count) must equal
//!
//! * (a) buildah's own view of the image (`buildah mount` of a container made from
//!   it: the kernel's overlayfs over buildah's layer store), and
//! * (b) an on-disk reference made by `umoci raw unpack` of the pushed layout
//!   (each layer tar extracted in order, applying OCI whiteouts).
//!
//! buildah runs with the overlay storage driver, not vfs: vfs computes a layer by
//! comparing whole trees, so it never writes an opaque-dir marker (`.wh..wh..opq`)
//! and a `RUN ln` to a lower file does not copy that file up; overlay's layer diffs
//! are real overlayfs upper dirs and have both, which is what d2v's own RUN steps
//! produce too. Each test has its own buildah storage, so the tests run in parallel
//! and leave nothing behind.
//!
//! Needs root, buildah, umoci, setfattr and setcap (Debian: buildah, umoci, attr,
//! libcap2-bin), and the overlay filesystem. With `CI=true` their absence fails.

use crate::harness;

use harness::tree::{assert_same, describe, Ignore};
use harness::{require, require_root_and, sh, D2v, Mounted};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A private buildah storage (overlay driver) holding the busybox fixture as
/// `base`, and an OCI layout the built images are pushed to. Everything is
/// removed on drop.
struct Buildah(harness::buildah::Buildah);

impl std::ops::Deref for Buildah {
    type Target = harness::buildah::Buildah;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Buildah {
    fn new() -> Buildah {
        let b = Buildah(harness::buildah::Buildah::new("d2v-oracle-", "overlay"));
        let fixture = harness::fixtures().join("busybox-oci");
        b.ok(&["pull", "-q", &format!("oci:{}:latest", fixture.display())]);
        let id = b.ok(&["images", "-q", "--no-trunc"]);
        b.ok(&["tag", id.trim(), "base"]);
        b
    }

    /// The OCI layout the built images are pushed to.
    fn layout(&self) -> PathBuf {
        self.dir().join("layout")
    }

    /// Builds `testdata/oracle/<case>` (after `prepare` adds generated files to a
    /// copy of the context) with one layer per step, and pushes it, uncompressed,
    /// to [`Buildah::layout`] as tag `case`.
    fn build(&self, case: &str, prepare: impl FnOnce(&Path)) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/oracle")
            .join(case);
        let ctx = self.dir().join(format!("ctx-{case}"));
        sh(&format!("cp -r {} {}", src.display(), ctx.display()));
        prepare(&ctx);
        self.ok(&[
            "bud",
            "-q",
            "--layers",
            "--isolation",
            "chroot",
            // mknod is refused in chroot isolation without it.
            "--cap-add",
            "CAP_MKNOD",
            "-t",
            case,
            ctx.to_str().unwrap(),
        ]);
        self.ok(&[
            "push",
            "-q",
            "--disable-compression",
            case,
            &format!("oci:{}:{case}", self.layout().display()),
        ]);
    }

    /// Mounts a container made from `image` and returns where.
    fn mount(&self, image: &str) -> PathBuf {
        let ctr = self.ok(&[
            "from",
            "--pull-never",
            "--name",
            &format!("{image}-ctr"),
            image,
        ]);
        PathBuf::from(self.ok(&["mount", ctr.trim()]).trim())
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.cmd().args(["umount", "--all"]).output();
        let _ = self.cmd().args(["rm", "--all"]).output();
        let _ = self.cmd().args(["rmi", "--all", "--force"]).output();
        // containers/storage may leave its overlay home bind-mounted on itself.
        let root = self.dir().to_string_lossy().into_owned();
        let mut left: Vec<String> = harness::mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&root))
            .collect();
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in left {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

/// What every comparison leaves out: directory sizes (each filesystem counts
/// them its own way: ext4 blocks, overlayfs, FUSE).
const IGNORE: Ignore = Ignore {
    mtime: false,
    dir_size: true,
};

/// One test's three views of an image.
struct Views {
    /// `umoci raw unpack` of the pushed layout.
    reference: BTreeMap<Vec<u8>, String>,
    /// `buildah mount`.
    buildah: BTreeMap<Vec<u8>, String>,
    /// `d2v mount`.
    d2v: BTreeMap<Vec<u8>, String>,
    /// `tar -tv` of each layer of the pushed image, bottom first.
    layers: Vec<String>,
}

/// Builds `case`, imports and mounts it with d2v, and compares the mount with
/// buildah's view and umoci's extraction; `check` then runs on the d2v mount
/// (still mounted) for case-specific assertions.
fn oracle(case: &str, prepare: impl FnOnce(&Path), check: impl FnOnce(&Path, &Views)) {
    if !require_root_and(&["buildah", "umoci"]) {
        return;
    }
    let b = Buildah::new();
    b.build(case, prepare);

    let d2v = D2v::new();
    d2v.ok(&[
        "import",
        &format!("oci:{}:{case}", b.layout().display()),
        "--as",
        case,
    ]);
    let m = Mounted::new(&d2v, case);

    let reference = b.dir().join("reference");
    sh(&format!(
        "umoci raw unpack --image {}:{case} {}",
        b.layout().display(),
        reference.display()
    ));
    let buildah_root = b.mount(case);

    let views = Views {
        reference: describe(&reference, IGNORE),
        buildah: describe(&buildah_root, IGNORE),
        d2v: describe(m.path(), IGNORE),
        layers: layer_listings(&b.layout(), case),
    };
    assert_same(
        "umoci raw unpack",
        &views.reference,
        "d2v mount",
        &views.d2v,
    );
    assert_same(
        "buildah mount",
        &as_overlay_sees_it(&views.buildah),
        "d2v mount",
        &as_overlay_sees_it(&views.d2v),
    );
    check(m.path(), &views);
}

/// buildah's view is the kernel's overlayfs over a container made from the image,
/// and two things in it are not the image's: the root directory's mode and mtime
/// come from the container's own (empty) upper dir, made 0555 by `buildah from`;
/// and a lower file's link count still counts the links that whiteouts in upper
/// layers removed (overlayfs reports the lower inode's st_nlink). So the root's
/// line and link counts are compared with umoci's extraction only.
fn as_overlay_sees_it(view: &BTreeMap<Vec<u8>, String>) -> BTreeMap<Vec<u8>, String> {
    view.iter()
        .filter(|(k, _)| k.as_slice() != b".")
        .map(|(k, v)| {
            let v = v
                .split(' ')
                .filter(|w| !w.starts_with("nlink="))
                .collect::<Vec<_>>()
                .join(" ");
            (k.clone(), v)
        })
        .collect()
}

/// `tar -tv` of each layer of `tag` in the OCI layout, bottom first.
fn layer_listings(layout: &Path, tag: &str) -> Vec<String> {
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let index = json(layout.join("index.json"));
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {}", layout.display()));
    let manifest = json(blob(manifest["digest"].as_str().unwrap()));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            sh(&format!(
                "tar -tvf {}",
                blob(l["digest"].as_str().unwrap()).display()
            ))
        })
        .collect()
}

fn line<'a>(views: &'a BTreeMap<Vec<u8>, String>, path: &str) -> &'a str {
    views
        .get(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} missing"))
}

#[test]
fn whiteouts_opaque_dirs_type_changes_and_hard_links_match_buildah_and_umoci() {
    oracle(
        "changes",
        |_| {},
        |m, v| {
            // The layers really hold an opaque dir and an upper hard link to a file
            // copied up from a lower layer (the overlay driver's doing, see the top).
            assert!(v
                .layers
                .iter()
                .any(|l| l.contains("data/opaque/.wh..wh..opq")));
            assert!(v
                .layers
                .iter()
                .any(|l| l.contains("data/up-link link to data/low")));
            assert!(v.layers.iter().any(|l| l.contains("data/keep/.wh.deleted")));
            // The oracle comparison covers these; assert the cases were really built.
            for gone in [
                "data/keep/deleted",
                "bin/vi",
                "data/opaque/old",
                "data/opaque/sub",
                "data/h2",
            ] {
                assert!(!v.d2v.contains_key(gone.as_bytes()), "{gone} still there");
            }
            assert!(line(&v.d2v, "data/opaque/again").starts_with("file"));
            assert!(line(&v.d2v, "data/f2d").starts_with("dir"));
            assert!(line(&v.d2v, "data/d2l").starts_with("link"));
            assert!(line(&v.d2v, "data/d2f").starts_with("file"));
            assert!(line(&v.d2v, "etc/group").starts_with("file"));
            let low = std::fs::metadata(m.join("data/low")).unwrap();
            let up = std::fs::metadata(m.join("data/up-link")).unwrap();
            assert_eq!((low.ino(), low.nlink()), (up.ino(), 2), "upper hard link");
            let h1 = std::fs::metadata(m.join("data/h1")).unwrap();
            let h3 = std::fs::metadata(m.join("data/keep/h3")).unwrap();
            assert_eq!(h1.ino(), h3.ino());
        },
    );
}

#[test]
fn modes_owners_devices_fifos_and_xattrs_match_buildah_and_umoci() {
    if !require(
        harness::have_tool("setfattr") && harness::have_tool("setcap"),
        "setfattr and setcap",
    ) {
        return;
    }
    oracle(
        "special",
        |ctx| {
            let c = ctx.display();
            sh(&format!(
                "cd {c} && echo tagged > tagged.txt && echo plain > plain.txt \
                 && setfattr -n user.note -v tagged tagged.txt \
                 && mkdir xs xs/dir && echo cap > xs/capfile && chmod 755 xs/capfile \
                 && setcap cap_net_raw+ep xs/capfile && setfattr -n user.also -v 1 xs/capfile \
                 && echo u > xs/u && setfattr -n user.bin -v 0x00ff01 xs/u \
                 && setfattr -n user.empty xs/u && setfattr -n user.d -v dirattr xs/dir \
                 && tar --xattrs --xattrs-include='*' -cf xattrs.tar -C xs . && rm -r xs"
            ));
        },
        |m, v| {
            assert!(
                line(&v.d2v, "devs/null2").contains("rdev=259"),
                "{}",
                line(&v.d2v, "devs/null2")
            );
            assert!(line(&v.d2v, "modes/suid").contains("mode=104755"));
            assert!(line(&v.d2v, "modes/sticky").contains("mode=41777"));
            assert!(line(&v.d2v, "modes/app").contains("uid=1000 gid=1000"));
            assert!(line(&v.d2v, "x/u").contains("xattr:user.bin=00ff01"));
            assert!(line(&v.d2v, "y/tagged.txt").contains("xattr:user.note="));
            let caps = sh(&format!("getcap {}/x/capfile", m.display()));
            assert!(caps.contains("cap_net_raw"), "{caps}");
        },
    );
}

#[test]
fn big_dirs_long_and_non_utf8_names_match_buildah_and_umoci() {
    oracle(
        "names",
        |_| {},
        |m, v| {
            let many = std::fs::read_dir(m.join("many")).unwrap().count();
            assert_eq!(many, 10000 - 10000 / 7 + 500);
            let longest = v.d2v.keys().map(Vec::len).max().unwrap();
            assert!(longest > 600, "deepest path is {longest} bytes");
            assert!(v.d2v.keys().any(|k| std::str::from_utf8(k).is_err()));
            assert!(v.d2v.contains_key(&b"bytes/dir-\xff\xfe/f\x80"[..]));
            assert!(!v.d2v.contains_key(&b"bytes/del-\xff"[..]));
        },
    );
}

#[test]
fn a_sparse_gigabyte_file_matches_buildah_and_umoci() {
    oracle(
        "sparse",
        |_| {},
        |m, _| {
            let f = std::fs::File::open(m.join("sparse")).unwrap();
            assert_eq!(f.metadata().unwrap().len(), 1 << 30);
            let mut buf = [0u8; 6];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 1 << 29).unwrap();
            assert_eq!(&buf, b"middle");
        },
    );
}
