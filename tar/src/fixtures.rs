//! The shared tar fixture set (feature `fixtures`): archives in every dialect
//! the reader accepts and every way it must refuse one, each with what a
//! reader of the extracted tree must see. The tests of this crate, of the
//! FUSE index and of `pack --from-tar` all run this one set, so the three
//! cannot drift apart.
//!
//! Expectations are [`View`] lines: one per path (the root and implied
//! directories included, `lost+found` never), rendered by [`View::line`].

use std::fmt::Write as _;

/// The header dialect a [`Spec`] is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// POSIX ustar (`ustar\0` magic, name prefix field).
    Ustar,
    /// GNU (`ustar  \0` magic).
    Gnu,
    /// Pre-POSIX v7: no magic.
    V7,
}

/// One header to write; fields beyond what they fit are written base-256.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The name field (up to 100 bytes; longer names need a prefix or extension).
    pub name: Vec<u8>,
    /// The ustar prefix field.
    pub prefix: Vec<u8>,
    /// Type flag.
    pub typeflag: u8,
    /// Mode bits.
    pub mode: u64,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Size field.
    pub size: u64,
    /// Modification time.
    pub mtime: u64,
    /// Link name field.
    pub link: Vec<u8>,
    /// Device numbers.
    pub dev: (u64, u64),
    /// Dialect.
    pub format: Format,
}

impl Spec {
    /// A header of type `typeflag` named `name`, mode 0644 (0755 for dirs),
    /// root-owned, mtime 1000000, ustar.
    pub fn new(typeflag: u8, name: &[u8]) -> Spec {
        Spec {
            name: name.to_vec(),
            prefix: Vec::new(),
            typeflag,
            mode: if typeflag == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 1_000_000,
            link: Vec::new(),
            dev: (0, 0),
            format: Format::Ustar,
        }
    }

    /// The 512-byte header block, checksum included.
    pub fn block(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        put_bytes(&mut b[0..100], &self.name);
        put_num(&mut b[100..108], self.mode);
        put_num(&mut b[108..116], self.uid);
        put_num(&mut b[116..124], self.gid);
        put_num(&mut b[124..136], self.size);
        put_num(&mut b[136..148], self.mtime);
        b[156] = self.typeflag;
        put_bytes(&mut b[157..257], &self.link);
        match self.format {
            Format::Ustar => {
                b[257..263].copy_from_slice(b"ustar\0");
                b[263..265].copy_from_slice(b"00");
                put_bytes(&mut b[345..500], &self.prefix);
            }
            Format::Gnu => b[257..265].copy_from_slice(b"ustar  \0"),
            Format::V7 => {}
        }
        if self.format != Format::V7 {
            put_num(&mut b[329..337], self.dev.0);
            put_num(&mut b[337..345], self.dev.1);
        }
        seal(&mut b);
        b
    }
}

/// Writes the checksum of a header block.
pub fn seal(b: &mut [u8; 512]) {
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    let text = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(text.as_bytes());
}

fn put_bytes(f: &mut [u8], v: &[u8]) {
    let n = v.len().min(f.len());
    f[..n].copy_from_slice(&v[..n]);
}

/// Octal with a NUL terminator when it fits, else GNU base-256.
fn put_num(f: &mut [u8], v: u64) {
    let digits = f.len() - 1;
    if v < 1u64.checked_shl(3 * digits as u32).unwrap_or(u64::MAX) {
        let s = format!("{v:0digits$o}");
        f[..digits].copy_from_slice(s.as_bytes());
        f[digits] = 0;
    } else {
        f.fill(0);
        let n = f.len();
        let take = (n - 1).min(8);
        f[n - take..].copy_from_slice(&v.to_be_bytes()[8 - take..]);
        f[0] |= 0x80;
    }
}

/// One PAX record, `LEN KEY=VALUE\n`.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// An archive under construction.
#[derive(Debug, Clone, Default)]
pub struct Tar {
    /// The bytes so far.
    pub bytes: Vec<u8>,
}

impl Tar {
    /// An empty archive.
    pub fn new() -> Tar {
        Tar::default()
    }

