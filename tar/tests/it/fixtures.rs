//! The shared fixture set through every front end of the reader: a slice
//! (mmapped blobs), a file read by offset, and a stream. All three must give
//! the same tree, or the same error.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use d2v_tar::fixtures::{self, lines, Expect, View};
use d2v_tar::{Archive, Kind, Reader, TarError};

/// The tree an archive extracts to, as fixture views.
fn views(archive: &Archive, data: impl Fn(&d2v_tar::Entry) -> Vec<u8>) -> Vec<View> {
    let mut out: BTreeMap<Vec<u8>, View> = BTreeMap::new();
    let mut links: HashMap<u32, u32> = HashMap::new();
    for m in archive.members() {
        *links.entry(m.inode).or_default() += 1;
    }
    for m in archive.members() {
        let e = archive.entry(m.entry);
        let ino = archive.entry(m.inode);
        let kind = match ino.kind {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::CharDevice => "chr",
            Kind::BlockDevice => "blk",
            Kind::Fifo => "fifo",
            Kind::HardLink => unreachable!("an inode is never a link"),
        };
        let mut v = View::new(kind, &e.path);
        v.mode = ino.mode;
        v.uid = ino.uid;
        v.gid = ino.gid;
        v.mtime = (ino.mtime.sec, ino.mtime.nsec);
        v.dev = ino.dev;
        v.xattrs = ino.xattrs.clone();
        if ino.kind == Kind::Symlink {
            v.target = ino.link.clone();
        }
        if ino.kind == Kind::File {
            v.data = data(ino);
            v.nlink = links[&m.inode];
        }
        out.insert(e.path.clone(), v);
    }
    let paths: Vec<Vec<u8>> = out.keys().cloned().collect();
    for p in paths {
        let mut end = p.len();
        while let Some(i) = p[..end].iter().rposition(|&b| b == b'/') {
            out.entry(p[..i].to_vec())
                .or_insert_with(|| View::implied(&p[..i]));
            end = i;
        }
    }
    out.entry(Vec::new()).or_insert_with(|| View::implied(b""));
    out.into_values().collect()
}

/// A file's contents from the archive bytes, holes as zeros.
fn contents(bytes: &[u8], e: &d2v_tar::Entry) -> Vec<u8> {
    let mut v = vec![0u8; e.size as usize];
    for r in e.data_runs() {
        let src = &bytes[r.archive as usize..][..r.len as usize];
        v[r.logical as usize..][..r.len as usize].copy_from_slice(src);
    }
    v
}

/// The same through the streaming reader: every entry's contents read in order.
fn stream_views(bytes: &[u8]) -> Result<Vec<View>, TarError> {
    let mut r = Reader::from_read(bytes);
    let mut b = d2v_tar::Builder::default();
    let mut data: HashMap<u64, Vec<u8>> = HashMap::new();
    while let Some(e) = r.next_entry()? {
        if e.kind == Kind::File {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut r.contents(&e), &mut v)
                .map_err(|source| TarError::Io { offset: 0, source })?;
            data.insert(e.header_offset, v);
        }
        b.add(e)?;
    }
    let archive = b.finish();
    Ok(views(&archive, |e| data[&e.header_offset].clone()))
}

/// An error and its sources, as `{:#}` prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn every_fixture_reads_the_same_through_slice_file_and_stream() {
    let dir = std::env::temp_dir().join(format!("d2v-tar-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in fixtures::all() {
        let slice =
            Archive::from_slice(&f.bytes).map(|a| lines(views(&a, |e| contents(&f.bytes, e))));
        let path = dir.join("f.tar");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&f.bytes)
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let by_offset = Archive::read(&mut Reader::from_file(&file).unwrap())
            .map(|a| lines(views(&a, |e| contents(&f.bytes, e))));
        let stream = stream_views(&f.bytes).map(lines);
        match &f.expect {
            Expect::Tree(want) => {
                let want = lines(want.clone());
                for (how, got) in [("slice", slice), ("file", by_offset), ("stream", stream)] {
                    match got {
                        Ok(got) => assert_eq!(got, want, "{}: {how}", f.name),
                        Err(e) => panic!("{}: {how}: {e}", f.name),
                    }
                }
            }
            Expect::Error(text) => {
                for (how, got) in [("slice", slice), ("file", by_offset), ("stream", stream)] {
                    match got {
                        Ok(t) => panic!("{}: {how}: accepted: {t:#?}", f.name),
                        Err(e) => {
                            let msg = chain(&e);
                            assert!(msg.contains(text), "{}: {how}: {msg}", f.name)
                        }
                    }
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
