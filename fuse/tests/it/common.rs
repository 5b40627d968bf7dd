//! Shared test helpers: facility checks, layer fixtures made with GNU tar and
//! the `tar` crate, an on-disk OCI reference extractor and a tree comparator.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use d2v_fuse::{EntryKind, LayerIndex, MergedTree};
use d2v_testkit::fsutil;
use d2v_testkit::tree::{
    self, content_hash, describe_entries, describe_with, xattrs, Compare, Entry, Ignore, Kind,
};

pub use d2v_testkit::{have_tool, require, require_fuse, require_root_and};

pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Creates a layer tar from directory `src` with GNU tar.
pub fn gnu_tar(src: &Path, out: &Path, format: &str, extra: &[&str]) {
    let mut c = Command::new("tar");
    c.arg("-C")
        .arg(src)
        .arg(format!("--format={format}"))
        .args(["--numeric-owner", "--sort=name"])
        .args(extra)
        .arg("-cf")
        .arg(out)
        .arg(".");
    if format != "gnu" {
        c.args(["--xattrs", "--xattrs-include=*"]);
    }
    run(&mut c);
}

/// Builds the index beside `blob` and opens it.
pub fn index(blob: &Path) -> LayerIndex {
    let idx = blob.with_extension("idx");
    LayerIndex::build(blob, &idx).unwrap_or_else(|e| panic!("index {}: {e}", blob.display()));
    LayerIndex::open(blob, &idx).unwrap()
}

pub fn tree(blobs: &[PathBuf]) -> MergedTree {
    MergedTree::new(blobs.iter().map(|b| index(b)).collect()).unwrap()
}

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Makes a device node or FIFO with exactly permissions `perm` (not the umask's).
pub fn mknod(p: &Path, kind: libc::mode_t, perm: u32, major: u32, minor: u32) {
    fsutil::mknod(p, kind | perm, major, minor);
    fs::set_permissions(p, fs::Permissions::from_mode(perm)).unwrap();
}

pub use fsutil::{lchown, set_mtime, set_xattr};

/// How the merged tree, a mount of it and the reference extraction are
/// compared: every field, every link count; symlink mtimes are skipped (GNU
/// tar does not restore them on extraction), and so are symlink xattrs and
/// directory sizes (filesystem-specific).
pub const COMPARE: Compare = Compare {
    ignore: Ignore {
        mtime: false,
        dir_size: true,
    },
    symlink_mtime: false,
    nlink_all: true,
    link_groups: false,
    skip_symlink_xattrs: true,
};

/// The comparable lines of every path under `root`.
pub fn scan_dir(root: &Path) -> BTreeMap<Vec<u8>, String> {
    describe_with(root, &COMPARE)
}

struct TreeReader<'a> {
    tree: &'a MergedTree,
    ino: u64,
    off: u64,
}

impl Read for TreeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tree.read_at(self.ino, self.off, buf)?;
        self.off += n as u64;
        Ok(n)
    }
}

/// The same lines, read from the merged tree's API.
pub fn scan_tree(tree: &MergedTree) -> BTreeMap<Vec<u8>, String> {
    let entries = tree.walk().map(|w| {
        let n = tree.get(w.ino).unwrap();
        let (kind, type_bits) = match n.kind {
            EntryKind::Dir => (Kind::Dir, libc::S_IFDIR),
            EntryKind::File => (Kind::File, libc::S_IFREG),
            EntryKind::Symlink => (Kind::Symlink, libc::S_IFLNK),
            EntryKind::CharDevice => (Kind::Special, libc::S_IFCHR),
            EntryKind::BlockDevice => (Kind::Special, libc::S_IFBLK),
            EntryKind::Fifo => (Kind::Special, libc::S_IFIFO),
        };
        let sha256 = (n.kind == EntryKind::File).then(|| {
            content_hash(TreeReader {
                tree,
                ino: w.ino,
                off: 0,
            })
        });
        let path = if w.path.is_empty() {
            b".".to_vec()
        } else {
            w.path
        };
        let entry = Entry {
            kind,
            mode: type_bits | (n.mode & 0o7777),
            uid: n.uid,
            gid: n.gid,
            size: n.size,
            mtime: (n.mtime, i64::from(n.mtime_nsec)),
            nlink: u64::from(n.nlink),
            rdev: libc::makedev(n.rdev_major, n.rdev_minor),
            ino: w.ino,
            target: (n.kind == EntryKind::Symlink)
                .then(|| tree.symlink_target(w.ino).unwrap_or_default().to_vec()),
            sha256,
            xattrs: tree
                .xattrs(w.ino)
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        };
        (path, entry)
    });
    describe_entries(entries, &COMPARE)
}