    /// A header (its `size` is not checked against the data that follows).
    pub fn header(&mut self, s: &Spec) -> &mut Self {
        self.bytes.extend_from_slice(&s.block());
        self
    }

    /// Data, padded to a whole block.
    pub fn data(&mut self, d: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(d);
        let n = self.bytes.len().next_multiple_of(512);
        self.bytes.resize(n, 0);
        self
    }

    /// A header with `data` (its size set from it).
    pub fn entry(&mut self, s: Spec, data: &[u8]) -> &mut Self {
        let s = Spec {
            size: data.len() as u64,
            ..s
        };
        self.header(&s).data(data)
    }

    /// A regular file.
    pub fn file(&mut self, path: &[u8], data: &[u8]) -> &mut Self {
        self.entry(Spec::new(b'0', path), data)
    }

    /// A directory.
    pub fn dir(&mut self, path: &[u8]) -> &mut Self {
        self.entry(Spec::new(b'5', path), b"")
    }

    /// A symlink.
    pub fn symlink(&mut self, path: &[u8], target: &[u8]) -> &mut Self {
        let mut s = Spec::new(b'2', path);
        s.mode = 0o777;
        s.link = target.to_vec();
        self.entry(s, b"")
    }

    /// A hard link.
    pub fn hardlink(&mut self, path: &[u8], target: &[u8]) -> &mut Self {
        let mut s = Spec::new(b'1', path);
        s.link = target.to_vec();
        self.entry(s, b"")
    }

    /// A PAX extended header applying to the next entry.
    pub fn pax(&mut self, records: &[(&[u8], &[u8])]) -> &mut Self {
        let body: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.entry(Spec::new(b'x', b"PaxHeaders/x"), &body)
    }

    /// A GNU long name (`L`) or long link (`K`) for the next entry.
    pub fn gnu_long(&mut self, flag: u8, value: &[u8]) -> &mut Self {
        let mut v = value.to_vec();
        v.push(0);
        let mut s = Spec::new(flag, b"././@LongLink");
        s.format = Format::Gnu;
        self.entry(s, &v)
    }

    /// The archive with its end marker.
    pub fn end(&self) -> Vec<u8> {
        let mut v = self.bytes.clone();
        v.extend_from_slice(&[0u8; 1024]);
        v
    }
}

/// What a reader of the extracted tree sees at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// `file`, `dir`, `symlink`, `chr`, `blk` or `fifo`.
    pub kind: &'static str,
    /// Path (the root is empty).
    pub path: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// A file's contents.
    pub data: Vec<u8>,
    /// A symlink's target.
    pub target: Vec<u8>,
    /// A device's numbers.
    pub dev: (u32, u32),
    /// Names of the inode (files only; 1 unless hard-linked).
    pub nlink: u32,
    /// Extended attributes, sorted.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl View {
    /// A view of kind `kind` at `path`: mode 0644 (0755 for dirs, 0777 for
    /// symlinks), root-owned, mtime 1000000, nothing else.
    pub fn new(kind: &'static str, path: &[u8]) -> View {
        View {
            kind,
            path: path.to_vec(),
            mode: match kind {
                "dir" => 0o755,
                "symlink" => 0o777,
                _ => 0o644,
            },
            uid: 0,
            gid: 0,
            mtime: (1_000_000, 0),
            data: Vec::new(),
            target: Vec::new(),
            dev: (0, 0),
            nlink: 1,
            xattrs: Vec::new(),
        }
    }

    /// An implied directory: 0755, root-owned, mtime 0.
    pub fn implied(path: &[u8]) -> View {
        View {
            mtime: (0, 0),
            ..View::new("dir", path)
        }
    }

    /// A regular file with `data`.
    pub fn file(path: &[u8], data: &[u8]) -> View {
        View {
            data: data.to_vec(),
            ..View::new("file", path)
        }
    }

    /// A symlink to `target`.
    pub fn symlink(path: &[u8], target: &[u8]) -> View {
        View {
            target: target.to_vec(),
            ..View::new("symlink", path)
        }
    }

    /// One line: everything the view holds; file data as length and FNV-1a hash.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} {:?} {:o} {}:{} mtime={}.{:09}",
            self.kind,
            String::from_utf8_lossy(&self.path),
            self.mode,
            self.uid,
            self.gid,
            self.mtime.0,
            self.mtime.1
        );
        match self.kind {
            "file" => {
                let _ = write!(s, " size={} fnv={:016x}", self.data.len(), fnv(&self.data));
                if self.nlink != 1 {
                    let _ = write!(s, " nlink={}", self.nlink);
                }
            }
            "symlink" => {
                let _ = write!(s, " -> {:?}", String::from_utf8_lossy(&self.target));
            }
            "chr" | "blk" => {
                let _ = write!(s, " dev={},{}", self.dev.0, self.dev.1);
            }
            _ => {}
        }
        let mut x = self.xattrs.clone();
        x.sort();
        for (k, v) in x {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            let _ = write!(s, " xattr:{}={hex}", String::from_utf8_lossy(&k));
        }
        s
    }
}

