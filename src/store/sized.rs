//! Holding an untrusted stream to the size its descriptor declares.

use std::io::{self, Read};

/// A stream that was longer or shorter than its descriptor declared.
#[derive(Debug, thiserror::Error)]
pub enum SizeError {
    /// More bytes arrived than declared (reading stopped one byte past).
    #[error("more than the declared {declared} bytes arrived")]
    TooLong {
        /// The declared size.
        declared: u64,
    },
    /// The stream ended early.
    #[error("{got} bytes arrived, {declared} were declared")]
    TooShort {
        /// The declared size.
        declared: u64,
        /// What arrived.
        got: u64,
    },
}

impl SizeError {
    /// The [`SizeError`] inside an I/O error, if that is what it is.
    pub fn find(e: &io::Error) -> Option<&SizeError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<SizeError>())
    }
}

/// Reads at most `declared + 1` bytes from its source, failing with a
/// [`SizeError`] (inside an `io::Error` of kind `InvalidData`) as soon as
/// the stream is longer than declared, or when it ends short of it.
#[derive(Debug)]
pub struct SizedReader<R> {
    inner: R,
    declared: u64,
    seen: u64,
}

impl<R: Read> SizedReader<R> {
    /// Wraps `inner`, which must yield exactly `declared` bytes.
    pub fn new(inner: R, declared: u64) -> SizedReader<R> {
        SizedReader {
            inner,
            declared,
            seen: 0,
        }
    }
}

impl<R: Read> Read for SizedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let left = self.declared.saturating_add(1).saturating_sub(self.seen);
        let max = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        self.seen += n as u64;
        if self.seen > self.declared {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                SizeError::TooLong {
                    declared: self.declared,
                },
            ));
        }
        if n == 0 && self.seen < self.declared {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                SizeError::TooShort {
                    declared: self.declared,
                    got: self.seen,
                },
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_one_byte_past_the_declared_size() {
        let mut r = SizedReader::new(io::repeat(0), 1024);
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert!(matches!(
            SizeError::find(&err),
            Some(SizeError::TooLong { declared: 1024 })
        ));
        assert_eq!(r.seen, 1025, "read exactly one byte too many");

        let mut short = SizedReader::new(&[1u8; 10][..], 10 << 30);
        let err = io::copy(&mut short, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("10 bytes arrived"), "{err}");

        let mut exact = SizedReader::new(&[1u8; 10][..], 10);
        assert_eq!(io::copy(&mut exact, &mut io::sink()).unwrap(), 10);
    }
}
