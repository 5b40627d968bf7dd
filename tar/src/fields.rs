//! An entry's metadata fields (mode, owner, times, device): PAX records over
//! header fields, every number checked to parse and to fit.

use crate::entry::{Entry, Kind, Time};
use crate::error::TarError;
use crate::header::{cstr, numeric, numeric_signed, Header};
use crate::pax::{self, Extensions};

/// Builds [`TarError::BadField`] for one entry.
pub(crate) struct Bad<'p> {
    pub path: &'p [u8],
    pub offset: u64,
}

impl Bad<'_> {
    pub fn field(&self, field: &'static str, value: &[u8]) -> TarError {
        TarError::BadField {
            path: self.path.to_vec(),
            offset: self.offset,
            field,
            value: value.to_vec(),
        }
    }
}

/// The entry kind of a type flag (`raw_path` tells v7 directories apart).
pub(crate) fn kind_of(typeflag: u8, raw_path: &[u8]) -> Result<Kind, TarError> {
    Ok(match typeflag {
        b'0' | 0 if raw_path.ends_with(b"/") => Kind::Dir,
        b'1' => Kind::HardLink,
        b'2' => Kind::Symlink,
        b'3' => Kind::CharDevice,
        b'4' => Kind::BlockDevice,
        b'5' | b'D' => Kind::Dir,
        b'6' => Kind::Fifo,
        b'M' | b'N' => {
            return Err(TarError::Unsupported {
                path: raw_path.to_vec(),
                kind: typeflag as char,
            })
        }
        // Regular, contiguous, old GNU sparse; POSIX reads unknown types as files.
        _ => Kind::File,
    })
}

/// Reads the metadata fields: PAX records over header fields, every number
/// checked to parse and to fit.
pub(crate) fn fields(
    h: &Header,
    ext: &Extensions,
    e: &mut Entry,
    bad: &Bad,
) -> Result<(), TarError> {
    let kind = e.kind;
    let hdr = h.bytes();
    let num = |what: &'static str, r: std::ops::Range<usize>| {
        numeric(&hdr[r.clone()]).map_err(|_| bad.field(what, cstr(&hdr[r])))
    };
    let small = |what: &'static str, r: std::ops::Range<usize>| {
        let n = num(what, r.clone())?;
        u32::try_from(n).map_err(|_| bad.field(what, cstr(&hdr[r])))
    };
    let id = |pax_what: &'static str, pax: &Option<Vec<u8>>, what, r| match pax {
        Some(v) => pax::decimal(v)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad.field(pax_what, v)),
        None => small(what, r),
    };
    let time = |what: &'static str, v: &[u8]| pax::time(v).ok_or_else(|| bad.field(what, v));
    let mtime = match &ext.mtime {
        Some(v) => time("pax mtime", v)?,
        None => Time {
            sec: numeric_signed(&hdr[136..148])
                .map_err(|_| bad.field("mtime", cstr(&hdr[136..148])))?,
            nsec: 0,
        },
    };
    // GNU headers keep atime and ctime where ustar has its name prefix.
    let (gnu_atime, gnu_ctime) = if h.is_gnu() {
        (num("atime", 345..357)?, num("ctime", 357..369)?)
    } else {
        (0, 0)
    };
    let secs = |s: u64| {
        i64::try_from(s)
            .ok()
            .filter(|&s| s != 0)
            .map(|sec| Time { sec, nsec: 0 })
    };
    let atime = match &ext.atime {
        Some(v) => Some(time("pax atime", v)?),
        None => secs(gnu_atime),
    };
    let ctime = match &ext.ctime {
        Some(v) => Some(time("pax ctime", v)?),
        None => secs(gnu_ctime),
    };
    let dev = if matches!(kind, Kind::CharDevice | Kind::BlockDevice) {
        (small("devmajor", 329..337)?, small("devminor", 337..345)?)
    } else {
        (0, 0)
    };
    e.mode = (num("mode", 100..108)? & 0o7777) as u32;
    e.uid = id("pax uid", &ext.uid, "uid", 108..116)?;
    e.gid = id("pax gid", &ext.gid, "gid", 116..124)?;
    e.mtime = mtime;
    e.atime = atime;
    e.ctime = ctime;
    e.dev = dev;
    Ok(())
}
