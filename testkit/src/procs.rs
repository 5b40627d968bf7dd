//! The processes of one process tree, found through `/proc` (so a test looks
//! only at what it started, never at the rest of a shared machine).

use std::collections::BTreeMap;

/// One process, identified by its PID and its start time (so a reused PID is
/// not mistaken for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    /// The PID (in our PID namespace).
    pub pid: u32,
    /// Its parent's PID.
    pub ppid: u32,
    /// Start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start: u64,
    /// Its command line, arguments joined by spaces.
    pub cmdline: String,
}

impl Proc {
    /// Reads `/proc/PID`; `None` once the process is gone.
    pub fn read(pid: u32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold
        // spaces: state is field 3, ppid field 4, starttime field 22.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ppid = fields.get(1)?.parse().ok()?;
        let start = fields.get(19)?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ");
        Some(Proc {
            pid,
            ppid,
            start,
            cmdline,
        })
    }

    /// Whether this very process (same PID and start time) still exists and
    /// is not a zombie.
    pub fn alive(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let zombie = stat
            .rfind(')')
            .is_some_and(|i| stat[i + 2..].starts_with('Z'));
        !zombie && Proc::read(self.pid).is_some_and(|p| p.start == self.start)
    }
}

/// Every process now running below `root` (its children, their children, …),
/// `root` itself excluded.
pub fn descendants(root: u32) -> Vec<Proc> {
    let mut by_parent: BTreeMap<u32, Vec<Proc>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(p) = Proc::read(pid) {
            by_parent.entry(p.ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for child in by_parent.remove(&pid).unwrap_or_default() {
            todo.push(child.pid);
            out.push(child);
        }
    }
    out
}

/// Waits until a process with command line `cmdline` runs below `child`, and
/// returns `child`'s whole tree at that moment. Returns `child`'s exit status
/// if it ends first; panics after `timeout`.
pub fn wait_for_descendant(
    child: &mut std::process::Child,
    cmdline: &str,
    timeout: std::time::Duration,
) -> Result<Vec<Proc>, std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let tree = descendants(child.id());
        if tree.iter().any(|p| p.cmdline == cmdline) {
            return Ok(tree);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(status);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{cmdline}` never ran below PID {}: {tree:?}",
            child.id()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
