//! Initrd mode: `/init` of the initramfs d2v generates for kernels whose virtio
//! and ext4 drivers are modules. It loads the modules listed in `/d2v-initrd`
//! (one path per line, already in `modules.dep` dependency order), waits for the
//! root device, mounts it, moves /dev over, switches root and execs the image's
//! `/sbin/d2v-init` (or the command line's `init=`) as PID 1.

use crate::config::Cmdline;
use crate::pid1::{code, fail, mount_fs};
use crate::sys::{self, cstr, Errno, Micros};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The marker (and module list) d2v puts at the initramfs root.
pub const MARKER: &str = "/d2v-initrd";
const NEWROOT: &str = "/newroot";

/// PID 1 with the marker present and no image config: we are the initramfs.
pub fn is_initrd_mode(_args: &[Vec<u8>]) -> bool {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    pid == 1 && sys::exists(MARKER.as_bytes()) && !sys::exists(crate::pid1::CONFIG_PATH.as_bytes())
}

/// `modname.param=value` words of the kernel command line, as `param=value`
/// for `modname`: what modprobe would collect from /proc/cmdline (the kernel
/// applies such words itself only to built-in modules). QEMU microvm passes its
/// virtio-mmio devices this way (`virtio_mmio.device=512@0xfeb00e00:12`).
pub fn module_params(cmdline: &str, path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let name = base.split(".ko").next().unwrap_or(base).replace('-', "_");
    let prefix = format!("{name}.");
    let mut out = Vec::new();
    for w in cmdline.split_ascii_whitespace() {
        if let Some(p) = w.strip_prefix(&prefix) {
            out.push(p);
        }
    }
    out.join(" ")
}

fn load_module(path: &str, cmdline: &str) -> Result<(), String> {
    let fd = sys::open(path.as_bytes(), libc::O_RDONLY, 0)
        .map_err(|e| format!("couldn't open module {path}: {e}"))?;
    let params = cstr(module_params(cmdline, path).as_bytes());
    // SAFETY: finit_module(fd, params, flags) with a valid fd and C string.
    let ret = unsafe { libc::syscall(libc::SYS_finit_module, fd, params.as_ptr(), 0) };
    let err = Errno::last();
    sys::close(fd);
    if ret != 0 && err.0 != libc::EEXIST {
        return Err(format!("couldn't load module {path}: {err}"));
    }
    Ok(())
}

fn steps(cmdline: &Cmdline, text: &str) -> Result<(), String> {
    let list =
        sys::read_file(MARKER.as_bytes()).map_err(|e| format!("couldn't read {MARKER}: {e}"))?;
    for line in String::from_utf8_lossy(&list).lines() {
        let m = line.trim();
        if !m.is_empty() && !m.starts_with('#') {
            load_module(m, text)?;
        }
    }
    let root = cmdline.root.clone().unwrap_or_else(|| "/dev/vda".into());
    let fstype = cmdline.rootfstype.clone().unwrap_or_else(|| "ext4".into());
    let mut waited = 0;
    while !sys::exists(root.as_bytes()) {
        if waited >= 10_000 {
            return Err(format!(
                "couldn't find root device {root}: ENOENT (waited 10 s)"
            ));
        }
        sys::sleep_ms(5);
        waited += 5;
    }
    sys::mkdir(NEWROOT.as_bytes(), 0o755).map_err(|e| format!("couldn't create {NEWROOT}: {e}"))?;
    sys::mount(
        root.as_bytes(),
        NEWROOT.as_bytes(),
        fstype.as_bytes(),
        0,
        b"",
    )
    .map_err(|e| format!("couldn't mount {root} ({fstype}) on {NEWROOT}: {e}"))?;
    let newdev = format!("{NEWROOT}/dev");
    sys::mkdir(newdev.as_bytes(), 0o755).map_err(|e| format!("couldn't create {newdev}: {e}"))?;
    sys::mount(b"/dev", newdev.as_bytes(), b"", libc::MS_MOVE, b"")
        .map_err(|e| format!("couldn't move /dev to {newdev}: {e}"))?;
    for m in ["/proc", "/sys"] {
        let p = cstr(m.as_bytes());
        // SAFETY: p is a valid C string; a lazy unmount of our own mounts.
        unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
    }
    sys::chdir(NEWROOT.as_bytes()).map_err(|e| format!("couldn't chdir to {NEWROOT}: {e}"))?;
    sys::mount(b".", b"/", b"", libc::MS_MOVE, b"")
        .map_err(|e| format!("couldn't move {NEWROOT} to /: {e}"))?;
    let dot = cstr(b".");
    // SAFETY: dot is a valid C string.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return Err(format!(
            "couldn't chroot to the new root: {}",
            Errno::last()
        ));
    }
    sys::chdir(b"/").map_err(|e| format!("couldn't chdir to /: {e}"))?;
    Ok(())
}

/// Runs initrd mode; on success it execs the image's init and never returns.
pub fn main(_args: &[Vec<u8>]) -> i32 {
    if let Err(m) = mount_fs("devtmpfs", "/dev", libc::MS_NOSUID, "mode=0755") {
        fail(None, code::INITRD, &m);
    }
    sys::ensure_console_stdio();
    for (fs, target) in [("proc", "/proc"), ("sysfs", "/sys")] {
        if let Err(m) = mount_fs(fs, target, 0, "") {
            fail(None, code::INITRD, &m);
        }
    }
    let text = sys::read_file(b"/proc/cmdline").unwrap_or_default();
    let text = String::from_utf8_lossy(&text).into_owned();
    let cmdline = Cmdline::parse(&text);
    if cmdline.debug {
        say!("[{}] initrd started", Micros(sys::boottime()));
    }
    if let Err(m) = steps(&cmdline, &text) {
        fail(cmdline.exit_port, code::INITRD, &m);
    }
    if cmdline.debug {
        say!("[{}] switching root", Micros(sys::boottime()));
    }
    let init_path = cmdline
        .init
        .clone()
        .unwrap_or_else(|| "/sbin/d2v-init".into());
    let init = cstr(init_path.as_bytes());
    let argv = [init.as_ptr(), core::ptr::null()];
    let envp: [*const libc::c_char; 1] = [core::ptr::null()];
    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings.
    unsafe { libc::execve(init.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    fail(
        cmdline.exit_port,
        code::INITRD,
        &format!(
            "couldn't exec /sbin/d2v-init in the image: {}",
            Errno::last()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::module_params;

    #[test]
    fn collects_module_parameters_from_the_command_line() {
        let cmd = "console=ttyS0 virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:13 ext4.x=1";
        assert_eq!(
            module_params(cmd, "/lib/modules/6.1/kernel/drivers/virtio/virtio_mmio.ko"),
            "device=512@0xfeb00e00:12 device=512@0xfeb00c00:13"
        );
        assert_eq!(module_params(cmd, "/m/crc32c-intel.ko"), "");
    }
}