/// The lines of `views`, sorted by path.
pub fn lines(mut views: Vec<View>) -> Vec<String> {
    views.sort_by(|a, b| a.path.cmp(&b.path));
    views.iter().map(View::line).collect()
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What reading a fixture must give.
#[derive(Debug, Clone)]
pub enum Expect {
    /// These paths (see [`lines`]).
    Tree(Vec<View>),
    /// An error whose message contains this text.
    Error(&'static str),
}

/// One archive of the set.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// What it exercises.
    pub name: &'static str,
    /// The archive.
    pub bytes: Vec<u8>,
    /// What reading it gives.
    pub expect: Expect,
}

fn ok(name: &'static str, bytes: Vec<u8>, mut views: Vec<View>) -> Fixture {
    if !views.iter().any(|v| v.path.is_empty()) {
        views.push(View::implied(b""));
    }
    Fixture {
        name,
        bytes,
        expect: Expect::Tree(views),
    }
}

fn err(name: &'static str, bytes: Vec<u8>, message: &'static str) -> Fixture {
    Fixture {
        name,
        bytes,
        expect: Expect::Error(message),
    }
}

/// The whole set: accepted dialects first, then refusals.
pub fn all() -> Vec<Fixture> {
    let mut v = accepted();
    v.extend(refused());
    v
}

fn accepted() -> Vec<Fixture> {
    let mut out = Vec::new();

    // ustar: every type, a prefix-split path, a v7 directory.
    let mut t = Tar::new();
    t.dir(b"./").dir(b"etc/").file(b"etc/hostname", b"vm0\n");
    let mut s = Spec::new(b'0', b"file");
    s.prefix = b"deep/prefix".to_vec();
    t.dir(b"deep").dir(b"deep/prefix").entry(s, b"split");
    t.symlink(b"etc/link", b"../deep/prefix/file");
    t.hardlink(b"etc/hard", b"etc/hostname");
    let mut s = Spec::new(b'3', b"null");
    s.dev = (1, 3);
    s.mode = 0o666;
    t.entry(s, b"");
    let mut s = Spec::new(b'4', b"loop0");
    s.dev = (7, 0);
    s.mode = 0o660;
    s.gid = 6;
    t.entry(s, b"");
    t.entry(Spec::new(b'6', b"pipe"), b"");
    let mut s = Spec::new(0, b"old/");
    s.format = Format::V7;
    s.mode = 0o700;
    t.entry(s, b"");
    let mut s = Spec::new(b'7', b"contig");
    s.uid = 1000;
    s.gid = 1000;
    t.entry(s, b"c");
    let host = |p: &[u8]| View {
        nlink: 2,
        ..View::file(p, b"vm0\n")
    };
    out.push(ok(
        "ustar: every entry type, prefix field, v7 directory",
        t.end(),
        vec![
            View::new("dir", b""),
            View::new("dir", b"etc"),
            host(b"etc/hostname"),
            host(b"etc/hard"),
            View::symlink(b"etc/link", b"../deep/prefix/file"),
            View::new("dir", b"deep"),
            View::new("dir", b"deep/prefix"),
            View::file(b"deep/prefix/file", b"split"),
            View {
                mode: 0o666,
                dev: (1, 3),
                ..View::new("chr", b"null")
            },
            View {
                mode: 0o660,
                gid: 6,
                dev: (7, 0),
                ..View::new("blk", b"loop0")
            },
            View::new("fifo", b"pipe"),
            View {
                mode: 0o700,
                ..View::new("dir", b"old")
            },
            View {
                uid: 1000,
                gid: 1000,
                ..View::file(b"contig", b"c")
            },
        ],
    ));

    // GNU long names and link targets, base-256 ids.
    let long_dir = [b'd'; 150];
    let long: Vec<u8> = [&long_dir[..], b"/", &[b'f'; 120][..]].concat();
    let mut t = Tar::new();
    t.gnu_long(b'L', &long_dir).dir(b"ignored");
    t.gnu_long(b'L', &long);
    let mut s = Spec::new(b'0', b"ignored-too");
    s.format = Format::Gnu;
    s.uid = 3_000_000_000;
    s.gid = 70_000;
    t.entry(s, b"long");
    t.gnu_long(b'K', &long).symlink(b"to-long", b"ignored");
    t.gnu_long(b'K', &long).hardlink(b"hard-long", b"ignored");
    out.push(ok(
        "gnu: long names and link targets, base-256 ids",
        t.end(),
        vec![
            View::new("dir", &long_dir),
            View {
                uid: 3_000_000_000,
                gid: 70_000,
                nlink: 2,
                ..View::file(&long, b"long")
            },
            View::symlink(b"to-long", &long),
            View {
                uid: 3_000_000_000,
                gid: 70_000,
                nlink: 2,
                ..View::file(b"hard-long", b"long")
            },
        ],
    ));

    // PAX: path, ids, fractional time, binary xattrs, libarchive xattrs.
    let cap: &[u8] = &[
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, b'\n', 0, 0, 0, 0, 0, 0,
    ];
    let mut t = Tar::new();
    t.pax(&[
        (b"path", b"caf\xe9/ping"),
        (b"uid", b"4294967294"),
        (b"gid", b"65534"),
        (b"mtime", b"1700000000.123456789"),
        (b"SCHILY.xattr.security.capability", cap),
        (b"SCHILY.xattr.user.nl", b"a\nb=c"),
        (b"LIBARCHIVE.xattr.user.lib%3Dx", b"AQID"),
    ]);
    t.file(b"short-name", b"ping");
    t.pax(&[(b"linkpath", b"caf\xe9/ping"), (b"path", b"sym")])
        .symlink(b"x", b"y");
    t.pax(&[(b"size", b"3")]);
    t.header(&Spec {
        size: 99,
        ..Spec::new(b'0', b"sized")
    })
    .data(b"abc");
    out.push(ok(
        "pax: path, ids, fractional time, binary xattrs, libarchive xattrs, size",
        t.end(),
        vec![
            View::implied(b"caf\xe9"),
            View {
                uid: u32::MAX - 1,
                gid: 65534,
                mtime: (1_700_000_000, 123_456_789),
                xattrs: vec![
                    (b"security.capability".to_vec(), cap.to_vec()),
                    (b"user.nl".to_vec(), b"a\nb=c".to_vec()),
                    (b"user.lib=x".to_vec(), vec![1, 2, 3]),
                ],
                ..View::file(b"caf\xe9/ping", b"ping")
            },
            View::symlink(b"sym", b"caf\xe9/ping"),
            View::file(b"sized", b"abc"),
        ],
    ));

    // GNU sparse: old S (with an extension block), PAX 0.0, 0.1 and 1.0.
    out.push(sparse_fixture());

    // Later entries win.
    let mut t = Tar::new();
    t.file(b"twice", b"first").file(b"twice", b"second");
    t.dir(b"x").file(b"x/y", b"gone").file(b"x", b"file wins");
    t.file(b"f2d", b"gone").dir(b"f2d").file(b"f2d/kept", b"k");
    t.dir(b"meta").file(b"meta/child", b"stays");
    t.entry(
        Spec {
            mode: 0o700,
            uid: 5,
            ..Spec::new(b'5', b"meta")
        },
        b"",
    );
    t.file(b"target", b"old").hardlink(b"keeps-old", b"target");
    t.file(b"target", b"new");
    out.push(ok(
        "duplicates: the later entry wins",
        t.end(),
        vec![
            View::file(b"twice", b"second"),
            View::file(b"x", b"file wins"),
            View::new("dir", b"f2d"),
            View::file(b"f2d/kept", b"k"),
            View {
                mode: 0o700,
                uid: 5,
                ..View::new("dir", b"meta")
            },
            View::file(b"meta/child", b"stays"),
            View::file(b"keeps-old", b"old"),
            View::file(b"target", b"new"),
        ],
    ));

    // Implied parents and no end marker.
    let mut t = Tar::new();
    t.file(b"a/b/c/file", b"deep").file(b"./a/b/other", b"o");
    out.push(ok(
        "implied parents, no end marker",
        t.bytes.clone(),
        vec![
            View::implied(b"a"),
            View::implied(b"a/b"),
            View::implied(b"a/b/c"),
            View::file(b"a/b/c/file", b"deep"),
            View::file(b"a/b/other", b"o"),
        ],
    ));
    out
}

fn sparse_fixture() -> Fixture {
    // Each sparse file: 8 KiB real size, "AAAA" at 0 and "BB" at 6000.
    let mut want = vec![0u8; 8192];
    want[..4].copy_from_slice(b"AAAA");
    want[6000..6002].copy_from_slice(b"BB");
    let mut t = Tar::new();
    // Old GNU `S`: two map slots in the header, one more in an extension block.
    let mut s = Spec::new(b'S', b"old-gnu");
    s.format = Format::Gnu;
    s.size = 7;
    let mut b = s.block();
    let slot = |b: &mut [u8], off: u64, len: u64| {
        put_num(&mut b[..12], off);
        put_num(&mut b[12..24], len);
    };
    slot(&mut b[386..410], 0, 4);
    slot(&mut b[410..434], 6000, 2);
    b[482] = 1;
    put_num(&mut b[483..495], 8192);
    seal(&mut b);
    t.bytes.extend_from_slice(&b);
    let mut ext = [0u8; 512];
    slot(&mut ext[..24], 8191, 1);
    t.bytes.extend_from_slice(&ext);
    t.data(b"AAAABB\0");
    // PAX 0.0.
    t.pax(&[
        (b"GNU.sparse.size", b"8192"),
        (b"GNU.sparse.numblocks", b"2"),
        (b"GNU.sparse.offset", b"0"),
        (b"GNU.sparse.numbytes", b"4"),
        (b"GNU.sparse.offset", b"6000"),
        (b"GNU.sparse.numbytes", b"2"),
    ]);
    t.file(b"pax00", b"AAAABB");
    // PAX 0.1.
    t.pax(&[
        (b"GNU.sparse.size", b"8192"),
        (b"GNU.sparse.map", b"0,4,6000,2"),
        (b"GNU.sparse.name", b"pax01"),
    ]);
    t.file(b"GNUSparseFile.1/pax01", b"AAAABB");
    // PAX 1.0: the map is the first block of the data.
    t.pax(&[
        (b"GNU.sparse.major", b"1"),
        (b"GNU.sparse.minor", b"0"),
        (b"GNU.sparse.name", b"pax10"),
        (b"GNU.sparse.realsize", b"8192"),
    ]);
    let mut data = b"2\n0\n4\n6000\n2\n".to_vec();
    data.resize(512, 0);
    data.extend_from_slice(b"AAAABB");
    t.file(b"GNUSparseFile.1/pax10", &data);
    ok(
        "gnu sparse: old S with extension block, pax 0.0, 0.1, 1.0",
        t.end(),
        vec![
            View::file(b"old-gnu", &want),
            View::file(b"pax00", &want),
            View::file(b"pax01", &want),
            View::file(b"pax10", &want),
        ],
    )
}

fn refused() -> Vec<Fixture> {
    let mut out = Vec::new();
    let mut t = Tar::new();
    t.file(b"file", &[7u8; 1000]);
    let whole = t.end();
    out.push(err(
        "cut inside a header",
        whole[..300].to_vec(),
        "truncated tar",
    ));
    out.push(err(
        "cut inside data",
        whole[..512 + 700].to_vec(),
        "truncated tar",
    ));
    let mut t = Tar::new();
    t.file(b"ok", b"x").file(b"flipped", b"y");
    let mut bytes = t.end();
    bytes[1024 + 3] ^= 0x20;
    out.push(err("bad checksum", bytes, "checksum at byte 1024"));
    let one = |records: &[(&[u8], &[u8])], name: &'static str, msg: &'static str| {
        let mut t = Tar::new();
        t.pax(records).file(b"f", b"x");
        err(name, t.end(), msg)
    };
    out.push(one(
        &[(b"uid", b"4294967296")],
        "pax uid past u32",
        "invalid pax uid \"4294967296\"",
    ));
    out.push(one(
        &[(b"gid", b"-1")],
        "negative pax gid",
        "invalid pax gid",
    ));
    out.push(one(
        &[(b"mtime", b"abc")],
        "bad pax mtime",
        "invalid pax mtime \"abc\"",
    ));
    out.push(one(
        &[(b"path", b"a\0b")],
        "NUL in a path",
        "contains a NUL byte",
    ));
    out.push(one(&[(b"size", b"x")], "bad pax size", "invalid pax size"));
    out.push(one(
        &[(b"GNU.sparse.map", b"4,4,0,4"), (b"GNU.sparse.size", b"9")],
        "unordered sparse map",
        "out of order",
    ));
    let mut t = Tar::new();
    t.pax(&[(b"linkpath", &[b'l'; 4096][..])])
        .symlink(b"s", b"x");
    out.push(err(
        "symlink target of 4096 bytes",
        t.end(),
        "target of 4096 bytes",
    ));
    let mut t = Tar::new();
    t.symlink(b"s", b"");
    out.push(err("empty symlink target", t.end(), "target of 0 bytes"));
    let mut t = Tar::new();
    t.pax(&[(b"path", &[b'n'; 256][..])]).file(b"n", b"");
    out.push(err("name of 256 bytes", t.end(), "longer than 255 bytes"));
    let mut t = Tar::new();
    t.file(b"/etc/shadow", b"x");
    out.push(err("absolute path", t.end(), "absolute path"));
    let mut t = Tar::new();
    t.file(b"a/../../etc/shadow", b"x");
    out.push(err("'..' component", t.end(), "'..' component"));
    let mut t = Tar::new();
    t.file(b"present", b"x").hardlink(b"link", b"absent");
    out.push(err(
        "hard link to a missing entry",
        t.end(),
        "hard link \"link\" points to missing entry \"absent\"",
    ));
    let mut t = Tar::new();
    t.hardlink(b"link", b"later").file(b"later", b"x");
    out.push(err(
        "hard link before its target",
        t.end(),
        "points to missing entry",
    ));
    let mut t = Tar::new();
    t.hardlink(b"link", b"../../etc/passwd");
    out.push(err(
        "hard link outside",
        t.end(),
        "points outside the archive",
    ));
    let mut t = Tar::new();
    t.dir(b"d").hardlink(b"link", b"d");
    out.push(err(
        "hard link to a directory",
        t.end(),
        "points to missing entry",
    ));
    let mut t = Tar::new();
    t.file(b"x", b"file").file(b"x/y", b"under a file");
    out.push(err(
        "entry under a file",
        t.end(),
        "\"x/y\": \"x\" is not a directory",
    ));
    let mut t = Tar::new();
    t.file(b".", b"");
    out.push(err(
        "root that is not a directory",
        t.end(),
        "names the archive root",
    ));
    let mut t = Tar::new();
    t.file(b"f", b"x").pax(&[(b"path", b"g")]);
    out.push(err(
        "extension header without entry",
        t.end(),
        "extended header without entry",
    ));
    let mut t = Tar::new();
    t.entry(Spec::new(b'M', b"vol"), b"");
    out.push(err(
        "multi-volume continuation",
        t.end(),
        "unsupported type 'M'",
    ));
    let mut t = Tar::new();
    let mut s = Spec::new(b'0', b"big-uid");
    s.uid = 1 << 40;
    t.entry(s, b"");
    out.push(err("header uid past u32", t.end(), "invalid uid"));
    let mut t = Tar::new();
    t.entry(Spec::new(b'x', b"h"), b"11 path=p\n")
        .file(b"f", b"");
    out.push(err("bad pax record", t.end(), "bad pax record length"));
    out
}
