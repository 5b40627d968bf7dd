//! Sizes as people write them on a command line (`4096`, `512K`, `256M`,
//! `1.5G`, `1GiB`: binary units, an optional trailing `B` or `iB`) and as
//! d2v prints them. One parser for `pack --free/--size`, `prune
//! --cache-budget`, `run --disk-size` and `run --mem`.

/// A size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a size: {0:?} (try 256M or 1G)")]
pub struct SizeError(String);

/// Parses a size in bytes; a bare number is `unit` bytes (1 for byte sizes,
/// 1 MiB for `--mem`, as `docker run -m` without a suffix is not).
fn parse_in(s: &str, unit: u64) -> Result<u64, SizeError> {
    let bad = || SizeError(s.to_string());
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some(c @ ('k' | 'K' | 'm' | 'M' | 'g' | 'G' | 't' | 'T')) => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                _ => 40,
            };
            (&t[..t.len() - 1], 1u64 << shift)
        }
        _ => (t, unit),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(bad);
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parses a size in bytes (`4096`, `512K`, `256M`, `1.5G`, `1GiB`).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    parse_in(s, 1)
}

/// Parses a memory size into MiB: a bare number is MiB (`512`), a suffixed
/// one any size (`256M`, `1G`); it must be a whole, non-zero number of MiB.
pub fn parse_mem_mib(s: &str) -> Result<u32, SizeError> {
    let bytes = parse_in(s, 1 << 20)?;
    if bytes == 0 || bytes % (1 << 20) != 0 {
        return Err(SizeError(s.to_string()));
    }
    u32::try_from(bytes >> 20).map_err(|_| SizeError(s.to_string()))
}

/// `123 B`, `4.0 KiB`, `116.4 MiB`: how sizes are printed.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64KB"), Ok(64 << 10));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err(), "overflow");
    }

    #[test]
    fn memory_is_whole_mib_and_bare_numbers_are_mib() {
        assert_eq!(parse_mem_mib("256M"), Ok(256));
        assert_eq!(parse_mem_mib("1G"), Ok(1024));
        assert_eq!(parse_mem_mib("64"), Ok(64));
        assert!(parse_mem_mib("x").is_err());
        assert!(parse_mem_mib("0").is_err());
        assert!(parse_mem_mib("1500K").is_err());
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human_size(123), "123 B");
        assert_eq!(human_size(4096), "4.0 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
