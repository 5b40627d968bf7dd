//! `/etc/subuid` and `/etc/subgid`: the subordinate id ranges users may map
//! into their user namespaces (`NAME_OR_UID:START:COUNT` per line).

/// One subordinate range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    /// The first host id.
    pub start: u32,
    /// How many ids.
    pub count: u32,
}

/// The parsed subordinate id files.
#[derive(Debug, Clone, Default)]
pub struct SubIds {
    uids: Vec<(String, SubIdRange)>,
    gids: Vec<(String, SubIdRange)>,
}

impl SubIds {
    /// Reads `/etc/subuid` and `/etc/subgid` (missing files are empty).
    pub fn load() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Self::parse(&read("/etc/subuid"), &read("/etc/subgid"))
    }

    /// Parses the two files' contents.
    pub fn parse(subuid: &str, subgid: &str) -> Self {
        Self {
            uids: parse_file(subuid),
            gids: parse_file(subgid),
        }
    }

    /// The largest uid range of the user `name` (or numeric `uid`).
    pub fn uid_range(&self, name: &str, uid: u32) -> Option<SubIdRange> {
        best(&self.uids, name, uid)
    }

    /// The largest gid range of the user `name` (or numeric `uid`).
    pub fn gid_range(&self, name: &str, uid: u32) -> Option<SubIdRange> {
        best(&self.gids, name, uid)
    }
}

fn parse_file(text: &str) -> Vec<(String, SubIdRange)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut parts = line.split(':');
            let who = parts.next()?.to_string();
            let start = parts.next()?.trim().parse().ok()?;
            let count: u32 = parts.next()?.trim().parse().ok()?;
            (count > 0 && u32::checked_add(start, count).is_some())
                .then_some((who, SubIdRange { start, count }))
        })
        .collect()
}

fn best(entries: &[(String, SubIdRange)], name: &str, uid: u32) -> Option<SubIdRange> {
    let uid = uid.to_string();
    entries
        .iter()
        .filter(|(who, _)| who == name || *who == uid)
        .map(|(_, r)| *r)
        .max_by_key(|r| r.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_name_or_uid_and_prefers_the_largest_range() {
        let ids = SubIds::parse(
            "# comment\nalice:100000:65536\n1001:200000:1000\n1001:300000:70000\nbad:line\nzero:1:0\n",
            "alice:100000:65536\n",
        );
        assert_eq!(
            ids.uid_range("alice", 1000),
            Some(SubIdRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            ids.uid_range("bob", 1001),
            Some(SubIdRange {
                start: 300000,
                count: 70000
            })
        );
        assert_eq!(ids.gid_range("bob", 1001), None);
        assert_eq!(ids.uid_range("zero", 5), None);
        assert_eq!(ids.uid_range("bad", 6), None);
    }

    #[test]
    fn overflowing_ranges_are_ignored() {
        let ids = SubIds::parse("x:4294967295:2\n", "");
        assert_eq!(ids.uid_range("x", 1), None);
    }
}
