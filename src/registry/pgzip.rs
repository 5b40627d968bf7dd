//! Parallel, deterministic gzip for pushing layers.
//!
//! The input is cut into fixed-size chunks, each compressed on its own core as
//! one gzip member (no name, no time stamp), and the members are written in
//! order. A multi-member file is one gzip file (RFC 1952 §2.2) that every layer
//! reader decompresses whole (Go's `compress/gzip`, pigz, flate2's
//! `MultiGzDecoder`). The chunk size, not the number of cores, decides the
//! bytes, so the same layer always compresses to the same digest.

use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};

/// Input bytes per gzip member: large enough that restarting the dictionary
/// costs well under 0.1% of the compressed size.
const CHUNK: usize = 4 << 20;

fn gzip_chunk(chunk: &[u8]) -> io::Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new().write(
        Vec::with_capacity(chunk.len() / 2),
        flate2::Compression::default(),
    );
    gz.write_all(chunk)?;
    gz.finish()
}

/// Reads up to `CHUNK` bytes (fewer only at the end of `input`).
fn read_chunk(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(CHUNK);
    input.take(CHUNK as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Gzips all of `input` into `output` using up to `threads` cores; returns
/// the SHA-256 of the input, hashed beside the compression of each batch (so
/// the caller can check what it compressed without a second pass or a
/// longer critical path).
pub fn compress(
    mut input: impl Read,
    mut output: impl Write,
    threads: usize,
) -> io::Result<[u8; 32]> {
    let threads = threads.max(1);
    let mut hasher = Sha256::new();
    let mut written = 0;
    loop {
        let mut batch = Vec::with_capacity(threads);
        let mut end = false;
        while batch.len() < threads && !end {
            let chunk = read_chunk(&mut input)?;
            end = chunk.len() < CHUNK;
            // An empty input still makes one (empty) member: a valid gzip file.
            if !chunk.is_empty() || written + batch.len() == 0 {
                batch.push(chunk);
            }
        }
        let members: Vec<io::Result<Vec<u8>>> = std::thread::scope(|scope| {
            let hasher = &mut hasher;
            let batch = &batch;
            let hashing = scope.spawn(move || batch.iter().for_each(|chunk| hasher.update(chunk)));
            let handles: Vec<_> = batch
                .iter()
                .map(|chunk| scope.spawn(move || gzip_chunk(chunk)))
                .collect();
            let members = handles
                .into_iter()
                .map(|h| h.join().expect("a gzip thread panicked"))
                .collect();
            hashing.join().expect("the hashing thread panicked");
            members
        });
        for member in members {
            output.write_all(&member?)?;
        }
        written += batch.len();
        if end {
            return Ok(hasher.finalize().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut gz = Vec::new();
        let hash = compress(data, &mut gz, threads).unwrap();
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(data)));
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        gz
    }

    #[test]
    fn round_trips_and_does_not_depend_on_the_thread_count() {
        let mut data = Vec::new();
        let mut x: u32 = 1;
        while data.len() < 2 * CHUNK + 12345 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            data.extend_from_slice(format!("line {} {}\n", x % 1000, x >> 20).as_bytes());
        }
        let one = roundtrip(&data, 1);
        assert_eq!(roundtrip(&data, 2), one);
        assert_eq!(roundtrip(&data, 5), one);
        assert!(one.len() < data.len() / 2, "it compresses");
        // Exact multiples of the chunk size and empty input.
        roundtrip(&data[..CHUNK], 2);
        roundtrip(&data[..2 * CHUNK], 2);
        let empty = roundtrip(b"", 3);
        assert!(!empty.is_empty(), "an empty input is still a gzip file");
        // Other readers see one stream too: gzip(1) decompresses it whole.
        let mut child = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feed = std::thread::spawn(move || stdin.write_all(&one).unwrap());
        let out = child.wait_with_output().unwrap();
        feed.join().unwrap();
        assert_eq!(out.stdout, data);
    }
}