/// Asserts two scans agree on every path and field.
pub fn assert_same(expected: &BTreeMap<Vec<u8>, String>, actual: &BTreeMap<Vec<u8>, String>) {
    tree::assert_same("reference", expected, "actual", actual);
}

/// Entry paths a tar lists explicitly (normalised), via the `tar` crate.
pub fn explicit_paths(blob: &Path) -> HashSet<Vec<u8>> {
    let mut a = tar::Archive::new(fs::File::open(blob).unwrap());
    let mut out = HashSet::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let p = e.path_bytes().to_vec();
        let norm: Vec<&[u8]> = p
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        out.insert(norm.join(&b'/'));
    }
    out
}

fn remove_any(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).unwrap(),
        Ok(_) => fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

/// Copies a file skipping all-zero chunks, so holes stay holes.
fn sparse_copy(from: &Path, to: &Path) {
    let mut src = fs::File::open(from).unwrap();
    let mut dst = fs::File::create(to).unwrap();
    let len = src.metadata().unwrap().len();
    let mut buf = vec![0u8; len.clamp(1, 1 << 20) as usize];
    let mut off = 0u64;
    loop {
        let n = src.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(off)).unwrap();
            dst.write_all(&buf[..n]).unwrap();
        }
        off += n as u64;
    }
    dst.set_len(len).unwrap();
}

#[derive(Clone, Copy)]
struct DirMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
}

/// Reference merge: extract each layer with GNU tar, then apply it to `out`
/// by the OCI rules on the real filesystem.
pub fn reference(blobs: &[PathBuf], work: &Path) -> PathBuf {
    let out = work.join("reference");
    fs::create_dir_all(&out).unwrap();
    let mut dirs: BTreeMap<Vec<u8>, DirMeta> = BTreeMap::new();
    dirs.insert(
        Vec::new(),
        DirMeta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
        },
    );
    for (i, blob) in blobs.iter().enumerate() {
        let ex = work.join(format!("extract-{i}"));
        fs::create_dir_all(&ex).unwrap();
        run(Command::new("tar")
            .args([
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "--same-owner",
                "-xpf",
            ])
            .arg(blob)
            .arg("-C")
            .arg(&ex));
        let explicit = explicit_paths(blob);
        if explicit.contains(&Vec::new()) {
            let md = fs::symlink_metadata(&ex).unwrap();
            dirs.insert(
                Vec::new(),
                DirMeta {
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    mtime: (md.mtime(), md.mtime_nsec()),
                },
            );
        }
        let mut links = HashMap::new();
        apply_dir(&ex, &out, &[], &explicit, &mut dirs, &mut links);
    }
    // Directory metadata last, deepest first, so adding children cannot
    // disturb mtimes.
    let mut list: Vec<_> = dirs.into_iter().collect();
    list.sort_by_key(|(p, _)| {
        std::cmp::Reverse(p.iter().filter(|&&b| b == b'/').count() + p.len().min(1))
    });
    for (rel, m) in list {
        let p = join(&out, &rel);
        lchown(&p, m.uid, m.gid);
        fs::set_permissions(&p, fs::Permissions::from_mode(m.mode)).unwrap();
        set_mtime(&p, m.mtime.0, m.mtime.1);
    }
    out
}

fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(rel))
    }
}

