//! The header sequence: extension headers (GNU `L`/`K`, PAX `x`) are gathered
//! and applied to the next real header, which becomes an [`Entry`] with a
//! normalised path, checked fields and the location of its data.

use std::fs::File;
use std::io::{self, Read};

use crate::contents::Contents;
use crate::entry::{Entry, Kind, SparseRun, Time};
use crate::error::TarError;
use crate::fields::{fields, kind_of, Bad};
use crate::header::{cstr, numeric, Header, BLOCK};
use crate::path::{normalize, symlink_target, PathRule};
use crate::pax::{self, Extensions};
use crate::source::{FileSource, ReadSource, SliceSource, Source};
use crate::sparse;

/// Largest single extension header (long name, long link, PAX records).
pub const MAX_EXTENSION: u64 = 16 << 20;
/// Most extension bytes that may wait for one entry.
pub const MAX_PENDING: usize = 64 << 20;
/// Reads entries one after another from a [`Source`].
///
/// After [`Reader::next_entry`] returns an entry, its data may be read
/// (streams) or located by offset (slices, files); the next call skips
/// whatever was not read.
#[derive(Debug)]
pub struct Reader<S> {
    src: S,
    rule: PathRule,
    /// Stored data of the current entry not yet consumed.
    left: u64,
    /// Padding after it.
    pad: u64,
    ended: bool,
}

impl<'a> Reader<SliceSource<'a>> {
    /// Reads an archive held in memory (an mmapped blob): entries say where
    /// their data lies and nothing is copied.
    pub fn from_slice(data: &'a [u8]) -> Self {
        Reader::new(SliceSource::new(data))
    }

    /// The stored bytes of `entry` (for a sparse file: its runs back to back).
    pub fn stored_data(&self, entry: &Entry) -> &'a [u8] {
        let data = self.src.data();
        let start = entry.data_offset as usize;
        &data[start..start + entry.data_len as usize]
    }
}

impl<'f> Reader<FileSource<'f>> {
    /// Reads an archive file by offset: data is skipped, not read, so it can
    /// be copied out later by offset.
    pub fn from_file(file: &'f File) -> io::Result<Self> {
        Ok(Reader::new(FileSource::new(file)?))
    }
}

impl<R: Read> Reader<ReadSource<R>> {
    /// Reads an archive from a stream.
    pub fn from_read(r: R) -> Self {
        Reader::new(ReadSource::new(r))
    }

    /// Reads up to `buf.len()` bytes of the current entry's stored data.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let want = (buf.len() as u64).min(self.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let at = self.src.position();
        let n = self.src.read_some(&mut buf[..want])?;
        if n == 0 {
            return Err(TarError::Truncated {
                what: "entry data",
                offset: at,
            });
        }
        self.left -= n as u64;
        Ok(n)
    }

    /// The contents of the current entry `entry` (a regular file), holes of
    /// a sparse file read as zeros.
    pub fn contents<'r>(&'r mut self, entry: &Entry) -> Contents<'r, R> {
        Contents {
            runs: entry.data_runs().collect(),
            next: 0,
            pos: 0,
            size: entry.size,
            reader: self,
        }
    }
}

impl<S: Source> Reader<S> {
    /// Reads entries from `src` with the [`PathRule::Strict`] rule.
    pub fn new(src: S) -> Self {
        Reader {
            src,
            rule: PathRule::Strict,
            left: 0,
            pad: 0,
            ended: false,
        }
    }

    /// Checks paths by `rule` instead.
    pub fn with_rule(mut self, rule: PathRule) -> Self {
        self.rule = rule;
        self
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.src
    }

