//! USER resolution against the image's own /etc/passwd and /etc/group, the way
//! runc does it for `docker run` (no NSS: a static glibc must not call it).
//! One resolver for the guest's init, the host's pack-time resolution and the
//! build's USER steps.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// A user or group the files do not list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    /// A user name is not in `/etc/passwd`.
    NoUser(String),
    /// A group name is not in `/etc/group`.
    NoGroup(String),
}

impl core::fmt::Display for UserError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UserError::NoUser(u) => {
                write!(
                    f,
                    "unable to find user {u}: no matching entries in passwd file"
                )
            }
            UserError::NoGroup(g) => {
                write!(
                    f,
                    "unable to find group {g}: no matching entries in group file"
                )
            }
        }
    }
}

/// Who a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (setgroups), without the primary gid unless listed.
    pub groups: Vec<u32>,
    /// Home directory from passwd, `/` when unknown (Docker's default).
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn lines(file: &[u8]) -> impl Iterator<Item = &str> {
    file.split(|&b| b == b'\n')
        .filter_map(|l| core::str::from_utf8(l).ok())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn passwd_entries(file: &[u8]) -> impl Iterator<Item = PasswdEntry<'_>> {
    lines(file).filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(file: &[u8]) -> impl Iterator<Item = GroupEntry<'_>> {
    lines(file).filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

/// Resolves a Docker USER value (`name`, `uid`, `name:group`, `uid:gid`, ...).
/// A numeric user or group missing from the files is used as is; a missing
/// name is an error. Without an explicit group, the user's supplementary groups
/// are the /etc/group entries that list the user or have its primary gid, in
/// file order (what runc gives a container).
pub fn resolve(
    spec: &str,
    passwd: Option<&[u8]>,
    group: Option<&[u8]>,
) -> Result<ExecUser, UserError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
        home: "/".to_string(),
    };
    let user_arg = if user_arg.is_empty() {
        "root"
    } else {
        user_arg
    };
    let numeric_uid = user_arg.parse::<u32>().ok();
    let found = passwd
        .and_then(|p| passwd_entries(p).find(|e| e.name == user_arg || Some(e.uid) == numeric_uid));
    let mut name = None;
    match (found, numeric_uid) {
        (Some(e), _) => {
            out.uid = e.uid;
            out.gid = e.gid;
            if !e.home.is_empty() {
                out.home = e.home.to_string();
            }
            name = Some(e.name.to_string());
        }
        (None, Some(uid)) => out.uid = uid,
        (None, None) if user_arg == "root" => {}
        (None, None) => return Err(UserError::NoUser(user_arg.to_string())),
    }
    match group_arg.filter(|g| !g.is_empty()) {
        Some(g) => {
            let numeric_gid = g.parse::<u32>().ok();
            let found = group
                .and_then(|f| group_entries(f).find(|e| e.name == g || Some(e.gid) == numeric_gid));
            out.gid = match (found, numeric_gid) {
                (Some(e), _) => e.gid,
                (None, Some(gid)) => gid,
                (None, None) => return Err(UserError::NoGroup(g.to_string())),
            };
        }
        None => {
            // runc's rule: the groups that list the user, and the user's
            // primary group itself when /etc/group has it, in file order.
            if let (Some(name), Some(f)) = (name, group) {
                for e in group_entries(f) {
                    let member = e.gid == out.gid || e.members.contains(&name.as_str());
                    if member && !out.groups.contains(&e.gid) {
                        out.groups.push(e.gid);
                    }
                }
            }
        }
    }
    Ok(out)
}

impl core::error::Error for UserError {}

/// Resolves a `COPY --chown`/`ADD --chown` value the way BuildKit does (not
/// runc's USER rule): a user name takes its passwd primary group, a bare uid
/// uses the same number as gid, and an explicit `:group` wins. Names must
/// exist; numbers need not.
pub fn chown(
    spec: &str,
    passwd: Option<&[u8]>,
    group: Option<&[u8]>,
) -> Result<(u32, u32), UserError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid) = match user_arg.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let e = passwd
                .and_then(|p| passwd_entries(p).find(|e| e.name == user_arg))
                .ok_or_else(|| UserError::NoUser(user_arg.to_string()))?;
            (e.uid, e.gid)
        }
    };
    if let Some(g) = group_arg.filter(|g| !g.is_empty()) {
        // A name first, then a number (which need not be listed).
        gid = match group.and_then(|f| group_entries(f).find(|e| e.name == g)) {
            Some(e) => e.gid,
            None => g
                .parse::<u32>()
                .map_err(|_| UserError::NoGroup(g.to_string()))?,
        };
    }
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001:App:/home/app:/bin/sh\nbroken:line\nnohome:x:1002:1002::\n";
    const GROUP: &[u8] =
        b"root:x:0:\nwheel:x:10:root,app\napp:x:1001:\naudio:x:29:other, app\nstaff:x:50:\n";

    fn r(spec: &str) -> Result<ExecUser, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn resolves_a_name_with_supplementary_groups() {
        let u = r("app").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1001, "/home/app"));
        assert_eq!(
            u.groups,
            vec![10, 1001, 29],
            "wheel, its own primary group, audio"
        );
    }

    #[test]
    fn resolves_ids_and_explicit_groups() {
        assert_eq!(r("1000").unwrap().gid, 1001);
        let u = r("app:staff").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert!(u.groups.is_empty());
        let u = r("4242:4343").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 4343, "/"));
        let u = r("").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        assert_eq!(r("nohome").unwrap().home, "/");
    }

    #[test]
    fn chown_follows_buildkit() {
        let c = |spec| chown(spec, Some(PASSWD), Some(GROUP));
        assert_eq!(c("app").unwrap(), (1000, 1001), "the passwd primary group");
        assert_eq!(c("app:wheel").unwrap(), (1000, 10));
        assert_eq!(c("123").unwrap(), (123, 123), "a bare uid is its own gid");
        assert_eq!(c("123:456").unwrap(), (123, 456));
        assert_eq!(c(":wheel").unwrap_err(), UserError::NoUser(String::new()));
        assert_eq!(c("ghost").unwrap_err(), UserError::NoUser("ghost".into()));
        assert_eq!(
            c("app:ghosts").unwrap_err(),
            UserError::NoGroup("ghosts".into())
        );
        assert_eq!(chown("7:8", None, None).unwrap(), (7, 8));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(r("ghost").unwrap_err(), UserError::NoUser("ghost".into()));
        assert_eq!(
            r("app:ghosts").unwrap_err().to_string(),
            "unable to find group ghosts: no matching entries in group file"
        );
        // No passwd at all: root and numeric ids still work.
        assert_eq!(resolve("root", None, None).unwrap().uid, 0);
        assert_eq!(resolve("7:8", None, None).unwrap().gid, 8);
    }
}
