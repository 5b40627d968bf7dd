//! Where archive bytes come from: a slice (an mmapped blob: zero-copy, data
//! is never touched), a file read by offset (data skipped by seeking), or any
//! stream (data read or discarded in order).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use crate::error::TarError;
use crate::header::BLOCK;

/// A source of archive bytes, read front to back.
pub trait Source {
    /// Archive offset of the next byte.
    fn position(&self) -> u64;
    /// Reads the next block; `Ok(false)` when the input ends exactly here.
    fn next_block(&mut self, out: &mut [u8; BLOCK]) -> Result<bool, TarError>;
    /// Appends the next `len` bytes to `out` (`what` names them in errors).
    fn read_into(
        &mut self,
        len: usize,
        out: &mut Vec<u8>,
        what: &'static str,
    ) -> Result<(), TarError>;
    /// Skips `n` bytes (`what` names them in errors).
    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), TarError>;
}

fn truncated(what: &'static str, offset: u64) -> TarError {
    TarError::Truncated { what, offset }
}

/// An archive in memory, typically a memory-mapped blob.
#[derive(Debug, Clone)]
pub struct SliceSource<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> SliceSource<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        SliceSource { data, pos: 0 }
    }

    /// The whole archive.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

impl Source for SliceSource<'_> {
    fn position(&self) -> u64 {
        self.pos as u64
    }

    fn next_block(&mut self, out: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        if self.pos == self.data.len() {
            return Ok(false);
        }
        let b = self
            .data
            .get(self.pos..self.pos + BLOCK)
            .ok_or(truncated("header", self.pos as u64))?;
        out.copy_from_slice(b);
        self.pos += BLOCK;
        Ok(true)
    }

    fn read_into(
        &mut self,
        len: usize,
        out: &mut Vec<u8>,
        what: &'static str,
    ) -> Result<(), TarError> {
        let b = self
            .data
            .get(self.pos..)
            .and_then(|rest| rest.get(..len))
            .ok_or(truncated(what, self.pos as u64))?;
        out.extend_from_slice(b);
        self.pos += len;
        Ok(())
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), TarError> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(truncated(what, self.pos as u64));
        }
        self.pos += n as usize;
        Ok(())
    }
}

/// An archive file read by offset (`pread`): headers are read through a
/// small buffer, data is skipped without being read, and a file that
/// changes underneath gives an error rather than a crash.
#[derive(Debug)]
pub struct FileSource<'f> {
    file: &'f File,
    len: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'f> FileSource<'f> {
    /// Reads `file` from its start; its current length is the archive's.
    pub fn new(file: &'f File) -> io::Result<Self> {
        Ok(FileSource {
            file,
            len: file.metadata()?.len(),
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
        })
    }

    /// The archive file.
    pub fn file(&self) -> &'f File {
        self.file
    }

    fn read_at(&mut self, out: &mut [u8]) -> Result<(), TarError> {
        let end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos + out.len() as u64 > end {
            // Refill: 64 KiB holds many consecutive small entries.
            let want = (out.len() as u64).max(64 << 10).min(self.len - self.pos) as usize;
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf, self.pos)
                .map_err(|source| TarError::Io {
                    offset: self.pos,
                    source,
                })?;
            self.buf_start = self.pos;
        }
        let at = (self.pos - self.buf_start) as usize;
        out.copy_from_slice(&self.buf[at..at + out.len()]);
        self.pos += out.len() as u64;
        Ok(())
    }
}

impl Source for FileSource<'_> {
    fn position(&self) -> u64 {
        self.pos
    }

    fn next_block(&mut self, out: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        if self.pos == self.len {
            return Ok(false);
        }
        if self.len - self.pos < BLOCK as u64 {
            return Err(truncated("header", self.pos));
        }
        self.read_at(out)?;
        Ok(true)
    }

    fn read_into(
        &mut self,
        len: usize,
        out: &mut Vec<u8>,
        what: &'static str,
    ) -> Result<(), TarError> {
        if (self.len - self.pos) < len as u64 {
            return Err(truncated(what, self.pos));
        }
        let start = out.len();
        out.resize(start + len, 0);
        self.read_at(&mut out[start..])
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), TarError> {
        if n > self.len - self.pos {
            return Err(truncated(what, self.pos));
        }
        self.pos += n;
        Ok(())
    }
}

/// An archive arriving as a stream (a pipe, a decompressor): every byte is
/// read once, in order; skipped data is read and discarded.
#[derive(Debug)]
pub struct ReadSource<R> {
    r: R,
    pos: u64,
}

impl<R: Read> ReadSource<R> {
    /// Reads from `r`, positioned at the start of the archive.
    pub fn new(r: R) -> Self {
        ReadSource { r, pos: 0 }
    }

    /// Reads up to `buf.len()` bytes.
    pub(crate) fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        loop {
            match self.r.read(buf) {
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(TarError::Io {
                        offset: self.pos,
                        source,
                    })
                }
            }
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.r
    }
}

impl<R: Read> Source for ReadSource<R> {
    fn position(&self) -> u64 {
        self.pos
    }

    fn next_block(&mut self, out: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let start = self.pos;
        let mut got = 0;
        while got < BLOCK {
            let n = self.read_some(&mut out[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        match got {
            0 => Ok(false),
            BLOCK => Ok(true),
            _ => Err(truncated("header", start)),
        }
    }

    fn read_into(
        &mut self,
        len: usize,
        out: &mut Vec<u8>,
        what: &'static str,
    ) -> Result<(), TarError> {
        let start = self.pos;
        let n = (&mut self.r)
            .take(len as u64)
            .read_to_end(out)
            .map_err(|source| TarError::Io {
                offset: self.pos,
                source,
            })?;
        self.pos += n as u64;
        if n < len {
            return Err(truncated(what, start));
        }
        Ok(())
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), TarError> {
        let start = self.pos;
        let done = io::copy(&mut (&mut self.r).take(n), &mut io::sink()).map_err(|source| {
            TarError::Io {
                offset: self.pos,
                source,
            }
        })?;
        self.pos += done;
        if done < n {
            return Err(truncated(what, start));
        }
        Ok(())
    }
}
