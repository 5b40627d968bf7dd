//! GNU sparse files: the old `S` header map with its extension blocks, the
//! PAX formats 0.0 (repeated offset/numbytes records), 0.1 (`GNU.sparse.map`)
//! and 1.0 (a decimal map at the start of the data), and the checks every map
//! must pass before anyone copies bytes by it.

use crate::entry::SparseRun;
use crate::header::numeric;
use crate::pax::decimal;

/// Map slots in an old GNU header, and in each extension block.
pub(crate) const HEADER_SLOTS: usize = 4;
pub(crate) const EXTENSION_SLOTS: usize = 21;

/// Reads `n` 24-byte (offset, numbytes) slots; an empty slot ends the map.
pub(crate) fn gnu_slots(
    area: &[u8],
    n: usize,
    out: &mut Vec<SparseRun>,
) -> Result<(), &'static str> {
    for slot in area.chunks_exact(24).take(n) {
        let (off, len) = slot.split_at(12);
        if off[0] == 0 && len[0] == 0 {
            break;
        }
        out.push(SparseRun {
            offset: numeric(off).map_err(|_| "bad sparse offset")?,
            len: numeric(len).map_err(|_| "bad sparse length")?,
        });
    }
    Ok(())
}

/// Format 0.1: `GNU.sparse.map` = `offset,size,offset,size,...`.
pub(crate) fn map01(v: &[u8]) -> Result<Vec<SparseRun>, &'static str> {
    let nums = v
        .split(|&b| b == b',')
        .filter(|s| !s.is_empty())
        .map(|s| decimal(s).ok_or("bad GNU.sparse.map"))
        .collect::<Result<Vec<_>, _>>()?;
    if nums.len() % 2 != 0 {
        return Err("odd GNU.sparse.map");
    }
    Ok(nums
        .chunks_exact(2)
        .map(|c| SparseRun {
            offset: c[0],
            len: c[1],
        })
        .collect())
}

/// Format 0.0: paired `GNU.sparse.offset` and `GNU.sparse.numbytes` records.
pub(crate) fn map00(
    offsets: &[Vec<u8>],
    sizes: &[Vec<u8>],
) -> Result<Vec<SparseRun>, &'static str> {
    if offsets.len() != sizes.len() {
        return Err("unpaired GNU.sparse.offset/numbytes");
    }
    offsets
        .iter()
        .zip(sizes)
        .map(|(o, n)| {
            Ok(SparseRun {
                offset: decimal(o).ok_or("bad GNU.sparse.offset")?,
                len: decimal(n).ok_or("bad GNU.sparse.numbytes")?,
            })
        })
        .collect()
}

/// Format 1.0: the map is decimal lines at the start of the entry's data
/// (`count\n`, then `offset\nsize\n` pairs), padded to a whole block. Fed
/// block by block; says when the map is complete.
#[derive(Default)]
pub(crate) struct Map10 {
    /// Bytes of the line being read.
    line: Vec<u8>,
    count: Option<u64>,
    pending: Option<u64>,
    pub runs: Vec<SparseRun>,
}

impl Map10 {
    /// Consumes one block of the map; `Ok(true)` once the map is complete.
    /// `limit` bounds the count (the entry's stored size).
    pub fn feed(&mut self, block: &[u8], limit: u64) -> Result<bool, &'static str> {
        for &b in block {
            if b != b'\n' {
                if self.line.len() >= 20 {
                    return Err("bad sparse 1.0 map");
                }
                self.line.push(b);
                continue;
            }
            let n = decimal(&self.line).ok_or("bad sparse 1.0 map")?;
            self.line.clear();
            match (self.count, self.pending.take()) {
                (None, _) => {
                    // Each pair takes at least four bytes of the data.
                    if n > limit / 4 {
                        return Err("sparse 1.0 map count too large");
                    }
                    self.count = Some(n);
                }
                (Some(_), None) => self.pending = Some(n),
                (Some(_), Some(offset)) => self.runs.push(SparseRun { offset, len: n }),
            }
            if self.count == Some(self.runs.len() as u64) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Drops empty runs and checks the rest: increasing, non-overlapping, inside
/// the real size, and no more than the data stored.
pub(crate) fn check(
    mut runs: Vec<SparseRun>,
    real: u64,
    stored: u64,
) -> Result<Vec<SparseRun>, &'static str> {
    runs.retain(|r| r.len > 0);
    let mut end = 0u64;
    let mut total = 0u64;
    for r in &runs {
        let r_end = r.offset.checked_add(r.len).ok_or("sparse run overflows")?;
        if r.offset < end {
            return Err("sparse runs overlap or are out of order");
        }
        if r_end > real {
            return Err("sparse run past the file's real size");
        }
        end = r_end;
        total = total.checked_add(r.len).ok_or("sparse runs overflow")?;
    }
    if total > stored {
        return Err("sparse map exceeds the stored data");
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(offset: u64, len: u64) -> SparseRun {
        SparseRun { offset, len }
    }

    #[test]
    fn map10_reads_across_blocks() {
        let mut m = Map10::default();
        assert!(!m.feed(b"2\n0\n1", 100).unwrap());
        assert!(m.feed(b"0\n100\n5\n", 100).unwrap());
        assert_eq!(m.runs, vec![run(0, 10), run(100, 5)]);
        assert!(Map10::default().feed(b"99999\n", 100).is_err());
        assert!(Map10::default().feed(b"1\nx\n", 100).is_err());
    }

    #[test]
    fn maps_must_be_ordered_and_inside_the_file() {
        assert_eq!(
            check(vec![run(0, 5), run(10, 0), run(20, 5)], 25, 10).unwrap(),
            vec![run(0, 5), run(20, 5)]
        );
        assert!(check(vec![run(10, 5), run(0, 5)], 25, 10).is_err());
        assert!(check(vec![run(0, 5), run(4, 5)], 25, 10).is_err());
        assert!(check(vec![run(20, 10)], 25, 10).is_err());
        assert!(check(vec![run(0, 20)], 25, 10).is_err());
        assert!(check(vec![run(u64::MAX, 2)], u64::MAX, 10).is_err());
    }

    #[test]
    fn pax_maps() {
        assert_eq!(map01(b"0,5,10,5").unwrap(), vec![run(0, 5), run(10, 5)]);
        assert!(map01(b"0,5,10").is_err());
        assert_eq!(
            map00(&[b"3".to_vec()], &[b"4".to_vec()]).unwrap(),
            vec![run(3, 4)]
        );
        assert!(map00(&[b"3".to_vec()], &[]).is_err());
    }
}
