//! A regular file's contents read from a streamed archive, holes as zeros.

use std::io::{self, Read};

use crate::entry::DataRun;
use crate::reader::Reader;
use crate::source::ReadSource;

/// A regular file's contents read from a stream, holes as zeros.
pub struct Contents<'r, R> {
    pub(crate) reader: &'r mut Reader<ReadSource<R>>,
    pub(crate) runs: Vec<DataRun>,
    pub(crate) next: usize,
    pub(crate) pos: u64,
    pub(crate) size: u64,
}

impl<R: Read> Read for Contents<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let run = self.runs.get(self.next).copied();
        let (hole_end, in_run) = match run {
            Some(r) if self.pos >= r.logical => (self.pos, Some(r)),
            Some(r) => (r.logical, None),
            None => (self.size, None),
        };
        let n = match in_run {
            None => {
                let n = (hole_end - self.pos).min(buf.len() as u64) as usize;
                buf[..n].fill(0);
                n
            }
            Some(r) => {
                let want = (r.logical + r.len - self.pos).min(buf.len() as u64) as usize;
                let n = self
                    .reader
                    .read_data(&mut buf[..want])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if self.pos + n as u64 == r.logical + r.len {
                    self.next += 1;
                }
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}
