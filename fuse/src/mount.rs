//! Mount handles: mounting a [`MergedTree`] with FUSE and taking it down.

use rustix::mount::UnmountFlags;
use rustix::process::WaitOptions;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::fs::D2vFs;
use crate::tree::MergedTree;

/// How to mount a merged tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Worker threads reading `/dev/fuse` (each with its own cloned fd).
    pub threads: usize,
    /// Have `fusermount3` unmount the view if this process dies (even by SIGKILL).
    pub auto_unmount: bool,
    /// Source name shown in `/proc/self/mountinfo`.
    pub fsname: String,
    /// Filesystem subtype: the mount shows up as `fuse.<subtype>`.
    pub subtype: String,
    /// Let users other than the mounter access the view (needed for chroots
    /// running as another uid). Without it only the mounter (and root) may;
    /// d2v-fuse then enforces that itself, so `auto_unmount` still works.
    pub allow_other: bool,
    /// Added to every uid and gid the view shows (and to the root owner of
    /// file capabilities): a RUN step's user namespace maps container id `c`
    /// to `c + id_shift`, so through a shifted view it sees the image's ids.
    pub id_shift: u32,
    /// Honour setuid/setgid bits and device nodes (`suid,dev`). Off for views
    /// other users might reach; a build's private view needs them so RUN steps
    /// behave as on any root filesystem.
    pub suid_dev: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            threads: 4,
            auto_unmount: true,
            fsname: "d2v".to_string(),
            subtype: "d2v".to_string(),
            allow_other: false,
            id_shift: 0,
            suid_dev: false,
        }
    }
}

/// Why mounting or unmounting failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mountpoint does not exist.
    #[error("mountpoint {0} does not exist")]
    NotFound(PathBuf),
    /// The mountpoint is not a directory.
    #[error("mountpoint {0} is not a directory")]
    NotADirectory(PathBuf),
    /// The mountpoint has entries in it.
    #[error("mountpoint {0} is not empty")]
    NotEmpty(PathBuf),
    /// Something is already mounted there.
    #[error("mountpoint {0} is already a mount point")]
    AlreadyMounted(PathBuf),
    /// `unmount` was asked about a directory that is not a FUSE mount.
    #[error("{0} is not a FUSE mount")]
    NotMounted(PathBuf),
    /// Options that cannot work together.
    #[error("invalid mount options: {0}")]
    InvalidOptions(&'static str),
    /// The kernel or `fusermount3` refused, or the session failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The mountpoint.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// A live FUSE mount served by background threads. Dropping it unmounts.
#[derive(Debug)]
pub struct Mount {
    session: Option<BackgroundSession>,
    dir: PathBuf,
}

/// Mounts `tree` on `dir` and serves it on background threads; returns once
/// the mount is live (the FUSE handshake has completed).
pub fn mount(tree: Arc<MergedTree>, dir: &Path, opts: &MountOptions) -> Result<Mount, MountError> {
    if opts.threads == 0 {
        return Err(MountError::InvalidOptions("threads must be at least 1"));
    }
    let dir = check_mountpoint(dir)?;
    reap_fusermount();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype(opts.subtype.clone()),
        MountOption::Exec,
        MountOption::NoAtime,
    ];
    // A view others may use has the kernel check their permissions; a private
    // view lets its owner read everything, as the owner can read the blobs.
    if opts.allow_other {
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    if opts.suid_dev {
        config.mount_options.push(MountOption::Suid);
        config.mount_options.push(MountOption::Dev);
    } else {
        config.mount_options.push(MountOption::NoSuid);
        config.mount_options.push(MountOption::NoDev);
    }
    if opts.auto_unmount {
        config.mount_options.push(MountOption::AutoUnmount);
    }
    // Without allow_other, the kernel would refuse auto_unmount's watcher;
    // allow_root lets it in and d2v-fuse turns everyone else away.
    config.acl = match (opts.allow_other, opts.auto_unmount) {
        (true, _) => SessionACL::All,
        (false, true) => SessionACL::RootAndOwner,
        (false, false) => SessionACL::Owner,
    };
    config.n_threads = Some(opts.threads);
    config.clone_fd = opts.threads > 1;
    let session =
        fuser::spawn_mount(D2vFs::new(tree, opts.id_shift), &dir, &config).map_err(|source| {
            MountError::Io {
                op: "mount",
                path: dir.clone(),
                source,
            }
        })?;
    Ok(Mount {
        session: Some(session),
        dir,
    })
}

impl Mount {
    /// The mountpoint (canonical path).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmounts and waits for the server threads to finish.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.shutdown()
    }

    /// Blocks until the view is unmounted from outside (`umount`, `d2v umount`).
    pub fn wait(mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.join();
        }
        reap_fusermount();
    }

    fn shutdown(&mut self) -> Result<(), MountError> {
        let Some(s) = self.session.take() else {
            return Ok(());
        };
        // Unmount ourselves first: fusermount3's auto_unmount watcher only
        // unmounts once the server is dead, so merely closing its socket (what
        // fuser does) would leave the mount up and `join` waiting forever.
        let first = match unmount(&self.dir) {
            Ok(()) | Err(MountError::NotMounted(_)) => Ok(()),
            Err(e) => Err(e),
        };
        s.umount_and_join().map_err(|source| MountError::Io {
            op: "unmount",
            path: self.dir.clone(),
            source,
        })?;
        reap_fusermount();
        first
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Unmounts a d2v FUSE mount at `dir`; if the server is gone or the mount is
/// busy, detaches it lazily instead.
pub fn unmount(dir: &Path) -> Result<(), MountError> {
    let canon = dir
        .canonicalize()
        .map_err(|_| MountError::NotFound(dir.to_path_buf()))?;
    match mount_fstype(&canon) {
        Some(t) if t == b"fuse" || t.starts_with(b"fuse.") => {}
        _ => return Err(MountError::NotMounted(canon)),
    }
    let c = std::ffi::CString::new(canon.as_os_str().as_bytes())
        .map_err(|_| MountError::NotFound(canon.clone()))?;
    if rustix::mount::unmount(c.as_c_str(), UnmountFlags::empty()).is_ok() {
        return Ok(());
    }
    let err = match rustix::mount::unmount(c.as_c_str(), UnmountFlags::DETACH) {
        Ok(()) => return Ok(()),
        Err(e) => io::Error::from(e),
    };
    if err.raw_os_error() == Some(libc::EPERM) {
        // Non-root: the setuid helper may unmount mounts this user owns.
        let st = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&canon)
            .status();
        if matches!(st, Ok(s) if s.success()) {
            return Ok(());
        }
    }
    Err(MountError::Io {
        op: "unmount",
        path: canon,
        source: err,
    })
}

