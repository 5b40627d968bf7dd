//! Sequential block output: the writer places everything it writes one block
//! after another, so the image is produced as one forward stream (buffered),
//! with `copy_file_range` for data handed over as a file range. The stream
//! steps over one reserved hole (the backup superblock and descriptors at
//! the start of group 1) and remembers the blocks it skipped.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::io::Errno;

use crate::format::BLOCK_SIZE;

/// Flush the buffer once it holds this many bytes.
const BUF_LIMIT: usize = 8 << 20;
/// Chunk size when copying by hand.
const COPY_CHUNK: usize = 1 << 20;

/// An append-only stream of blocks into the image file.
pub struct BlockStream {
    file: File,
    buf: Vec<u8>,
    /// Block at which `buf` starts.
    buf_start: u64,
    /// Whether `copy_file_range` has failed with "not supported" before.
    no_cfr: bool,
    /// Blocks `[start, end)` nothing may be streamed into.
    hole: Option<(u64, u64)>,
    /// Runs of blocks skipped over (left unused), in order.
    gaps: Vec<(u64, u64)>,
}

impl BlockStream {
    /// Start writing at block `start` of `file`, never into `hole`.
    pub fn new(file: File, start: u64, hole: Option<(u64, u64)>) -> Self {
        BlockStream {
            file,
            buf: Vec::with_capacity(BUF_LIMIT),
            buf_start: start,
            no_cfr: false,
            hole,
            gaps: Vec::new(),
        }
    }

    /// Whether a run of `n` blocks starting at `at` would overlap the hole.
    pub fn hits_hole(&self, at: u64, n: u64) -> bool {
        crate::geometry::hits_hole(self.hole, at, n)
    }

    /// The end of the hole if a run of `n` blocks at `at` would overlap it.
    pub fn past_hole(&self, at: u64, n: u64) -> u64 {
        crate::geometry::past_hole(self.hole, at, n)
    }

    /// The blocks nothing may be streamed into.
    pub fn hole(&self) -> Option<(u64, u64)> {
        self.hole
    }

    /// Make the next `n` blocks one run clear of the hole (skipping past it
    /// if need be) and return where that run starts.
    pub fn place(&mut self, n: u64) -> io::Result<u64> {
        let at = self.next_block();
        let to = self.past_hole(at, n);
        if to != at {
            self.jump(to, true)?;
        }
        Ok(to)
    }

    /// The runs of blocks skipped over so far.
    pub fn gaps(&self) -> &[(u64, u64)] {
        &self.gaps
    }

    /// The block the next push lands on.
    pub fn next_block(&self) -> u64 {
        self.buf_start + (self.buf.len() / BLOCK_SIZE) as u64
    }

    /// Append `data`, zero-padded to whole blocks; returns its first block.
    pub fn push(&mut self, data: &[u8]) -> io::Result<u64> {
        let at = self.place(data.len().div_ceil(BLOCK_SIZE) as u64)?;
        self.buf.extend_from_slice(data);
        let rem = self.buf.len() % BLOCK_SIZE;
        if rem != 0 {
            self.buf.resize(self.buf.len() + BLOCK_SIZE - rem, 0);
        }
        if self.buf.len() >= BUF_LIMIT {
            self.flush()?;
        }
        Ok(at)
    }

    /// Append `len` bytes that `fill` writes straight into the buffer
    /// (zero-padded to whole blocks), saving a copy; returns the first block.
    pub fn push_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let at = self.place(len.div_ceil(BLOCK_SIZE) as u64)?;
        let start = self.buf.len();
        self.buf.resize(start + len.next_multiple_of(BLOCK_SIZE), 0);
        if let Err(e) = fill(&mut self.buf[start..start + len]) {
            self.buf.truncate(start);
            return Err(e);
        }
        if self.buf.len() >= BUF_LIMIT {
            self.flush()?;
        }
        Ok(at)
    }

    /// Write out what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.buf_start * BLOCK_SIZE as u64)?;
            self.buf_start += (self.buf.len() / BLOCK_SIZE) as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Continue at block `block` (at or after [`Self::next_block`]); the
    /// blocks in between are in use but stay unwritten (zeros).
    pub fn skip_to(&mut self, block: u64) -> io::Result<()> {
        self.jump(block, false)
    }

    /// Continue at block `block`, the blocks in between left unused.
    pub fn leave_free_to(&mut self, block: u64) -> io::Result<()> {
        self.jump(block, true)
    }

    fn jump(&mut self, block: u64, free: bool) -> io::Result<()> {
        self.flush()?;
        debug_assert!(block >= self.buf_start);
        if free && block > self.buf_start {
            self.gaps.push((self.buf_start, block));
        }
        self.buf_start = block;
        Ok(())
    }

    /// Append `len` bytes of `src` from `offset` (zero-padded to whole
    /// blocks), split around the hole; returns the runs `(first block,
    /// blocks)` it went to.
    pub fn copy_from(&mut self, src: &File, offset: u64, len: u64) -> io::Result<Vec<(u64, u64)>> {
        let bs = BLOCK_SIZE as u64;
        self.flush()?;
        let at = self.buf_start;
        let mut runs = Vec::new();
        let (mut offset, mut len) = (offset, len);
        if let Some((hs, _)) = self.hole.filter(|_| self.hits_hole(at, len.div_ceil(bs))) {
            if at < hs {
                let head = (hs - at) * bs;
                runs.push((self.copy_run(src, offset, head)?, hs - at));
                offset += head;
                len -= head;
            }
            self.place(len.div_ceil(bs))?;
        }
        let first = self.copy_run(src, offset, len)?;
        runs.push((first, len.div_ceil(bs)));
        Ok(runs)
    }

    /// [`Self::copy_from`] into one run at the current position.
    fn copy_run(&mut self, src: &File, offset: u64, len: u64) -> io::Result<u64> {
        let at = self.buf_start;
        let out_off = at * BLOCK_SIZE as u64;
        let mut done = 0u64;
        if !self.no_cfr {
            done = self.copy_file_range(src, offset, out_off, len)?;
        }
        if done < len {
            let mut chunk = vec![0u8; COPY_CHUNK];
            while done < len {
                let n = ((len - done) as usize).min(COPY_CHUNK);
                src.read_exact_at(&mut chunk[..n], offset + done)?;
                self.file.write_all_at(&chunk[..n], out_off + done)?;
                done += n as u64;
            }
        }
        self.buf_start += len.div_ceil(BLOCK_SIZE as u64);
        // Make sure a padded final block exists even if nothing follows it.
        Ok(at)
    }

    /// Copy with `copy_file_range`, returning how much was copied; stops
    /// early (without error) when the kernel cannot do it for these files.
    fn copy_file_range(&mut self, src: &File, offset: u64, out: u64, len: u64) -> io::Result<u64> {
        let mut off_in = offset;
        let mut off_out = out;
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(1 << 30) as usize;
            let n = match rustix::fs::copy_file_range(
                src,
                Some(&mut off_in),
                &self.file,
                Some(&mut off_out),
                want,
            ) {
                Ok(n) => n,
                Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::BADF) => {
                    self.no_cfr = true;
                    return Ok(done);
                }
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "source file is shorter than its entry",
                ));
            }
            done += n as u64;
        }
        Ok(done)
    }

    /// Write `data` at byte `offset`, outside the stream (superblock, descriptors).
    pub fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// The image file.
    pub fn file(&self) -> &File {
        &self.file
    }
}
