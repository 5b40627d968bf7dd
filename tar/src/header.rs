//! The 512-byte header block: field offsets, numbers (octal or GNU base-256)
//! and the checksum. Nothing here allocates or trusts a field.

/// Size of a tar block (headers, and the unit data is padded to).
pub const BLOCK: usize = 512;

/// One header block, read-only.
#[derive(Clone, Copy)]
pub struct Header<'a>(&'a [u8; BLOCK]);

impl<'a> Header<'a> {
    /// Wraps a block.
    pub fn new(block: &'a [u8; BLOCK]) -> Self {
        Header(block)
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &'a [u8; BLOCK] {
        self.0
    }

    /// True for an all-zero block (the end-of-archive marker).
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }

    /// Whether the stored checksum matches, summed as unsigned or (as some old
    /// writers did) as signed bytes, with the checksum field read as spaces.
    pub fn checksum_ok(&self) -> bool {
        let Ok(stored) = numeric(&self.0[148..156]) else {
            return false;
        };
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (i, &b) in self.0.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += u64::from(b);
            signed += i64::from(b as i8);
        }
        stored == unsigned || stored as i64 == signed
    }

    /// The type flag (`b'0'`, `b'5'`, `b'x'`, ...).
    pub fn typeflag(&self) -> u8 {
        self.0[156]
    }

    /// POSIX ustar (and PAX): magic `ustar\0`; the name has a prefix field.
    pub fn is_ustar(&self) -> bool {
        &self.0[257..263] == b"ustar\0"
    }

    /// GNU: magic `ustar  \0`; atime and ctime where ustar has its prefix.
    pub fn is_gnu(&self) -> bool {
        &self.0[257..265] == b"ustar  \0"
    }

    /// The path as stored in the header (`prefix/name` for ustar).
    pub fn path(&self) -> Vec<u8> {
        let name = cstr(&self.0[0..100]);
        let prefix = cstr(&self.0[345..500]);
        if self.is_ustar() && !prefix.is_empty() {
            let mut v = Vec::with_capacity(prefix.len() + 1 + name.len());
            v.extend_from_slice(prefix);
            v.push(b'/');
            v.extend_from_slice(name);
            v
        } else {
            name.to_vec()
        }
    }

    /// The link target as stored in the header.
    pub fn link_name(&self) -> &'a [u8] {
        cstr(&self.0[157..257])
    }

    /// The mode field (all bits as stored).
    pub fn mode(&self) -> Result<u64, &'static str> {
        numeric(&self.0[100..108])
    }

    /// The owner's uid field.
    pub fn uid(&self) -> Result<u64, &'static str> {
        numeric(&self.0[108..116])
    }

    /// The owner's gid field.
    pub fn gid(&self) -> Result<u64, &'static str> {
        numeric(&self.0[116..124])
    }

    /// The size field: bytes of data after the header.
    pub fn size(&self) -> Result<u64, &'static str> {
        numeric(&self.0[124..136])
    }

    /// The modification time in seconds (may be negative in base-256).
    pub fn mtime(&self) -> Result<i64, &'static str> {
        numeric_signed(&self.0[136..148])
    }

    /// Device major and minor numbers.
    pub fn device(&self) -> Result<(u64, u64), &'static str> {
        Ok((numeric(&self.0[329..337])?, numeric(&self.0[337..345])?))
    }

    /// GNU headers' access and change times (zero when not recorded).
    pub fn gnu_times(&self) -> Result<(u64, u64), &'static str> {
        Ok((numeric(&self.0[345..357])?, numeric(&self.0[357..369])?))
    }

    /// Old GNU sparse (`S`): the four map slots, whether extension blocks
    /// follow, and the file's real size.
    pub fn gnu_sparse(&self) -> (&'a [u8], bool, &'a [u8]) {
        (&self.0[386..482], self.0[482] != 0, &self.0[483..495])
    }
}

/// Whether `block` looks like the first header of a tar archive: a ustar or
/// GNU magic, or an old-style header with a name whose checksum adds up.
pub fn looks_like_tar(block: &[u8]) -> bool {
    let Ok(block) = <&[u8; BLOCK]>::try_from(block) else {
        return false;
    };
    let h = Header::new(block);
    if &block[257..262] == b"ustar" {
        return true;
    }
    block[0] != 0 && h.checksum_ok()
}

/// Bytes up to the first NUL.
pub(crate) fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// A numeric field: octal text (leading spaces, ended by space or NUL), or
/// GNU base-256 when the top bit of the first byte is set.
pub fn numeric(f: &[u8]) -> Result<u64, &'static str> {
    if f.first().is_some_and(|&b| b & 0x80 != 0) {
        if f[0] == 0xff {
            return Err("negative number");
        }
        let mut v: u64 = u64::from(f[0] & 0x7f);
        for &b in &f[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or("number overflows")?;
        }
        return Ok(v);
    }
    let mut v: u64 = 0;
    let mut seen = false;
    for &b in f {
        match b {
            b'0'..=b'7' => {
                seen = true;
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or("number overflows")?;
            }
            b' ' if !seen => {}
            b' ' | 0 => break,
            _ => return Err("bad octal digit"),
        }
    }
    Ok(v)
}

/// A signed numeric field: as [`numeric`], plus GNU base-256 negatives
/// (first byte `0xff`, two's complement).
pub fn numeric_signed(f: &[u8]) -> Result<i64, &'static str> {
    if f.first() == Some(&0xff) {
        let tail = &f[f.len().saturating_sub(8)..];
        if f[..f.len() - tail.len()].iter().any(|&b| b != 0xff) {
            return Err("number overflows");
        }
        let mut v: i64 = -1;
        for &b in tail {
            v = (v << 8) | i64::from(b);
        }
        return Ok(v);
    }
    let v = numeric(f)?;
    i64::try_from(v).map_err(|_| "number overflows")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(numeric(b"0000644\0"), Ok(0o644));
        assert_eq!(numeric(b"  644 \0"), Ok(0o644));
        assert_eq!(numeric(b"        "), Ok(0));
        assert_eq!(numeric(b"\0\0\0\0"), Ok(0));
        assert!(numeric(b"0009").is_err());
        assert_eq!(
            numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]),
            Ok(2 << 16)
        );
        assert!(numeric(&[0xff; 12]).is_err());
        assert!(numeric(&[0x80, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert_eq!(numeric_signed(&[0xff; 12]), Ok(-1));
        let mut f = [0xffu8; 12];
        f[11] = 0xfe;
        assert_eq!(numeric_signed(&f), Ok(-2));
        assert_eq!(numeric_signed(b"00000000017\0"), Ok(15));
    }
}
