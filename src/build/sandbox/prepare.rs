//! The parent's half of a step's rootfs, built in a helper thread's private
//! mount namespace before the child is cloned (the child's mount namespace is
//! a copy of it): the overlay, a Docker-like `/dev`, the generated
//! `/etc/{resolv.conf,hosts,hostname}`, and the step's `RUN --mount`s, each
//! mounted onto a mount point resolved inside the root.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::mounts::{self, Attrs};
use super::stubs::{MountPoints, PointKind};
use super::{confine, io_err, net, NetworkMode, RunSpec, SandboxError, SandboxMount};
use crate::build::inroot::Root;
use crate::build::overlay::{enter_private_mount_ns, Overlay};

/// A prepared rootfs: mounted in the calling thread's mount namespace.
pub(super) struct Prepared {
    /// Host path of the rootfs (the overlay's merged dir).
    pub merged: PathBuf,
    /// Host path where the child mounts `/proc`.
    pub proc_at: PathBuf,
    /// Host path where the child mounts `/sys`.
    pub sys_at: PathBuf,
    /// Mount points created in the root, removed from the upper dir later.
    pub points: MountPoints,
    /// Mounts outside the root (helper overlays, the secrets tmpfs), detached
    /// at the end.
    extra: Vec<PathBuf>,
}

impl Prepared {
    /// Prepares the rootfs of `spec` on `overlay`. Must run in a thread that
    /// ends when the step is over: it unshares the thread's mount namespace.
    pub(super) fn new(spec: &RunSpec, overlay: &Overlay) -> Result<Prepared, SandboxError> {
        enter_private_mount_ns().map_err(io_err("unsharing the mount namespace"))?;
        overlay.mount()?;
        let base = spec.ids.base;
        let mut prepared = Prepared {
            merged: overlay.merged.clone(),
            proc_at: PathBuf::new(),
            sys_at: PathBuf::new(),
            points: MountPoints::new(base, base),
            extra: Vec::new(),
        };
        let root = rustix::fs::open(
            &overlay.merged,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("opening the rootfs")(e.into()))?;
        let (_, proc_real) = prepared.point(&root, "/proc", PointKind::Dir)?;
        let (_, sys_real) = prepared.point(&root, "/sys", PointKind::Dir)?;
        prepared.proc_at = overlay.merged.join(proc_real);
        prepared.sys_at = overlay.merged.join(sys_real);
        prepared.dev(&root, spec)?;
        prepared.generated_files(spec, &root, base)?;
        for (i, m) in spec.mounts.iter().enumerate() {
            prepared.step_mount(spec, &root, i, m)?;
        }
        Ok(prepared)
    }

    /// Detaches everything this thread mounted.
    pub(super) fn unmount(&self) {
        let _ = mounts::detach(&self.merged);
        for p in &self.extra {
            let _ = mounts::detach(p);
        }
    }

    fn point(
        &mut self,
        root: &OwnedFd,
        target: &str,
        kind: PointKind,
    ) -> Result<(OwnedFd, PathBuf), SandboxError> {
        self.points
            .resolve(root.as_fd(), Path::new(target), kind)
            .map_err(io_err(format!("creating the mount point {target}")))
    }

