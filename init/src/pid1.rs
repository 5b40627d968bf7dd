//! PID 1 of the image: the plain sequence of steps `docker run` would take, each
//! failing with one console line and a distinct exit code.

use crate::config::{signal_number, Cmdline, Config};
use crate::supervise::{self, Launch};
use crate::sys::{self, Micros};
use crate::{json, net, users};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Where `d2v pack` writes the runtime config.
pub const CONFIG_PATH: &str = "/etc/d2v/config.json";
/// Docker's PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit codes for init's own failures (the entrypoint's codes are passed through).
pub mod code {
    pub const MOUNT: i32 = 240;
    pub const CONFIG: i32 = 241;
    pub const SYSTEM: i32 = 242;
    pub const NETWORK: i32 = 243;
    pub const USER: i32 = 244;
    pub const WORKDIR: i32 = 245;
    pub const SPAWN: i32 = 246;
    pub const INITRD: i32 = 247;
}

/// Prints the failed step and shuts the VM down with `code`.
pub fn fail(exit_port: Option<u16>, code: i32, msg: &str) -> ! {
    say!("{msg}");
    say!("init failed with code {code}");
    supervise::power_off(exit_port, code)
}

const MS_NOSUID: libc::c_ulong = libc::MS_NOSUID;
const MS_NODEV: libc::c_ulong = libc::MS_NODEV;
const MS_NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

fn mounted(target: &str) -> bool {
    let Ok(mounts) = sys::read_file(b"/proc/self/mounts") else {
        return false;
    };
    mounts
        .split(|&b| b == b'\n')
        .any(|l| l.split(|&b| b == b' ').nth(1) == Some(target.as_bytes()))
}

/// Mounts `fstype` on `target` (created if missing) unless something is there.
pub fn mount_fs(
    fstype: &str,
    target: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), String> {
    if target != "/proc" && mounted(target) {
        return Ok(());
    }
    sys::mkdir_all(target.as_bytes(), 0o755)
        .map_err(|e| format!("couldn't create {target}: {e}"))?;
    match sys::mount(
        fstype.as_bytes(),
        target.as_bytes(),
        fstype.as_bytes(),
        flags,
        data.as_bytes(),
    ) {
        Ok(()) | Err(sys::Errno(libc::EBUSY)) => Ok(()),
        Err(e) => Err(format!("couldn't mount {fstype} on {target}: {e}")),
    }
}