    /// The next entry, or `None` at the end of the archive (an all-zero
    /// block, or the input ending exactly between entries).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.ended {
            return Ok(None);
        }
        let rest = std::mem::take(&mut self.left) + std::mem::take(&mut self.pad);
        self.src.skip(rest, "entry data")?;
        let mut ext = Extensions::default();
        let mut first: Option<u64> = None;
        let mut block = [0u8; BLOCK];
        loop {
            let at = self.src.position();
            let more = self.src.next_block(&mut block)?;
            let h = Header::new(&block);
            if !more || h.is_zero() {
                if !ext.is_empty() {
                    return Err(TarError::Truncated {
                        what: "extended header without entry",
                        offset: at,
                    });
                }
                self.ended = true;
                return Ok(None);
            }
            if !h.checksum_ok() {
                return Err(TarError::BadChecksum { offset: at });
            }
            let start = *first.get_or_insert(at);
            let size = h
                .size()
                .map_err(|r| malformed(at, format!("size: {r}")))
                .and_then(|n| fits(n, at))?;
            match h.typeflag() {
                flag @ (b'L' | b'K' | b'x') => {
                    let body = self.extension(&mut ext, size)?;
                    match flag {
                        b'L' => ext.long_name = Some(cstr(&body).to_vec()),
                        b'K' => ext.long_link = Some(cstr(&body).to_vec()),
                        _ => ext
                            .apply_records(&body)
                            .map_err(|r| malformed(at, r.to_string()))?,
                    }
                }
                // Global PAX headers and volume labels describe no entry.
                b'g' | b'V' => self.src.skip(padded(size), "extended header")?,
                _ => return self.entry(&h, start, ext, size).map(Some),
            }
        }
    }

    /// Reads one extension header's body (and its padding), bounded.
    fn extension(&mut self, ext: &mut Extensions, size: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXTENSION {
            return Err(TarError::Limit("an extension header is larger than 16 MiB"));
        }
        ext.held += size as usize;
        if ext.held > MAX_PENDING {
            return Err(TarError::Limit(
                "more than 64 MiB of extension headers for one entry",
            ));
        }
        let mut body = Vec::new();
        self.src
            .read_into(size as usize, &mut body, "extended header")?;
        self.src.skip(padded(size) - size, "extended header")?;
        Ok(body)
    }

    /// Builds the entry of the real header `h` (at `start`, counting its
    /// extension headers) and positions the reader at its data.
    fn entry(
        &mut self,
        h: &Header,
        start: u64,
        mut ext: Extensions,
        size: u64,
    ) -> Result<Entry, TarError> {
        let typeflag = h.typeflag();
        // GNU.sparse.name, then a GNU long name, then PAX path, as Go's
        // archive/tar (what containerd and Docker read layers with) orders them.
        let raw_path = (ext.sparse.name.take())
            .or(ext.long_name.take())
            .or(ext.path.take())
            .unwrap_or_else(|| h.path());
        let bad = Bad {
            path: &raw_path,
            offset: start,
        };
        let stored = match &ext.size {
            Some(v) => pax::decimal(v)
                .filter(|&n| n <= MAX_SIZE)
                .ok_or_else(|| bad.field("pax size", v))?,
            None => size,
        };
        let path = normalize(&raw_path, self.rule)?;
        let kind = kind_of(typeflag, &raw_path)?;
        let raw_link = (ext.long_link.take())
            .or(ext.linkpath.take())
            .unwrap_or_else(|| h.link_name().to_vec());
        let link = match kind {
            Kind::HardLink => {
                normalize(&raw_link, self.rule).map_err(|_| TarError::HardLinkOutside {
                    path: raw_path.clone(),
                    target: raw_link.clone(),
                })?
            }
            Kind::Symlink => symlink_target(raw_link, &raw_path)?,
            _ => Vec::new(),
        };
        let mut e = Entry {
            path,
            kind,
            link,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: Time::default(),
            atime: None,
            ctime: None,
            dev: (0, 0),
            xattrs: std::mem::take(&mut ext.xattrs),
            size: 0,
            sparse: None,
            header_offset: start,
            data_offset: self.src.position(),
            data_len: stored,
        };
        fields(h, &ext, &mut e, &bad)?;
        if kind == Kind::File {
            e.size = stored;
            if typeflag == b'S' {
                self.old_gnu_sparse(&mut e, h, start)?;
            } else {
                self.pax_sparse(&mut e, &ext.sparse, start)?;
            }
        }
        self.left = e.data_len;
        self.pad = padded(stored) - stored;
        Ok(e)
    }

    /// Old GNU sparse (`S`): four map slots in the header, more in extension
    /// blocks between the header and the data.
    fn old_gnu_sparse(&mut self, e: &mut Entry, h: &Header, start: u64) -> Result<(), TarError> {
        let (area, mut extended, real) = h.gnu_sparse();
        let mut runs = Vec::new();
        sparse::gnu_slots(area, sparse::HEADER_SLOTS, &mut runs)
            .map_err(|r| malformed(start, r))?;
        let real = numeric(real)
            .ok()
            .filter(|&n| n <= MAX_SIZE)
            .ok_or_else(|| malformed(start, "bad sparse real size"))?;
        let mut block = [0u8; BLOCK];
        while extended {
            let at = self.src.position();
            if !self.src.next_block(&mut block)? {
                return Err(TarError::Truncated {
                    what: "sparse extension header",
                    offset: at,
                });
            }
            sparse::gnu_slots(&block[..504], sparse::EXTENSION_SLOTS, &mut runs)
                .map_err(|r| malformed(at, r))?;
            extended = block[504] != 0;
        }
        e.data_offset = self.src.position();
        self.set_runs(e, runs, real, start)
    }

    /// PAX sparse formats 0.0, 0.1 and 1.0.
    fn pax_sparse(
        &mut self,
        e: &mut Entry,
        sp: &pax::SparseRecords,
        start: u64,
    ) -> Result<(), TarError> {
        let real = |default: u64| match &sp.realsize {
            Some(v) => pax::decimal(v)
                .filter(|&n| n <= MAX_SIZE)
                .ok_or_else(|| malformed(start, "bad GNU.sparse.realsize")),
            None => Ok(default),
        };
        match (sp.major.as_deref(), sp.minor.as_deref()) {
            (Some(b"1"), None | Some(b"0")) => {
                if sp.realsize.is_none() {
                    return Err(malformed(
                        start,
                        "GNU sparse 1.0 without GNU.sparse.realsize",
                    ));
                }
                let real = real(0)?;
                let mut map = sparse::Map10::default();
                let mut block = [0u8; BLOCK];
                let mut used = 0u64;
                loop {
                    if used + BLOCK as u64 > e.data_len {
                        return Err(malformed(
                            start,
                            "sparse 1.0 map runs past the entry's data",
                        ));
                    }
                    let at = self.src.position();
                    if !self.src.next_block(&mut block)? {
                        return Err(TarError::Truncated {
                            what: "sparse 1.0 map",
                            offset: at,
                        });
                    }
                    used += BLOCK as u64;
                    if map
                        .feed(&block, e.data_len)
                        .map_err(|r| malformed(start, r))?
                    {
                        break;
                    }
                }
                e.data_offset += used;
                e.data_len -= used;
                self.set_runs(e, map.runs, real, start)
            }
            (None | Some(b"0"), _) if sp.map.is_some() => {
                let runs = sparse::map01(sp.map.as_deref().unwrap_or_default())
                    .map_err(|r| malformed(start, r))?;
                let real = real(e.data_len)?;
                self.set_runs(e, runs, real, start)
            }
            (None | Some(b"0"), _) if !sp.offsets.is_empty() || !sp.numbytes.is_empty() => {
                let runs =
                    sparse::map00(&sp.offsets, &sp.numbytes).map_err(|r| malformed(start, r))?;
                let real = real(e.data_len)?;
                self.set_runs(e, runs, real, start)
            }
            (None | Some(b"0"), _) => Ok(()),
            _ => Err(malformed(start, "unsupported GNU sparse format")),
        }
    }

    fn set_runs(
        &mut self,
        e: &mut Entry,
        runs: Vec<SparseRun>,
        real: u64,
        start: u64,
    ) -> Result<(), TarError> {
        let runs = sparse::check(runs, real, e.data_len).map_err(|r| malformed(start, r))?;
        e.size = real;
        e.sparse = Some(runs);
        Ok(())
    }
}

/// Largest entry size: far beyond any real archive, small enough that sizes
/// and offsets never overflow.
const MAX_SIZE: u64 = 1 << 62;

fn fits(n: u64, at: u64) -> Result<u64, TarError> {
    if n > MAX_SIZE {
        return Err(malformed(at, "size too large"));
    }
    Ok(n)
}

/// The stored size rounded up to whole blocks.
fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

fn malformed(offset: u64, reason: impl Into<String>) -> TarError {
    TarError::Malformed {
        offset,
        reason: reason.into(),
    }
}
