//! USER and `--chown` resolution in the image's own `/etc/passwd` and
//! `/etc/group` (never the host's NSS), with runc's and BuildKit's rules.

use std::path::Path;

use thiserror::Error;

use super::inroot::Root;

/// A user or group could not be resolved.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserError {
    /// A user name is not in the image's `/etc/passwd`.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// A group name is not in the image's `/etc/group`.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

/// The identity a process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (from `/etc/group` membership).
    pub additional_gids: Vec<u32>,
    /// Home directory (`/` when unknown), for `HOME`.
    pub home: String,
}

#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The user database of a rootfs.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    users: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
}

impl UserDb {
    /// Read `/etc/passwd` and `/etc/group` inside `root` (missing files are empty).
    pub fn load(root: &Root) -> Self {
        let text = |p: &str| {
            root.read(Path::new(p))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Self::parse(&text("/etc/passwd"), &text("/etc/group"))
    }

    /// Parse passwd and group file contents.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let users = passwd
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some(PasswdEntry {
                    name: f.first()?.to_string(),
                    uid: f.get(2)?.parse().ok()?,
                    gid: f.get(3)?.parse().ok()?,
                    home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some(GroupEntry {
                    name: f.first()?.to_string(),
                    gid: f.get(2)?.parse().ok()?,
                    members: f
                        .get(3)
                        .map(|m| {
                            m.split(',')
                                .filter(|s| !s.is_empty())
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .collect();
        Self { users, groups }
    }

    fn user(&self, spec: &str) -> Option<&PasswdEntry> {
        match spec.parse::<u32>() {
            Ok(uid) => self.users.iter().find(|u| u.uid == uid),
            Err(_) => self.users.iter().find(|u| u.name == spec),
        }
    }

    fn group_id(&self, spec: &str) -> Result<u32, UserError> {
        if let Some(g) = self.groups.iter().find(|g| g.name == spec) {
            return Ok(g.gid);
        }
        spec.parse::<u32>()
            .map_err(|_| UserError::NoGroup(spec.to_string()))
    }

    /// Resolve a Dockerfile `USER` value (`name`, `uid`, `name:group`,
    /// `uid:gid`, empty = root) the way runc does: a numeric uid need not
    /// exist; supplementary groups come from `/etc/group` membership only when
    /// no group is given.
    pub fn exec_user(&self, spec: &str) -> Result<ExecUser, UserError> {
        let (user_part, group_part) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let user_part = if user_part.is_empty() { "0" } else { user_part };
        let (uid, mut gid, home, name) = match self.user(user_part) {
            Some(u) => (u.uid, u.gid, u.home.clone(), Some(u.name.clone())),
            None => match user_part.parse::<u32>() {
                Ok(uid) => (uid, 0, "/".to_string(), None),
                Err(_) => return Err(UserError::NoUser(user_part.to_string())),
            },
        };
        let mut additional_gids = Vec::new();
        match group_part.filter(|g| !g.is_empty()) {
            Some(g) => gid = self.group_id(g)?,
            None => {
                if let Some(name) = &name {
                    for g in &self.groups {
                        if g.members.iter().any(|m| m == name) && !additional_gids.contains(&g.gid)
                        {
                            additional_gids.push(g.gid);
                        }
                    }
                }
            }
        }
        let home = if home.is_empty() {
            "/".to_string()
        } else {
            home
        };
        Ok(ExecUser {
            uid,
            gid,
            additional_gids,
            home,
        })
    }

    /// Resolve a `COPY --chown` value as BuildKit does: a user name takes its
    /// passwd primary group, a bare uid uses the same number as gid, and an
    /// explicit `:group` wins. Names must exist; numbers need not.
    pub fn chown(&self, spec: &str) -> Result<(u32, u32), UserError> {
        let (user_part, group_part) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, mut gid) = match user_part.parse::<u32>() {
            Ok(uid) => (uid, uid),
            Err(_) => {
                let u = self
                    .users
                    .iter()
                    .find(|u| u.name == user_part)
                    .ok_or_else(|| UserError::NoUser(user_part.to_string()))?;
                (u.uid, u.gid)
            }
        };
        if let Some(g) = group_part.filter(|g| !g.is_empty()) {
            gid = self.group_id(g)?;
        }
        Ok((uid, gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:app,other\napp:x:1000:\naudio:x:29:app\nstaff:x:50:\n";

    #[test]
    fn exec_user_rules() {
        let db = UserDb::parse(PASSWD, GROUP);
        let u = db.exec_user("app").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone(), u.home.as_str()),
            (1000, 1000, vec![10, 29], "/home/app")
        );
        let u = db.exec_user("1000").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 1000, 2));
        let u = db.exec_user("app:staff").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 50, 0));
        let u = db.exec_user("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        let u = db.exec_user("4242:777").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 777));
        assert_eq!(db.exec_user("").unwrap().uid, 0);
        assert_eq!(
            db.exec_user("ghost"),
            Err(UserError::NoUser("ghost".into()))
        );
        assert_eq!(
            db.exec_user("app:ghosts"),
            Err(UserError::NoGroup("ghosts".into()))
        );
    }

    #[test]
    fn chown_rules() {
        let db = UserDb::parse(PASSWD, GROUP);
        assert_eq!(db.chown("app").unwrap(), (1000, 1000));
        assert_eq!(db.chown("app:wheel").unwrap(), (1000, 10));
        assert_eq!(db.chown("123").unwrap(), (123, 123));
        assert_eq!(db.chown("123:456").unwrap(), (123, 456));
        assert_eq!(
            db.chown(":wheel").err(),
            Some(UserError::NoUser(String::new()))
        );
        assert!(db.chown("ghost").is_err());
    }
}