fn mount_all() -> Result<(), String> {
    mount_fs("sysfs", "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC, "")?;
    mount_fs("devtmpfs", "/dev", MS_NOSUID, "mode=0755")?;
    sys::ensure_console_stdio();
    mount_fs(
        "devpts",
        "/dev/pts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )?;
    mount_fs("tmpfs", "/dev/shm", MS_NOSUID | MS_NODEV, "mode=1777")?;
    mount_fs(
        "mqueue",
        "/dev/mqueue",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        "",
    )?;
    mount_fs("tmpfs", "/run", MS_NOSUID | MS_NODEV, "mode=0755")?;
    mount_fs(
        "cgroup2",
        "/sys/fs/cgroup",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        "",
    )?;
    for (target, link) in [
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

fn load_config(cmdline: &Cmdline) -> Result<Config, String> {
    let bytes = sys::read_file(CONFIG_PATH.as_bytes())
        .map_err(|e| format!("couldn't read {CONFIG_PATH}: {e}"))?;
    let doc = json::parse(&bytes).map_err(|e| format!("couldn't parse {CONFIG_PATH}: {e}"))?;
    let mut cfg = Config::from_json(&doc).map_err(|e| format!("bad {CONFIG_PATH}: {e}"))?;
    if let Some(o) = &cmdline.run_override {
        let doc = json::parse(o).map_err(|e| format!("couldn't parse d2v.run= override: {e}"))?;
        cfg.apply(&doc, true)
            .map_err(|e| format!("bad d2v.run= override: {e}"))?;
    }
    Ok(cfg)
}

fn setup_network(cfg: &Config) -> Result<(), String> {
    let mut nl = net::Netlink::open().map_err(|e| format!("couldn't open netlink: {e}"))?;
    let lo = net::if_index("lo").map_err(|e| format!("couldn't find lo: {e}"))?;
    nl.link_up(lo, None)
        .map_err(|e| format!("couldn't bring lo up: {e}"))?;
    let Some(n) = &cfg.network else {
        return Ok(());
    };
    let (addr, prefix) = net::parse_cidr(&n.address)
        .ok_or_else(|| format!("couldn't parse network address {:?}", n.address))?;
    let mut eth0 = net::if_index("eth0");
    for _ in 0..200 {
        if eth0.is_ok() {
            break;
        }
        sys::sleep_ms(10);
        eth0 = net::if_index("eth0");
    }
    let eth0 = eth0.map_err(|e| format!("couldn't find eth0: {e}"))?;
    nl.link_up(eth0, n.mtu)
        .map_err(|e| format!("couldn't bring eth0 up: {e}"))?;
    nl.add_addr(eth0, addr, prefix)
        .map_err(|e| format!("couldn't add {} to eth0: {e}", n.address))?;
    if let Some(gw) = &n.gateway {
        let gw_addr =
            net::parse_ipv4(gw).ok_or_else(|| format!("couldn't parse gateway {gw:?}"))?;
        nl.add_default_route(eth0, gw_addr)
            .map_err(|e| format!("couldn't add default route via {gw}: {e}"))?;
    }
    Ok(())
}

fn write_etc(cfg: &Config, hostname: &str) -> Result<(), String> {
    if cfg.write_hosts {
        let own = cfg
            .network
            .as_ref()
            .and_then(|n| n.address.split('/').next().map(ToString::to_string))
            .unwrap_or_else(|| "127.0.1.1".to_string());
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}\t{hostname}\n"
        );
        sys::write_file(b"/etc/hosts", hosts.as_bytes(), 0o644)
            .map_err(|e| format!("couldn't write /etc/hosts: {e}"))?;
    }
    if cfg.write_resolv_conf {
        if let Some(n) = cfg.network.as_ref().filter(|n| !n.dns.is_empty()) {
            let mut text = String::new();
            for s in &n.dns {
                text.push_str(&format!("nameserver {s}\n"));
            }
            // A dangling symlink (systemd-resolved images) would make the write fail.
            let p = sys::cstr(b"/etc/resolv.conf");
            // SAFETY: p is a valid C string.
            unsafe { libc::unlink(p.as_ptr()) };
            sys::write_file(b"/etc/resolv.conf", text.as_bytes(), 0o644)
                .map_err(|e| format!("couldn't write /etc/resolv.conf: {e}"))?;
        }
    }
    Ok(())
}

/// The entrypoint's environment: Docker's HOSTNAME, the image's ENV and the
/// per-boot `-e` values (later wins), then PATH and HOME when still unset.
pub fn build_env(image_env: &[String], hostname: &str, home: &str) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or("").to_string();
        match env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(key.as_str()))
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    };
    set(format!("HOSTNAME={hostname}"));
    for e in image_env {
        if e.contains('=') {
            set(e.clone());
        } else {
            // `-e NAME` without a value: Docker passes the host's value; we have none.
            continue;
        }
    }
    let has = |k: &str, env: &Vec<String>| env.iter().any(|e| e.split('=').next() == Some(k));
    if !has("PATH", &env) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOME", &env) {
        env.push(format!("HOME={home}"));
    }
    env
}

fn set_rlimits() -> Result<(), String> {
    // dockerd's systemd unit runs with LimitNOFILE=infinity (1048576 = nr_open),
    // LimitNPROC=infinity and LimitCORE=infinity, which containers inherit.
    let limits = [
        (libc::RLIMIT_NOFILE, 1_048_576u64, "RLIMIT_NOFILE"),
        (libc::RLIMIT_NPROC, libc::RLIM_INFINITY, "RLIMIT_NPROC"),
        (libc::RLIMIT_CORE, libc::RLIM_INFINITY, "RLIMIT_CORE"),
    ];
    for (res, value, name) in limits {
        let rl = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: rl is a valid rlimit.
        if unsafe { libc::setrlimit(res, &rl) } != 0 {
            return Err(format!("couldn't set {name}: {}", sys::Errno::last()));
        }
    }
    Ok(())
}

