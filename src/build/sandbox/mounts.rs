//! Mounting onto file descriptors, never onto paths: every target is an
//! `O_PATH` fd resolved inside the step's root (see [`super::stubs`]), and the
//! new mount API (`open_tree`, `fsopen`/`fsmount`, `move_mount`) attaches to it,
//! so nothing the image or a step put in the tree can redirect a mount.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, open_tree, FsMountFlags,
    FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};

/// Attributes of a mount (a subset of `MOUNT_ATTR_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Attrs {
    /// Read-only.
    pub readonly: bool,
    /// Honour neither setuid bits nor device nodes (`nosuid,nodev`).
    pub nosuid_nodev: bool,
    /// No execution (`noexec`).
    pub noexec: bool,
}

impl Attrs {
    /// `nosuid,nodev`, writable.
    pub(super) const PLAIN: Attrs = Attrs {
        readonly: false,
        nosuid_nodev: true,
        noexec: false,
    };

    fn flags(self) -> MountAttrFlags {
        let mut f = MountAttrFlags::empty();
        if self.readonly {
            f |= MountAttrFlags::MOUNT_ATTR_RDONLY;
        }
        if self.nosuid_nodev {
            f |= MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
        }
        if self.noexec {
            f |= MountAttrFlags::MOUNT_ATTR_NOEXEC;
        }
        f
    }
}

/// Binds `src` (any fd of the file or directory, `O_PATH` is fine) over the
/// mount point `dst`, recursively, with `attrs`.
pub(super) fn bind(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, attrs: Attrs) -> io::Result<()> {
    let tree = open_tree(
        src,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH
            | OpenTreeFlags::AT_RECURSIVE,
    )?;
    let flags = attrs.flags();
    if !flags.is_empty() {
        mount_setattr(tree.as_fd(), u64::from(flags.bits()))?;
    }
    attach(tree.as_fd(), dst)
}

/// Mounts a new filesystem of type `fstype` with `options` (key, value)
/// over `dst`, with `attrs`.
pub(super) fn new_fs(
    fstype: &str,
    options: &[(&str, String)],
    dst: BorrowedFd<'_>,
    attrs: Attrs,
) -> io::Result<()> {
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for (key, value) in options {
        if value.is_empty() {
            rustix::mount::fsconfig_set_flag(fs.as_fd(), *key)?;
        } else {
            fsconfig_set_string(fs.as_fd(), *key, value.as_str())?;
        }
    }
    fsconfig_create(fs.as_fd())?;
    let mnt = fsmount(fs.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, attrs.flags())?;
    attach(mnt.as_fd(), dst)
}

/// An `O_PATH` fd of what is now at `real` (a symlink-free path relative to
/// `root`): after a mount, the mount point's own fd still refers to what is
/// under the mount, so the new mount's root is reached by walking to it again.
pub(super) fn reopen(root: BorrowedFd<'_>, real: &std::path::Path) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let path = if real.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        real
    };
    Ok(rustix::fs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?)
}

fn attach(tree: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    move_mount(
        tree,
        "",
        dst,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?;
    Ok(())
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, {attr_set})` (rustix has
/// no wrapper yet).
fn mount_setattr(fd: BorrowedFd<'_>, set: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid fd, a NUL-terminated empty path, and a MountAttr whose
    // size is passed alongside; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Detaches whatever is mounted at `path` (lazily), ignoring "not mounted".
pub(super) fn detach(path: &std::path::Path) -> io::Result<()> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => Ok(()),
        Err(e) => Err(e.into()),
    }
}