fn apply_dir(
    layer_root: &Path,
    out: &Path,
    rel: &[u8],
    explicit: &HashSet<Vec<u8>>,
    dirs: &mut BTreeMap<Vec<u8>, DirMeta>,
    links: &mut HashMap<(u64, u64), PathBuf>,
) {
    let src_dir = join(layer_root, rel);
    let dst_dir = join(out, rel);
    let mut names: Vec<Vec<u8>> = fs::read_dir(&src_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    let child_rel = |n: &[u8]| {
        let mut r = rel.to_vec();
        if !r.is_empty() {
            r.push(b'/');
        }
        r.extend_from_slice(n);
        r
    };
    // Whiteouts first: they hide lower layers only.
    for n in &names {
        if n.as_slice() == b".wh..wh..opq" {
            for e in fs::read_dir(&dst_dir).unwrap() {
                let e = e.unwrap();
                let r = child_rel(e.file_name().as_bytes());
                dirs.retain(|k, _| !(k == &r || k.starts_with(&[r.as_slice(), b"/"].concat())));
                remove_any(&e.path());
            }
        } else if let Some(hidden) = n.strip_prefix(b".wh.") {
            let r = child_rel(hidden);
            dirs.retain(|k, _| !(k == &r || k.starts_with(&[r.as_slice(), b"/"].concat())));
            remove_any(&join(out, &r));
        }
    }
    for n in &names {
        if n.starts_with(b".wh.") {
            continue;
        }
        let r = child_rel(n);
        let src = join(layer_root, &r);
        let dst = join(out, &r);
        let md = fs::symlink_metadata(&src).unwrap();
        let existing = fs::symlink_metadata(&dst).ok();
        if md.is_dir() {
            if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                remove_any(&dst);
            }
            let created = !dst.exists();
            if created {
                fs::create_dir(&dst).unwrap();
            }
            if explicit.contains(&r) {
                for (k, _) in xattrs(&dst) {
                    let ck = CString::new(k).unwrap();
                    // SAFETY: valid C strings.
                    unsafe { libc::lremovexattr(cpath(&dst).as_ptr(), ck.as_ptr()) };
                }
                for (k, v) in xattrs(&src) {
                    set_xattr(&dst, std::str::from_utf8(&k).unwrap(), &v);
                }
                dirs.insert(
                    r.clone(),
                    DirMeta {
                        mode: md.mode() & 0o7777,
                        uid: md.uid(),
                        gid: md.gid(),
                        mtime: (md.mtime(), md.mtime_nsec()),
                    },
                );
            } else if created {
                dirs.insert(
                    r.clone(),
                    DirMeta {
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime: (0, 0),
                    },
                );
            }
            apply_dir(layer_root, out, &r, explicit, dirs, links);
            continue;
        }
        remove_any(&dst);
        dirs.retain(|k, _| !(k == &r || k.starts_with(&[r.as_slice(), b"/"].concat())));
        let key = (md.dev(), md.ino());
        if md.nlink() > 1 && !md.file_type().is_symlink() {
            if let Some(first) = links.get(&key) {
                fs::hard_link(first, &dst).unwrap();
                continue;
            }
            links.insert(key, dst.clone());
        }
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let t = if ft.is_char_device() {
                libc::S_IFCHR
            } else if ft.is_block_device() {
                libc::S_IFBLK
            } else {
                libc::S_IFIFO
            };
            mknod(
                &dst,
                t,
                0o600,
                libc::major(md.rdev()),
                libc::minor(md.rdev()),
            );
        } else {
            sparse_copy(&src, &dst);
        }
        lchown(&dst, md.uid(), md.gid());
        if !ft.is_symlink() {
            fs::set_permissions(&dst, fs::Permissions::from_mode(md.mode() & 0o7777)).unwrap();
            for (k, v) in xattrs(&src) {
                set_xattr(&dst, std::str::from_utf8(&k).unwrap(), &v);
            }
        }
        set_mtime(&dst, md.mtime(), md.mtime_nsec());
    }
}

