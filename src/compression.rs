//! The one place d2v recognises compressed input by its first bytes and
//! undoes it: layers arriving in the store, ADD's local archives and
//! `pack --from-tar` all go through [`Format::sniff`] and [`decoder`].

use std::io::{self, BufRead, BufReader, Read};

/// A compression format, as its magic bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Not compressed (or not a format d2v knows).
    Plain,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// bzip2 (`BZh`).
    Bzip2,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
}

impl Format {
    /// The format of a stream that starts with `head` (a few bytes suffice).
    pub fn sniff(head: &[u8]) -> Format {
        if head.starts_with(&[0x1f, 0x8b]) {
            Format::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Format::Zstd
        } else if head.starts_with(b"BZh") {
            Format::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Format::Xz
        } else {
            Format::Plain
        }
    }
}

/// `r`'s bytes with their compression undone, and the format found.
/// xz is decoded whole into an unnamed temporary file first (the decoder in
/// the tree has no streaming reader).
pub fn decoder<'a>(r: impl Read + 'a) -> io::Result<(Format, Box<dyn Read + 'a>)> {
    let mut r = BufReader::with_capacity(1 << 20, r);
    let format = Format::sniff(r.fill_buf()?);
    let out: Box<dyn Read + 'a> = match format {
        Format::Plain => Box::new(r),
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
        Format::Xz => {
            let mut out = tempfile::tempfile()?;
            lzma_rs::xz_decompress(&mut r, &mut out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            io::Seek::rewind(&mut out)?;
            Box::new(BufReader::new(out))
        }
    };
    Ok((format, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_magic() {
        assert_eq!(Format::sniff(&[0x1f, 0x8b, 8]), Format::Gzip);
        assert_eq!(Format::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Format::Zstd);
        assert_eq!(Format::sniff(b"BZh91AY"), Format::Bzip2);
        assert_eq!(Format::sniff(b"\xfd7zXZ\0\0"), Format::Xz);
        assert_eq!(Format::sniff(b"ustar"), Format::Plain);
        assert_eq!(Format::sniff(b""), Format::Plain);
    }

    #[test]
    fn gzip_is_undone() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").unwrap();
        let bytes = gz.finish().unwrap();
        let (format, mut r) = decoder(&bytes[..]).unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!((format, out.as_str()), (Format::Gzip, "hello"));
    }
}