fn path_of_env(env: &[String]) -> &str {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// Runs the whole PID 1 sequence; never returns in a VM (it reboots).
pub fn main(_args: &[Vec<u8>], t0: u64) -> i32 {
    sys::ensure_console_stdio();
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        say!("must run as PID 1 (the guest's init)");
        return 1;
    }
    if let Err(m) = mount_fs("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "") {
        fail(None, code::MOUNT, &m);
    }
    let cmdline_text = sys::read_file(b"/proc/cmdline").unwrap_or_default();
    let cmdline = match Cmdline::parse(&String::from_utf8_lossy(&cmdline_text)) {
        Ok(c) => c,
        Err(m) => fail(None, code::CONFIG, &m),
    };
    let port = cmdline.exit_port;
    if cmdline.debug {
        say!("[{}] init started", Micros(t0));
    }
    if let Err(m) = mount_all() {
        fail(port, code::MOUNT, &m);
    }
    let cfg = load_config(&cmdline).unwrap_or_else(|m| fail(port, code::CONFIG, &m));
    let hostname = if cfg.hostname.is_empty() {
        "d2v"
    } else {
        cfg.hostname.as_str()
    };
    // SAFETY: hostname points to hostname.len() bytes.
    if unsafe { libc::sethostname(hostname.as_ptr() as *const libc::c_char, hostname.len()) } != 0 {
        fail(
            port,
            code::SYSTEM,
            &format!("couldn't set hostname {hostname}: {}", sys::Errno::last()),
        );
    }
    if let Err(m) = setup_network(&cfg) {
        fail(port, code::NETWORK, &m);
    }
    if let Err(m) = write_etc(&cfg, hostname) {
        fail(port, code::SYSTEM, &m);
    }
    let passwd = sys::read_file(b"/etc/passwd").ok();
    let group = sys::read_file(b"/etc/group").ok();
    let user = match users::resolve(&cfg.user, passwd.as_deref(), group.as_deref()) {
        Ok(u) => u,
        Err(m) => match (cfg.uid, cfg.gid) {
            // The pack-time resolution, when the image's files are gone.
            (Some(uid), Some(gid)) => users::ExecUser {
                uid,
                gid,
                groups: Vec::new(),
                home: "/".to_string(),
            },
            _ => fail(
                port,
                code::USER,
                &format!("couldn't resolve user {:?}: {m}", cfg.user),
            ),
        },
    };
    let env = build_env(&cfg.env, hostname, &user.home);
    if let Err(m) = set_rlimits() {
        fail(port, code::SYSTEM, &m);
    }
    let workdir = if cfg.workdir.is_empty() {
        "/".to_string()
    } else {
        cfg.workdir.clone()
    };
    // Docker creates a missing WORKDIR (owned by root) before starting the process.
    if let Err(e) = sys::mkdir_all(workdir.as_bytes(), 0o755) {
        fail(
            port,
            code::WORKDIR,
            &format!("couldn't create workdir {workdir}: {e}"),
        );
    }
    // SAFETY: reboot with RB_DISABLE_CAD only changes what Ctrl-Alt-Del does:
    // the kernel then sends SIGINT to PID 1 instead of rebooting.
    unsafe { libc::reboot(libc::RB_DISABLE_CAD) };
    let argv = cfg.argv();
    if argv.is_empty() {
        fail(port, code::CONFIG, "no entrypoint or cmd to run");
    }
    let stop_signal = signal_number(&cfg.stop_signal).unwrap_or_else(|| {
        fail(
            port,
            code::CONFIG,
            &format!("unknown stop signal {:?}", cfg.stop_signal),
        )
    });
    let launch = Launch {
        path: path_of_env(&env).to_string(),
        argv,
        env,
        user,
        workdir,
        stop_signal,
        debug: cmdline.debug,
        grace_ms: cmdline.grace_ms.unwrap_or(2000),
    };
    let status = supervise::run(&launch);
    supervise::shutdown(&launch, status, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn env_has_docker_defaults_and_later_entries_win() {
        let image = vec![
            "A=1".to_string(),
            "B=x=y".to_string(),
            "A=2".to_string(),
            "NOVALUE".to_string(),
        ];
        let env = build_env(&image, "box", "/home/app");
        assert_eq!(
            env,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=box".to_string(),
                "A=2".to_string(),
                "B=x=y".to_string(),
                "HOME=/home/app".to_string(),
            ]
        );
        let env = build_env(&["PATH=/opt".to_string(), "HOME=/h".to_string()], "b", "/");
        assert_eq!(env, vec!["HOSTNAME=b", "PATH=/opt", "HOME=/h"]);
    }
}
