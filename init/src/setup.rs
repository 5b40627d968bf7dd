//! The guest system around the entrypoint, as `docker run` sets up a
//! container: Docker's /dev, the image's own /run, /etc/hosts, /etc/hostname
//! and /etc/resolv.conf for this run's hostname and network, and the shared
//! host directories.

use crate::sys;
use alloc::format;
use alloc::string::{String, ToString};
use d2v_runtime::config::{RuntimeConfig, VolumeMount};

const MS_NOSUID: libc::c_ulong = libc::MS_NOSUID;
const MS_NODEV: libc::c_ulong = libc::MS_NODEV;
const MS_NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), String> {
    sys::mkdir_all(target.as_bytes(), 0o755)
        .map_err(|e| format!("couldn't create {target}: {e}"))?;
    sys::mount(
        src.as_bytes(),
        target.as_bytes(),
        fstype.as_bytes(),
        flags,
        data.as_bytes(),
    )
    .map_err(|e| format!("couldn't mount {fstype} on {target}: {e}"))
}

/// Docker's /dev: a tmpfs with null, zero, full, random, urandom, tty, a
/// private devpts (ptmx 0666), /dev/shm, /dev/mqueue and the fd links. It hides
/// the kernel's devtmpfs (disks, consoles, the channel), which init opened
/// before.
pub fn docker_dev() -> Result<(), String> {
    mount(
        "tmpfs",
        "/dev",
        "tmpfs",
        MS_NOSUID | libc::MS_STRICTATIME,
        "mode=755,size=65536k",
    )?;
    for (name, minor_major) in [
        ("null", (1, 3)),
        ("zero", (1, 5)),
        ("full", (1, 7)),
        ("random", (1, 8)),
        ("urandom", (1, 9)),
        ("tty", (5, 0)),
    ] {
        let path = format!("/dev/{name}");
        sys::mknod(
            path.as_bytes(),
            libc::S_IFCHR | 0o666,
            minor_major.0,
            minor_major.1,
        )
        .and_then(|_| sys::chmod(path.as_bytes(), 0o666))
        .map_err(|e| format!("couldn't create {path}: {e}"))?;
    }
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )?;
    mount(
        "shm",
        "/dev/shm",
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        "mode=1777,size=65536k",
    )?;
    mount(
        "mqueue",
        "/dev/mqueue",
        "mqueue",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        "",
    )?;
    for (target, link) in [
        ("pts/ptmx", "/dev/ptmx"),
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("/proc/kcore", "/dev/core"),
    ] {
        sys::symlink(target.as_bytes(), link.as_bytes())
            .map_err(|e| format!("couldn't link {link} to {target}: {e}"))?;
    }
    Ok(())
}

/// sysfs and the cgroup2 hierarchy.
pub fn sys_and_cgroup() -> Result<(), String> {
    crate::pid1::mount_fs("sysfs", "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC, "")?;
    crate::pid1::mount_fs(
        "cgroup2",
        "/sys/fs/cgroup",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        "",
    )
}

fn replace_file(path: &str, text: &str) -> Result<(), String> {
    sys::mkdir_all(b"/etc", 0o755).map_err(|e| format!("couldn't create /etc: {e}"))?;
    // A symlink (systemd-resolved images) or a dangling one would redirect the write.
    let p = sys::cstr(path.as_bytes());
    // SAFETY: p is a valid C string.
    unsafe { libc::unlink(p.as_ptr()) };
    sys::write_file(path.as_bytes(), text.as_bytes(), 0o644)
        .map_err(|e| format!("couldn't write {path}: {e}"))
}

/// The address eth0 gets, or Docker's none-network answer (no line).
fn own_address(cfg: &RuntimeConfig) -> Option<String> {
    let n = cfg.network.as_ref()?;
    n.address.split('/').next().map(ToString::to_string)
}

/// `/etc/hosts` as Docker writes it, plus this run's hostname.
pub fn hosts_file(cfg: &RuntimeConfig, hostname: &str) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if let Some(own) = own_address(cfg) {
        s.push_str(&format!("{own}\t{hostname}\n"));
    }
    s
}

/// Writes /etc/hosts, /etc/hostname and /etc/resolv.conf as the config asks.
pub fn etc_files(cfg: &RuntimeConfig, hostname: &str) -> Result<(), String> {
    if cfg.write_hosts {
        replace_file("/etc/hosts", &hosts_file(cfg, hostname))?;
        replace_file("/etc/hostname", &format!("{hostname}\n"))?;
    }
    if cfg.write_resolv_conf {
        if let Some(n) = cfg.network.as_ref().filter(|n| !n.dns.is_empty()) {
            let mut text = String::new();
            for s in &n.dns {
                text.push_str(&format!("nameserver {s}\n"));
            }
            replace_file("/etc/resolv.conf", &text)?;
        }
    }
    Ok(())
}

/// Mounts the host directories shared over 9p.
pub fn volumes(list: &[VolumeMount]) -> Result<(), String> {
    for v in list {
        let flags = if v.read_only { libc::MS_RDONLY } else { 0 };
        mount(
            &v.tag,
            &v.target,
            "9p",
            flags,
            "trans=virtio,version=9p2000.L,msize=262144",
        )
        .map_err(|e| format!("{e} (volume {})", v.tag))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use d2v_runtime::config::NetworkConfig;

    #[test]
    fn hosts_file_names_the_run_like_docker() {
        let mut cfg = RuntimeConfig::default();
        let none = hosts_file(&cfg, "abc");
        assert!(
            none.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        );
        assert!(!none.contains("abc"));
        cfg.network = Some(NetworkConfig::qemu_user());
        assert!(hosts_file(&cfg, "abc").ends_with("ff02::2\tip6-allrouters\n10.0.2.15\tabc\n"));
    }
}
