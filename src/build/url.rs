//! ADD of `http(s)://` sources: downloaded (rustls), verified against
//! `--checksum`, named after the URL's last path element, with the server's
//! `Last-Modified` as mtime, as BuildKit does. Downloads are never unpacked.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use sha2::{Digest, Sha256, Sha512};
use thiserror::Error;

/// Fetching a URL failed.
#[derive(Debug, Error)]
pub enum UrlError {
    /// The request failed (network or HTTP status).
    #[error("ADD {url}: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The content does not match `--checksum`.
    #[error("ADD {url}: checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        /// The URL.
        url: String,
        /// `--checksum` as given.
        expected: String,
        /// What the content hashes to.
        actual: String,
    },
    /// `--checksum` is not `sha256:<hex>` or `sha512:<hex>`.
    #[error("unsupported --checksum {0:?} (sha256:<hex> or sha512:<hex>)")]
    BadChecksum(String),
    /// Local I/O.
    #[error("ADD {url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// The error.
        source: io::Error,
    },
}

/// A downloaded file, ready to copy.
#[derive(Debug)]
pub struct Download {
    /// The content (an anonymous temp file, rewound).
    pub file: File,
    /// The file name BuildKit would give it.
    pub name: String,
    /// `Last-Modified`, as seconds since the epoch.
    pub mtime: Option<i64>,
}

/// Whether an ADD source is a URL.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// BuildKit's file name for a URL: the last path element, or `__unnamed__`.
pub fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once('/').map_or("", |(_, p)| p);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// Download `url`, checking `checksum` (`sha256:…`/`sha512:…`) if given.
pub fn fetch(url: &str, checksum: Option<&str>) -> Result<Download, UrlError> {
    let fail = |message: String| UrlError::Fetch {
        url: url.to_string(),
        message,
    };
    let io_err = |source| UrlError::Io {
        url: url.to_string(),
        source,
    };
    let expected = checksum.map(parse_checksum).transpose()?;
    let resp = ureq::get(url).call().map_err(|e| fail(e.to_string()))?;
    let mtime = resp.header("Last-Modified").and_then(parse_http_date);
    let mut file = tempfile::tempfile().map_err(io_err)?;
    let mut reader = resp.into_reader();
    let mut sha256 = Sha256::new();
    let mut sha512 = Sha512::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        match expected {
            Some((Algo::Sha512, _)) => sha512.update(&buf[..n]),
            _ => sha256.update(&buf[..n]),
        }
        file.write_all(&buf[..n]).map_err(io_err)?;
    }
    if let Some((algo, want)) = expected {
        let got = match algo {
            Algo::Sha256 => hex::encode(sha256.finalize()),
            Algo::Sha512 => hex::encode(sha512.finalize()),
        };
        if got != want {
            return Err(UrlError::Checksum {
                url: url.to_string(),
                expected: checksum.unwrap_or_default().to_string(),
                actual: format!("{}:{got}", algo.name()),
            });
        }
    }
    file.rewind().map_err(io_err)?;
    Ok(Download {
        file,
        name: file_name(url),
        mtime,
    })
}

#[derive(Debug, Clone, Copy)]
enum Algo {
    Sha256,
    Sha512,
}

impl Algo {
    fn name(self) -> &'static str {
        match self {
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }
}

fn parse_checksum(s: &str) -> Result<(Algo, String), UrlError> {
    let bad = || UrlError::BadChecksum(s.to_string());
    let (algo, hexpart) = s.split_once(':').ok_or_else(bad)?;
    let (algo, len) = match algo {
        "sha256" => (Algo::Sha256, 64),
        "sha512" => (Algo::Sha512, 128),
        _ => return Err(bad()),
    };
    if hexpart.len() != len || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((algo, hexpart.to_ascii_lowercase()))
}

/// Parse an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to epoch seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_and_names() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("garbage"), None);
        assert_eq!(
            file_name("https://example.com/a/b/tool.tar.gz?x=1#y"),
            "tool.tar.gz"
        );
        assert_eq!(file_name("https://example.com/"), "__unnamed__");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
        assert_eq!(file_name("http://h/dir/"), "dir");
    }

    #[test]
    fn checksums_must_be_well_formed() {
        assert!(parse_checksum(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(parse_checksum("md5:abc").is_err());
        assert!(parse_checksum("sha256:xyz").is_err());
    }
}
