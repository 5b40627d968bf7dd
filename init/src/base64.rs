//! Base64 decoding for the `d2v.run=` kernel command-line override. Accepts the
//! URL-safe alphabet d2v writes (`-`, `_`) and the standard one (`+`, `/`),
//! with or without `=` padding.

use alloc::vec::Vec;

fn sextet(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' | b'+' => 62,
        b'_' | b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decodes `input`; `None` on a character outside the alphabets or a dangling
/// single character.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let data: &[u8] = match input.iter().position(|&c| c == b'=') {
        Some(p) if input[p..].iter().all(|&c| c == b'=') => &input[..p],
        Some(_) => return None,
        None => input,
    };
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= sextet(c)? << (18 - 6 * i);
        }
        out.push((acc >> 16) as u8);
        if chunk.len() > 2 {
            out.push((acc >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_padded_unpadded_and_url_safe() {
        assert_eq!(decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode(b"aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode(b"aGk").unwrap(), b"hi");
        assert_eq!(decode(b"").unwrap(), b"");
        assert_eq!(decode(b"-_8").unwrap(), decode(b"+/8=").unwrap());
        assert_eq!(decode(b"-_8").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(b"a").is_none());
        assert!(decode(b"ab!c").is_none());
        assert!(decode(b"ab=c").is_none());
    }
}