    /// A `/dev` as Docker's: a small tmpfs with the standard device nodes
    /// (bound from the host: a user namespace cannot create them), `pts`,
    /// `shm`, and the usual symlinks.
    fn dev(&mut self, root: &OwnedFd, spec: &RunSpec) -> Result<(), SandboxError> {
        let base = spec.ids.base;
        let (at, real) = self.point(root, "/dev", PointKind::Dir)?;
        let owner = [("uid", base.to_string()), ("gid", base.to_string())];
        let mut opts = vec![("mode", "755".to_string()), ("size", "65536k".to_string())];
        opts.extend(owner.iter().cloned());
        mounts::new_fs("tmpfs", &opts, at.as_fd(), Attrs::PLAIN)
            .map_err(io_err("mounting /dev"))?;
        let dev = mounts::reopen(root.as_fd(), &real).map_err(io_err("opening /dev"))?;
        let err = |what: &str| io_err(format!("setting up /dev: {what}"));
        for node in confine::DEVICES {
            let name = node.trim_start_matches("/dev/");
            let file = rustix::fs::openat(
                &dev,
                name,
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            )
            .map_err(|e| err(name)(e.into()))?;
            drop(file);
            let target = open_path(&dev, name).map_err(err(name))?;
            let host = rustix::fs::open(*node, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| err(node)(e.into()))?;
            let attrs = Attrs {
                readonly: false,
                nosuid_nodev: false,
                noexec: true,
            };
            mounts::bind(host.as_fd(), target.as_fd(), attrs).map_err(err(name))?;
        }
        for (dir, mode) in [("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o1777)] {
            rustix::fs::mkdirat(&dev, dir, Mode::from_raw_mode(mode))
                .map_err(|e| err(dir)(e.into()))?;
        }
        let pts = open_path(&dev, "pts").map_err(err("pts"))?;
        let mut pts_opts = vec![
            ("newinstance", String::new()),
            ("ptmxmode", "0666".to_string()),
            ("mode", "0620".to_string()),
        ];
        // Group `tty`, where the step's ids reach that far.
        if let Some(tty) = spec.ids.to_outer(5) {
            pts_opts.push(("gid", tty.to_string()));
        }
        let noexec = Attrs {
            noexec: true,
            ..Attrs::PLAIN
        };
        mounts::new_fs("devpts", &pts_opts, pts.as_fd(), noexec).map_err(err("devpts"))?;
        let shm = open_path(&dev, "shm").map_err(err("shm"))?;
        let mut shm_opts = vec![("mode", "1777".to_string()), ("size", "65536k".to_string())];
        shm_opts.extend(owner.iter().cloned());
        mounts::new_fs("tmpfs", &shm_opts, shm.as_fd(), Attrs::PLAIN).map_err(err("shm"))?;
        for (target, link) in [
            ("pts/ptmx", "ptmx"),
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
            ("/proc/kcore", "core"),
        ] {
            rustix::fs::symlinkat(target, &dev, link).map_err(|e| err(link)(e.into()))?;
        }
        for name in [
            "pts", "shm", "mqueue", "ptmx", "fd", "stdin", "stdout", "stderr", "core",
        ] {
            rustix::fs::chownat(
                &dev,
                name,
                Some(rustix::fs::Uid::from_raw(base)),
                Some(rustix::fs::Gid::from_raw(base)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| err(name)(e.into()))?;
        }
        Ok(())
    }

    /// `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`, written to the
    /// scratch dir (owned by the step's root) and bound over the image's
    /// files without opening those (so overlay copies nothing up).
    fn generated_files(
        &mut self,
        spec: &RunSpec,
        root: &OwnedFd,
        base: u32,
    ) -> Result<(), SandboxError> {
        let dir = spec.scratch.join("etc");
        std::fs::create_dir(&dir).map_err(io_err("creating scratch etc"))?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = match spec.network {
            NetworkMode::Private => net::step_resolv_conf(&host_resolv),
            NetworkMode::None | NetworkMode::Host => host_resolv,
        };
        let hosts = format!(
            "127.0.0.1\tlocalhost {h}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            h = spec.hostname
        );
        let files = [
            ("resolv.conf", resolv),
            ("hosts", hosts),
            ("hostname", format!("{}\n", spec.hostname)),
        ];
        for (name, content) in files {
            let file = dir.join(name);
            std::fs::write(&file, content)
                .map_err(io_err(format!("writing {}", file.display())))?;
            std::os::unix::fs::chown(&file, Some(base), Some(base))
                .map_err(io_err(format!("chown {}", file.display())))?;
            let src = open_path_abs(&file)?;
            let (at, _) = self.point(root, &format!("/etc/{name}"), PointKind::File)?;
            mounts::bind(src.as_fd(), at.as_fd(), Attrs::PLAIN)
                .map_err(io_err(format!("mounting /etc/{name}")))?;
        }
        Ok(())
    }

    fn step_mount(
        &mut self,
        spec: &RunSpec,
        root: &OwnedFd,
        i: usize,
        m: &SandboxMount,
    ) -> Result<(), SandboxError> {
        let target = super::clean_abs(m.target())?;
        let base = spec.ids.base;
        let what = |w: &str| io_err(format!("RUN --mount at {target}: {w}"));
        match m {
            SandboxMount::Cache {
                host_dir,
                readonly,
                owner,
                mode,
                ..
            } => {
                if !host_dir.exists() {
                    std::fs::create_dir_all(host_dir).map_err(what("creating the cache"))?;
                    std::os::unix::fs::chown(host_dir, Some(base + owner.0), Some(base + owner.1))
                        .map_err(what("chown of the cache"))?;
                    std::fs::set_permissions(host_dir, std::fs::Permissions::from_mode(*mode))
                        .map_err(what("chmod of the cache"))?;
                }
                let src = open_path_abs(host_dir)?;
                let (at, _) = self.point(root, &target, PointKind::Dir)?;
                let attrs = Attrs {
                    readonly: *readonly,
                    ..Attrs::PLAIN
                };
                mounts::bind(src.as_fd(), at.as_fd(), attrs).map_err(what("bind"))?;
            }
            SandboxMount::Bind {
                root: src_root,
                source,
                readwrite,
                ..
            } => self.bind_mount(spec, root, i, &target, src_root, source, *readwrite)?,
            SandboxMount::Tmpfs { size, .. } => {
                let mut opts = vec![
                    ("mode", "1777".to_string()),
                    ("uid", base.to_string()),
                    ("gid", base.to_string()),
                ];
                if let Some(s) = size {
                    opts.push(("size", s.to_string()));
                }
                let (at, _) = self.point(root, &target, PointKind::Dir)?;
                mounts::new_fs("tmpfs", &opts, at.as_fd(), Attrs::PLAIN).map_err(what("tmpfs"))?;
            }
            SandboxMount::Secret {
                source,
                owner,
                mode,
                ..
            } => {
                let dir = self.secrets_dir(spec, base)?;
                let file = dir.join(format!("secret-{i}"));
                std::fs::copy(source, &file)
                    .map_err(what(&format!("reading {}", source.display())))?;
                std::os::unix::fs::chown(&file, Some(base + owner.0), Some(base + owner.1))
                    .map_err(what("chown"))?;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                    .map_err(what("chmod"))?;
                let src = open_path_abs(&file)?;
                let (at, _) = self.point(root, &target, PointKind::File)?;
                let attrs = Attrs {
                    readonly: true,
                    ..Attrs::PLAIN
                };
                mounts::bind(src.as_fd(), at.as_fd(), attrs).map_err(what("bind"))?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn bind_mount(
        &mut self,
        spec: &RunSpec,
        root: &OwnedFd,
        i: usize,
        target: &str,
        src_root: &Path,
        source: &Path,
        readwrite: bool,
    ) -> Result<(), SandboxError> {
        let what = |w: &str| io_err(format!("RUN --mount=type=bind at {target}: {w}"));
        let r = Root::open(src_root).map_err(what(&format!("opening {}", src_root.display())))?;
        let src = r.open_at(source, libc::O_PATH, 0).map_err(what(&format!(
            "resolving {} in {}",
            source.display(),
            src_root.display()
        )))?;
        let st = crate::build::inroot::fstat(&src).map_err(what("stat"))?;
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let kind = if is_dir {
            PointKind::Dir
        } else {
            PointKind::File
        };
        let ro = Attrs {
            readonly: true,
            ..Attrs::PLAIN
        };
        let (at, _) = self.point(root, target, kind)?;
        if !readwrite {
            return mounts::bind(src.as_fd(), at.as_fd(), ro).map_err(what("bind"));
        }
        // Writes are allowed and thrown away: a throwaway overlay for a
        // directory, a scratch copy for a file.
        let scratch = spec.scratch.join(format!("bind-{i}"));
        std::fs::create_dir(&scratch).map_err(what("creating scratch"))?;
        let from: OwnedFd = if is_dir {
            let lower = PathBuf::from(format!("/proc/self/fd/{}", src.as_raw_fd()));
            let ov = Overlay::create(&scratch, vec![lower])?;
            for d in [&ov.upper, &ov.work] {
                std::os::unix::fs::chown(d, Some(spec.ids.base), Some(spec.ids.base))
                    .map_err(what("chown of scratch"))?;
            }
            ov.mount()?;
            self.extra.push(ov.merged.clone());
            open_path_abs(&ov.merged)?
        } else {
            let copy = scratch.join("file");
            let mut from = std::fs::File::open(format!("/proc/self/fd/{}", src.as_raw_fd()))
                .map_err(what("opening the source"))?;
            let mut to = std::fs::File::create(&copy).map_err(what("copying the source"))?;
            std::io::copy(&mut from, &mut to).map_err(what("copying the source"))?;
            open_path_abs(&copy)?
        };
        mounts::bind(from.as_fd(), at.as_fd(), Attrs::PLAIN).map_err(what("bind"))
    }

    /// A private tmpfs for this step's secrets (never on disk), mounted once.
    fn secrets_dir(&mut self, spec: &RunSpec, base: u32) -> Result<PathBuf, SandboxError> {
        let dir = spec.scratch.join("secrets");
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(io_err("creating the secrets dir"))?;
            let at = open_path_abs(&dir)?;
            let opts = [
                ("mode", "0700".to_string()),
                ("uid", base.to_string()),
                ("gid", base.to_string()),
            ];
            mounts::new_fs("tmpfs", &opts, at.as_fd(), Attrs::PLAIN)
                .map_err(io_err("mounting the secrets tmpfs"))?;
            self.extra.push(dir.clone());
        }
        Ok(dir)
    }
}

/// Gives the overlay's upper root the lower root's owner and mode: overlay
/// shows the upper root's attributes as the rootfs's `/`.
pub(super) fn own_upper_root(overlay: &Overlay, lower: &Root) -> Result<(), SandboxError> {
    let st = lower
        .stat(Path::new("."), true)
        .map_err(io_err("stat of the lower root"))?;
    std::os::unix::fs::chown(&overlay.upper, Some(st.st_uid), Some(st.st_gid))
        .map_err(io_err("chown of the upper dir"))?;
    std::fs::set_permissions(
        &overlay.upper,
        std::fs::Permissions::from_mode(st.st_mode & 0o7777),
    )
    .map_err(io_err("chmod of the upper dir"))
}

fn open_path(dir: &OwnedFd, name: &str) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        OsStr::new(name),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn open_path_abs(p: &Path) -> Result<OwnedFd, SandboxError> {
    rustix::fs::open(p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err(format!("opening {}", p.display()))(e.into()))
}
