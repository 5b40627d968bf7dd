//! Entry paths and link targets: how they are checked and normalised.

use crate::error::TarError;

/// Longest symlink target (`PATH_MAX` - 1).
pub const MAX_SYMLINK: usize = 4095;
/// Longest name component (`NAME_MAX`).
pub const MAX_NAME: usize = 255;

/// How entry paths are checked and normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathRule {
    /// Image layers: an absolute path or any `..` component is an error.
    #[default]
    Strict,
    /// Unpacking into a directory (ADD), as Docker's chrooted unpack does:
    /// a leading `/` is the archive root and `..` is resolved lexically,
    /// stopping at the root.
    Clean,
}

/// Normalises a stored path by `rule`: empty and `.` components and a
/// trailing slash go; the archive root is the empty path.
pub fn normalize(raw: &[u8], rule: PathRule) -> Result<Vec<u8>, TarError> {
    let err = |e: fn(Vec<u8>) -> TarError| Err(e(raw.to_vec()));
    if raw.contains(&0) {
        return err(|path| TarError::NulInPath { path });
    }
    if rule == PathRule::Strict && raw.starts_with(b"/") {
        return err(|path| TarError::AbsolutePath { path });
    }
    // The common shapes (`./etc/passwd`, `usr/lib/`) need only their ends
    // trimmed: check that in one pass, without copying component by component.
    let mut trimmed = raw;
    while let Some(rest) = trimmed.strip_prefix(b"./") {
        trimmed = rest;
    }
    while let Some(rest) = trimmed.strip_suffix(b"/") {
        trimmed = rest;
    }
    if trimmed.is_empty() || trimmed == b"." {
        return Ok(Vec::new());
    }
    if is_normal(trimmed) {
        return Ok(trimmed.to_vec());
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." if rule == PathRule::Strict => {
                return err(|path| TarError::ParentComponent { path })
            }
            b".." => {
                // At the root `..` is the root, as in a chroot.
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
                continue;
            }
            _ if c.len() > MAX_NAME => return err(|path| TarError::NameTooLong { path }),
            _ => {}
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// Whether `raw` is already normal: relative, every component 1 to 255
/// bytes and neither `.` nor `..`, no trailing slash (the common case, checked
/// in one pass without building a copy component by component).
fn is_normal(raw: &[u8]) -> bool {
    // Length of the current component, and whether it is all dots so far.
    let (mut len, mut dots) = (0usize, true);
    for &b in raw {
        if b == b'/' {
            if len == 0 || (dots && len <= 2) {
                return false;
            }
            (len, dots) = (0, true);
        } else {
            len += 1;
            dots &= b == b'.';
            if len > MAX_NAME {
                return false;
            }
        }
    }
    len > 0 && !(dots && len <= 2)
}

/// A symlink target: 1 to 4095 bytes, no NUL.
pub(crate) fn symlink_target(target: Vec<u8>, raw_path: &[u8]) -> Result<Vec<u8>, TarError> {
    if target.is_empty() || target.len() > MAX_SYMLINK {
        return Err(TarError::BadSymlink {
            path: raw_path.to_vec(),
            len: target.len(),
        });
    }
    if target.contains(&0) {
        return Err(TarError::NulInPath {
            path: raw_path.to_vec(),
        });
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_by_rule() {
        let s = PathRule::Strict;
        assert_eq!(normalize(b"./a/b/", s).unwrap(), b"a/b");
        assert_eq!(normalize(b"a/b", s).unwrap(), b"a/b");
        assert_eq!(normalize(b"a/.b/c..", s).unwrap(), b"a/.b/c..");
        assert_eq!(normalize(b"", s).unwrap(), b"");
        assert_eq!(normalize(b"./", s).unwrap(), b"");
        assert_eq!(normalize(b"a//./b", s).unwrap(), b"a/b");
        assert!(matches!(
            normalize(b"/etc", s),
            Err(TarError::AbsolutePath { .. })
        ));
        assert!(matches!(
            normalize(b"a/../b", s),
            Err(TarError::ParentComponent { .. })
        ));
        assert!(matches!(
            normalize(b"a\0b", s),
            Err(TarError::NulInPath { .. })
        ));
        assert!(matches!(
            normalize(&[b'x'; 256], s),
            Err(TarError::NameTooLong { .. })
        ));
        let c = PathRule::Clean;
        assert_eq!(normalize(b"/etc/x", c).unwrap(), b"etc/x");
        assert_eq!(normalize(b"a/../b", c).unwrap(), b"b");
        assert_eq!(normalize(b"a/b/../../c", c).unwrap(), b"c");
        assert_eq!(normalize(b"a/../../b", c).unwrap(), b"b");
        assert_eq!(normalize(b"../../escaped", c).unwrap(), b"escaped");
    }
}