pub fn write(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(p, data).unwrap();
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

pub const LONG_DIR: &str = "this-directory-name-is-deliberately-longer-than-one-hundred-bytes-so-that-ustar-cannot-hold-it-in-the-name-field";
pub const LONG_FILE: &str = "and-this-file-name-is-also-far-longer-than-the-one-hundred-byte-name-field-of-a-plain-ustar-header-ok.txt";

/// The full fixture stack: layer 0 (GNU tar, pax, xattrs, sparse 1.0,
/// 10k-entry dir), layer 1 (GNU tar, gnu format, whiteouts, opaque dir,
/// replacements, old GNU sparse), layer 2 (the `tar` crate).
pub fn build_stack(work: &Path) -> Vec<PathBuf> {
    let l0 = work.join("l0");
    write(&l0.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n");
    write(
        &l0.join("etc/dir_to_file/child"),
        b"child of a dir that becomes a file\n",
    );
    write(&l0.join("etc/file_to_dir"), b"a file that becomes a dir\n");
    std::os::unix::fs::symlink("../usr/share/zoneinfo/UTC", l0.join("etc/localtime")).unwrap();
    write(&l0.join("data/a"), b"hard-linked data from layer 0\n");
    fs::hard_link(l0.join("data/a"), l0.join("data/b")).unwrap();
    fs::hard_link(l0.join("data/a"), l0.join("data/c")).unwrap();
    write(&l0.join("data/gone"), b"whited out later\n");
    write(
        &l0.join("data/hidden/inner"),
        b"inside a dir whited out later\n",
    );
    fs::create_dir_all(l0.join("dev")).unwrap();
    mknod(&l0.join("dev/null"), libc::S_IFCHR, 0o666, 1, 3);
    mknod(&l0.join("dev/loop9"), libc::S_IFBLK, 0o660, 7, 9);
    mknod(&l0.join("dev/fifo"), libc::S_IFIFO, 0o644, 0, 0);
    write(&l0.join("bin/su"), b"#!/bin/sh\necho pretend-su\n");
    chmod(&l0.join("bin/su"), 0o4755);
    fs::create_dir_all(l0.join("srv/shared")).unwrap();
    lchown(&l0.join("srv/shared"), 1000, 1000);
    chmod(&l0.join("srv/shared"), 0o2775);
    fs::create_dir_all(l0.join("tmp")).unwrap();
    chmod(&l0.join("tmp"), 0o1777);
    write(&l0.join("home/user/owned"), b"owned by 1000\n");
    lchown(&l0.join("home/user/owned"), 1000, 1001);
    lchown(&l0.join("home/user"), 1000, 1000);
    chmod(&l0.join("home/user"), 0o700);
    write(&l0.join("x/cap"), b"binary with a file capability\n");
    chmod(&l0.join("x/cap"), 0o755);
    run(Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(l0.join("x/cap")));
    write(&l0.join("x/attr"), b"file with xattrs\n");
    set_xattr(&l0.join("x/attr"), "user.foo", b"bar");
    set_xattr(&l0.join("x/attr"), "user.bin", &[0, 1, 2, 255, 10, 61]);
    set_xattr(&l0.join("x"), "user.dir", b"on a directory");
    write(
        &l0.join("long").join(LONG_DIR).join(LONG_FILE),
        b"long path\n",
    );
    std::os::unix::fs::symlink(
        Path::new("..")
            .join(LONG_DIR)
            .join(LONG_FILE)
            .join("x".repeat(120)),
        l0.join("long/link-with-long-target"),
    )
    .unwrap();
    let nonutf = l0.join(std::ffi::OsStr::from_bytes(b"nonutf/caf\xe9"));
    write(&nonutf, b"latin-1 name\n");
    let big = l0.join("sparse/big");
    fs::create_dir_all(big.parent().unwrap()).unwrap();
    {
        let mut f = fs::File::create(&big).unwrap();
        f.write_all(b"begin").unwrap();
        f.seek(SeekFrom::Start(512 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.set_len(1 << 30).unwrap();
        f.seek(SeekFrom::Start((1 << 30) - 3)).unwrap();
        f.write_all(b"end").unwrap();
    }
    write(&l0.join("opq/one"), b"1\n");
    write(&l0.join("opq/two"), b"2\n");
    fs::create_dir_all(l0.join("many")).unwrap();
    for i in 0..10_000 {
        fs::write(l0.join(format!("many/f{i:05}")), format!("{i}\n")).unwrap();
    }
    set_mtime(&l0.join("etc/passwd"), 1_600_000_000, 123_456_789);
    set_mtime(&l0.join("bin/su"), 1_500_000_000, 999_999_999);

    let l1 = work.join("l1");
    write(&l1.join("data/.wh.gone"), b"");
    write(&l1.join("data/.wh.a"), b"");
    write(&l1.join("data/.wh.hidden"), b"");
    write(
        &l1.join("data/c"),
        b"replaces one name of the hard-link group\n",
    );
    write(&l1.join("data/x"), b"new hard link pair in layer 1\n");
    fs::hard_link(l1.join("data/x"), l1.join("data/y")).unwrap();
    write(&l1.join("etc/dir_to_file"), b"now a file\n");
    write(&l1.join("etc/file_to_dir/child"), b"now a dir\n");
    write(&l1.join("opq/.wh..wh..opq"), b"");
    write(&l1.join("opq/three"), b"3\n");
    {
        let mut f = fs::File::create(l1.join("data/small-sparse")).unwrap();
        f.seek(SeekFrom::Start(5 << 20)).unwrap();
        f.write_all(b"data in the middle of holes").unwrap();
        f.set_len(10 << 20).unwrap();
    }

    let t0 = work.join("layer0.tar");
    gnu_tar(&l0, &t0, "pax", &["--sparse"]);
    let t1 = work.join("layer1.tar");
    gnu_tar(&l1, &t1, "gnu", &["--sparse"]);
    let t2 = work.join("layer2.tar");
    crate_layer(&t2);
    vec![t0, t1, t2]
}

fn crate_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

/// Layer 2, written with the `tar` crate: implied parents, a replaced file,
/// a whiteout inside the 10k dir, an in-layer hard link, a long path.
pub fn crate_layer(out: &Path) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    let passwd = b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
    let mut h = crate_header(tar::EntryType::Regular, 0o644, passwd.len() as u64);
    b.append_data(&mut h, "etc/passwd", &passwd[..]).unwrap();
    let mut h = crate_header(tar::EntryType::Regular, 0o600, 5);
    b.append_data(&mut h, "implied/deep/file", &b"deep\n"[..])
        .unwrap();
    let mut h = crate_header(tar::EntryType::Regular, 0o644, 0);
    b.append_data(&mut h, "many/.wh.f00007", &[][..]).unwrap();
    let mut h = crate_header(tar::EntryType::Regular, 0o640, 9);
    b.append_data(&mut h, "data/z", &b"z content"[..]).unwrap();
    let mut h = crate_header(tar::EntryType::Link, 0o640, 0);
    b.append_link(&mut h, "data/z2", "data/z").unwrap();
    let mut h = crate_header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "lnk", "/etc/passwd").unwrap();
    let long = format!("{}/{}/{}", "crate", "d".repeat(90), "f".repeat(90));
    let mut h = crate_header(tar::EntryType::Regular, 0o644, 4);
    b.append_data(&mut h, long, &b"long"[..]).unwrap();
    b.finish().unwrap();
}

/// The fixture stack and its reference scan, built once per test binary in
/// a fixed directory under Cargo's test tmpdir (wiped at the start of a run).
pub struct Fixture {
    pub work: PathBuf,
    pub blobs: Vec<PathBuf>,
    pub expected: BTreeMap<Vec<u8>, String>,
}

pub fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-stack"));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).unwrap();
        let blobs = build_stack(&work);
        let expected = scan_dir(&reference(&blobs, &work));
        Fixture {
            work,
            blobs,
            expected,
        }
    })
}
