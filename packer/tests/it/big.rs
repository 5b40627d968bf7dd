//! The heavy edges, one test each: a 100k-entry directory the kernel must
//! find every name in, files around the 128 MiB extent boundary, an 8 GiB
//! and a 200 GiB sparse file, and an extent tree two levels deep.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use crate::common::*;
use d2v_packer::*;
use sha2::{Digest, Sha256};

fn t0() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

#[test]
fn kernel_finds_every_name_in_a_100k_entry_directory() {
    if !require_root() || !require_tool("e2fsck") {
        return;
    }
    let t = scratch();
    let img = t.path().join("img");
    let mut w = Ext4Writer::new(File::create(&img).unwrap(), Options::default()).unwrap();
    w.create(b"big", &Metadata::new(S_IFDIR | 0o755, t0()), None, 0)
        .unwrap();
    let name = |i: usize| format!("entry-{i}-{}", "z".repeat(i % 50));
    for i in 0..100_000 {
        w.create(
            format!("big/{}", name(i)).as_bytes(),
            &Metadata::new(S_IFREG | 0o644, t0()),
            None,
            0,
        )
        .unwrap();
    }
    let s = w.finish().unwrap();
    assert!(s.free_inodes >= 16384);
    assert_fsck_clean(&img);
    let m = Mount::new(&img, "ro");
    for i in 0..100_000 {
        let p = m.path().join("big").join(name(i));
        assert!(
            std::fs::symlink_metadata(&p).is_ok(),
            "kernel cannot find {}",
            p.display()
        );
    }
    assert!(std::fs::symlink_metadata(m.path().join("big/entry-100000-")).is_err());
    assert_eq!(
        std::fs::read_dir(m.path().join("big")).unwrap().count(),
        100_000
    );
}

/// Expected content for the large files: block `b` of file `f` is filled
/// with a pattern derived from both.
fn block_of(f: u64, b: u64) -> Vec<u8> {
    let mut v = vec![0u8; 4096];
    for (i, chunk) in v.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(f << 48 ^ b << 12 ^ i as u64).to_le_bytes());
    }
    v
}

#[test]
fn large_sparse_and_deep_files_round_trip() {
    if !require_root() || !require_tool("e2fsck") {
        return;
    }
    let t = scratch();
    let img = t.path().join("img");
    let mut w = Ext4Writer::new(
        File::create(&img).unwrap(),
        Options {
            journal: false,
            ..Options::default()
        },
    )
    .unwrap();
    let meta = Metadata::new(S_IFREG | 0o644, t0());
    let mut expect: Vec<(String, u64, String, u64)> = Vec::new(); // name, size, sha256, max allocated bytes
                                                                  // Around the 128 MiB maximum extent length.
    for (f, blocks) in [(1u64, 32767u64), (2, 32768), (3, 32769)] {
        let name = format!("f128-{blocks}");
        let size = blocks * 4096 - if f == 3 { 100 } else { 0 };
        w.create(name.as_bytes(), &meta, None, size).unwrap();
        let mut h = Sha256::new();
        let mut left = size;
        for b in 0..blocks {
            let mut blk = block_of(f, b);
            blk.truncate(left.min(4096) as usize);
            left -= blk.len() as u64;
            h.update(&blk);
            w.write_data(&blk).unwrap();
        }
        expect.push((name, size, hex(&h.finalize()), blocks * 4096));
    }
    // Sparse files: data islands in 8 GiB and at the end of 200 GiB.
    let sparse = |w: &mut Ext4Writer, f: u64, name: &str, size: u64, islands: &[u64]| {
        w.create(name.as_bytes(), &meta, None, size).unwrap();
        for &b in islands {
            w.write_data_at(b * 4096, &block_of(f, b)).unwrap();
        }
        // Expected hash (for files small enough to hash): zeros between
        // islands, computed in 1 MiB steps.
        if size > 1 << 30 {
            return (
                name.to_string(),
                size,
                String::new(),
                islands.len() as u64 * 4096 + (1 << 20),
            );
        }
        let mut h = Sha256::new();
        let zeros = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        for &b in islands {
            let mut gap = b * 4096 - pos;
            while gap > 0 {
                let n = gap.min(zeros.len() as u64);
                h.update(&zeros[..n as usize]);
                gap -= n;
            }
            h.update(block_of(f, b));
            pos = b * 4096 + 4096;
        }
        let mut gap = size - pos;
        while gap > 0 {
            let n = gap.min(zeros.len() as u64);
            h.update(&zeros[..n as usize]);
            gap -= n;
        }
        (
            name.to_string(),
            size,
            hex(&h.finalize()),
            islands.len() as u64 * 4096 + (1 << 20),
        )
    };
    expect.push(sparse(
        &mut w,
        4,
        "sparse-8g",
        8 << 30,
        &[0, 1, 5000, 1 << 20, (2 << 20) - 1],
    ));
    let last = (200u64 << 30) / 4096 - 1;
    expect.push(sparse(&mut w, 5, "sparse-200g", 200 << 30, &[7, last]));
    // 3000 one-block extents: leaves under an index block under the root.
    let islands: Vec<u64> = (0..3000).map(|i| i * 2).collect();
    expect.push(sparse(&mut w, 6, "deep-tree", 6000 * 4096, &islands));
    w.finish().unwrap();
    assert_fsck_clean(&img);
    let m = Mount::new(&img, "ro");
    for (name, size, sha, max_alloc) in &expect {
        let p = m.path().join(name);
        let st = std::fs::metadata(&p).unwrap();
        assert_eq!(st.len(), *size, "{name}");
        assert!(
            st.blocks() * 512 <= *max_alloc,
            "{name}: {} bytes allocated",
            st.blocks() * 512
        );
        if *size <= 1 << 30 {
            let mut h = Sha256::new();
            std::io::copy(&mut File::open(&p).unwrap(), &mut h).unwrap();
            assert_eq!(&hex(&h.finalize()), sha, "{name} content");
        } else {
            // Too big to hash in a test: check the islands directly.
            use std::os::unix::fs::FileExt;
            let f = File::open(&p).unwrap();
            let mut buf = vec![0u8; 4096];
            let (fno, islands): (u64, Vec<u64>) = if name == "sparse-8g" {
                (4, vec![0, 1, 5000, 1 << 20, (2 << 20) - 1])
            } else {
                (5, vec![7, last])
            };
            for b in &islands {
                f.read_exact_at(&mut buf, b * 4096).unwrap();
                assert!(buf == block_of(fno, *b), "{name}: block {b}");
                f.read_exact_at(&mut buf, (b + 1) * 4096 % size).unwrap();
                if !islands.contains(&((b + 1) % (size / 4096))) {
                    assert!(buf.iter().all(|&x| x == 0), "{name}: hole after {b}");
                }
            }
            // The holes read as zeros: count data through SEEK_DATA.
            // SAFETY: lseek on an open descriptor.
            let first = unsafe {
                libc::lseek(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    4096 * 2,
                    libc::SEEK_DATA,
                )
            };
            let next = islands.iter().find(|&&b| b >= 2).unwrap();
            assert_eq!(
                first as u64,
                next * 4096,
                "{name}: first data after the start"
            );
        }
    }
}
