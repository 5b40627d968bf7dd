//! `COPY/ADD --chmod`: an octal mode (up to 07777) or a symbolic one as
//! `chmod(1)` and BuildKit (BSD `setmode`, umask 0) read it:
//! `u+x`, `go-w`, `a=rX`, `u=rwx,g=rx,o=`, `g=u`, `+s`, `o+t`.
//!
//! ```
//! use d2v::dockerfile::chmod::apply;
//! assert_eq!(apply("0640", 0o777, false), Ok(0o640));
//! assert_eq!(apply("u+x,go-w", 0o666, false), Ok(0o744));
//! assert_eq!(apply("a=rX", 0o700, true), Ok(0o555));
//! ```

const NOT_OCTAL: &str = "it should be octal string and between 0 and 07777";

/// Checks a `--chmod` value without applying it.
pub fn parse(spec: &str) -> Result<(), String> {
    apply(spec, 0o644, false).map(|_| ())
}

/// The mode `spec` gives an entry whose mode is `mode` (permission and
/// special bits); `is_dir` for `X`.
pub fn apply(spec: &str, mode: u32, is_dir: bool) -> Result<u32, String> {
    let bad = || format!("invalid chmod parameter: '{spec}'. {NOT_OCTAL}");
    if spec.starts_with(|c: char| c.is_ascii_digit()) {
        return match u32::from_str_radix(spec, 8) {
            Ok(v) if v <= 0o7777 => Ok(v),
            _ => Err(bad()),
        };
    }
    let syntax = || format!("invalid chmod parameter: '{spec}': invalid syntax");
    let original = mode & 0o7777;
    let mut mode = original;
    for clause in spec.split(',') {
        let bytes = clause.as_bytes();
        let mut i = 0;
        let mut who = 0u32;
        while let Some(&c) = bytes.get(i) {
            who |= match c {
                b'u' => 0o4700,
                b'g' => 0o2070,
                b'o' => 0o0007,
                b'a' => 0o6777,
                _ => break,
            };
            i += 1;
        }
        let any_who = who == 0;
        if any_who {
            who = 0o6777;
        }
        // One or more actions: op, then permission letters or one copy letter.
        let mut actions = 0;
        while let Some(&op) = bytes.get(i) {
            if !matches!(op, b'+' | b'-' | b'=') {
                return Err(syntax());
            }
            i += 1;
            let mut perm = 0u32;
            let mut x_if = false;
            // `s` and `t` apply only when u or g (or nobody) is named.
            let ug = any_who || who & 0o6770 != 0;
            let mut copied = false;
            while let Some(&c) = bytes.get(i) {
                match c {
                    b'r' => perm |= 0o444,
                    b'w' => perm |= 0o222,
                    b'x' => perm |= 0o111,
                    b'X' if op == b'-' => perm |= 0o111,
                    b'X' => x_if = true,
                    b's' if ug => perm |= 0o6000,
                    b't' if ug => perm |= 0o1000,
                    b's' | b't' => {}
                    b'u' | b'g' | b'o' if perm == 0 && !x_if && !copied => {
                        let shift = match c {
                            b'u' => 6,
                            b'g' => 3,
                            _ => 0,
                        };
                        let v = (mode >> shift) & 0o7;
                        perm |= v << 6 | v << 3 | v;
                        copied = true;
                    }
                    _ => break,
                }
                i += 1;
            }
            if x_if && (is_dir || original & 0o111 != 0) {
                perm |= 0o111;
            }
            let mut mask = who;
            if perm & 0o1000 != 0 {
                mask |= 0o1000;
            }
            match op {
                b'+' => mode |= perm & mask,
                b'-' => mode &= !(perm & mask),
                _ => mode = (mode & !mask) | (perm & mask),
            }
            actions += 1;
        }
        if actions == 0 {
            return Err(syntax());
        }
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::apply;

    #[test]
    fn octal_modes_up_to_07777() {
        assert_eq!(apply("755", 0, false), Ok(0o755));
        assert_eq!(apply("4755", 0, false), Ok(0o4755));
        assert!(apply("10000", 0, false).is_err());
        assert!(apply("0789", 0, false).is_err());
    }

    #[test]
    fn symbolic_modes_as_chmod_reads_them() {
        assert_eq!(apply("+x", 0o644, false), Ok(0o755));
        assert_eq!(apply("u=rwx,g=rx,o=", 0o777, false), Ok(0o750));
        assert_eq!(apply("g=u", 0o740, false), Ok(0o770));
        assert_eq!(apply("go-rwx", 0o777, false), Ok(0o700));
        assert_eq!(apply("a+X", 0o644, false), Ok(0o644));
        assert_eq!(apply("a+X", 0o744, false), Ok(0o755));
        assert_eq!(apply("a+X", 0o600, true), Ok(0o711));
        assert_eq!(apply("u+s", 0o755, false), Ok(0o4755));
        assert_eq!(apply("g+s", 0o755, false), Ok(0o2755));
        assert_eq!(apply("o+s", 0o755, false), Ok(0o755));
        assert_eq!(apply("+t", 0o755, true), Ok(0o1755));
        assert_eq!(apply("u+rw-x", 0o111, false), Ok(0o611));
        assert_eq!(apply("=r", 0o4777, false), Ok(0o444));
    }

    #[test]
    fn bad_symbolic_modes_are_errors() {
        for bad in ["", "u", "u+y", "z+x", "u+x,", "+x,,g+w", "rwx"] {
            assert!(apply(bad, 0o644, false).is_err(), "{bad:?}");
        }
    }
}