/// fuser never waits for the `fusermount3` it leaves watching an
/// auto-unmount mount; once that watcher exits it would stay a zombie for the
/// life of this process (one per RUN step in a long build). Reap exited
/// `fusermount3` children only, leaving every other child alone. Called on
/// every mount and unmount, so at most a few zombies exist at any time.
fn reap_fusermount() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "<pid> (<comm>) <state> ..."
            let Some((comm, rest)) = stat.split_once(") ") else {
                continue;
            };
            if comm.ends_with("(fusermount3") && rest.starts_with('Z') {
                // A specific exited child we spawned (via fuser); WNOHANG
                // never blocks.
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
                }
            }
        }
    }
}

fn check_mountpoint(dir: &Path) -> Result<PathBuf, MountError> {
    let meta = std::fs::metadata(dir).map_err(|_| MountError::NotFound(dir.to_path_buf()))?;
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(dir.to_path_buf()));
    }
    let canon = dir.canonicalize().map_err(|source| MountError::Io {
        op: "resolve",
        path: dir.to_path_buf(),
        source,
    })?;
    if is_mountpoint(&canon) {
        return Err(MountError::AlreadyMounted(canon));
    }
    let mut rd = std::fs::read_dir(&canon).map_err(|source| MountError::Io {
        op: "read",
        path: canon.clone(),
        source,
    })?;
    if rd.next().is_some() {
        return Err(MountError::NotEmpty(canon));
    }
    Ok(canon)
}

/// True when `dir` (canonical) is listed as a mount point in this process's
/// mount namespace.
pub fn is_mountpoint(dir: &Path) -> bool {
    mount_fstype(dir).is_some()
}

/// The filesystem type of the topmost mount exactly at `dir`, from mountinfo.
fn mount_fstype(dir: &Path) -> Option<Vec<u8>> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let want = dir.as_os_str().as_bytes();
    let mut found = None;
    for line in info.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        if fields.len() < 10 {
            continue;
        }
        if unescape(fields[4]) != want {
            continue;
        }
        let sep = fields.iter().position(|f| *f == b"-")?;
        found = fields.get(sep + 1).map(|t| t.to_vec());
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(f: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(f.len());
    let mut i = 0;
    while i < f.len() {
        if f[i] == b'\\' && i + 3 < f.len() && f[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (f[i + 1] - b'0') * 64 + (f[i + 2] - b'0') * 8 + (f[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(f[i]);
            i += 1;
        }
    }
    out
}
