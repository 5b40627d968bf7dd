//! PID 1 of the image: the plain sequence of steps `docker run` would take,
//! each failing with one message to the host and a distinct exit code.

use crate::channel::{self, Channel};
use crate::config::{signal_number, Cmdline};
use crate::stdio::Stdio;
use crate::supervise::{self, Launch};
use crate::sys::{self, Micros};
use crate::{net, setup};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use d2v_runtime::config::{RunRequest, RuntimeConfig};
use d2v_runtime::proto::{self, Kind, Level};
use d2v_runtime::{json, user};

/// Where `d2v pack` writes the runtime config.
pub const CONFIG_PATH: &str = "/etc/d2v/config.json";
/// Docker's PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit codes for init's own failures (the entrypoint's codes are passed through).
pub mod code {
    #![allow(missing_docs)]
    /// `docker run --user ghost`: the user cannot be resolved (as Docker).
    pub const USER: i32 = 126;
    pub const MOUNT: i32 = 240;
    pub const CONFIG: i32 = 241;
    pub const SYSTEM: i32 = 242;
    pub const NETWORK: i32 = 243;
    pub const CHANNEL: i32 = 248;
    pub const WORKDIR: i32 = 245;
    pub const SPAWN: i32 = 246;
    pub const INITRD: i32 = 247;
}

/// One error line for the host: shown on d2v's stderr whatever `--debug` says.
pub fn error(msg: &str) {
    channel::log(Level::Error, msg);
}

/// Reports the failed step and `code` and shuts the VM down.
pub fn fail(exit_port: Option<u16>, code: i32, msg: &str) -> ! {
    error(msg);
    channel::send_exit(code);
    supervise::power_off(exit_port, code)
}

/// Sets the wall clock (the host's time, sent at boot).
pub fn set_clock(secs: i64, nanos: u32) {
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nanos as libc::c_long,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
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

/// Reads the image's config and applies the run's overrides.
fn load_config(req: &RunRequest) -> Result<RuntimeConfig, String> {
    let bytes = sys::read_file(CONFIG_PATH.as_bytes())
        .map_err(|e| format!("couldn't read {CONFIG_PATH}: {e}"))?;
    let doc = json::parse(&bytes).map_err(|e| format!("couldn't parse {CONFIG_PATH}: {e}"))?;
    let mut cfg = RuntimeConfig::from_json(&doc).map_err(|e| format!("bad {CONFIG_PATH}: {e}"))?;
    cfg.apply(&req.overrides);
    Ok(cfg)
}

/// Says hello and waits for the host's run request and clock.
fn handshake(ch: &mut Channel) -> Result<RunRequest, String> {
    ch.send(Kind::Hello, &[proto::VERSION]);
    let mut req = None;
    loop {
        let f = ch.recv()?;
        match f.kind {
            Kind::Start => {
                let doc = json::parse(&f.payload).map_err(|e| format!("bad run request: {e}"))?;
                req =
                    Some(RunRequest::from_json(&doc).map_err(|e| format!("bad run request: {e}"))?);
            }
            Kind::Clock => {
                let (secs, nanos) = f.clock().map_err(|e| format!("bad clock: {e}"))?;
                set_clock(secs, nanos);
                return req.ok_or_else(|| "the host sent the clock before the run request".into());
            }
            _ => {}
        }
    }
}

fn setup_network(cfg: &RuntimeConfig) -> Result<(), String> {
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

/// Runs the whole PID 1 sequence; never returns in a VM (it powers off).
pub fn main(_args: &[Vec<u8>], t0: u64) -> i32 {
    sys::ensure_console_stdio();
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        error("must run as PID 1 (the guest's init)");
        return 1;
    }
    let nsnd = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if let Err(m) = mount_fs("proc", "/proc", nsnd, "") {
        fail(None, code::MOUNT, &m);
    }
    let cmdline_text = sys::read_file(b"/proc/cmdline").unwrap_or_default();
    let cmdline = Cmdline::parse(&String::from_utf8_lossy(&cmdline_text));
    let port = cmdline.exit_port;
    channel::set_debug(cmdline.debug);
    say!("[{}] init started", Micros(t0));
    let dev = mount_fs("devtmpfs", "/dev", MS_NOSUID, "mode=0755");
    if let Err(m) = dev.and_then(|_| setup::sys_and_cgroup()) {
        fail(port, code::MOUNT, &m);
    }
    let (mut ch, req) = match Channel::open(cmdline.channel) {
        Ok(mut ch) => {
            let req = handshake(&mut ch).unwrap_or_else(|m| fail(port, code::CHANNEL, &m));
            (Some(ch), req)
        }
        Err(m) => {
            // Booted without d2v (a VMM started by hand with `d2v pack`'s
            // vm.json): the image's own config, on the serial console.
            say!("no channel to the host ({m}): running on the console");
            (None, RunRequest::default())
        }
    };
    channel::set_debug(req.debug);
    say!("[{}] run request ready", Micros(sys::boottime()));
    if let Err(m) = setup::docker_dev() {
        fail(port, code::MOUNT, &m);
    }
    let cfg = load_config(&req).unwrap_or_else(|m| fail(port, code::CONFIG, &m));
    let launch = prepare(&cfg, &req, port);
    let io = if ch.is_none() {
        Ok(Stdio::console())
    } else if req.tty {
        Stdio::terminal(req.rows, req.cols, launch.user.uid)
    } else {
        Stdio::pipes(req.stdin, launch.user.uid, launch.user.gid)
    };
    let mut io = io.unwrap_or_else(|m| fail(port, code::SPAWN, &m));
    let sfd = supervise::block_signals();
    let code = match supervise::spawn(&launch, &io) {
        Ok(pid) => {
            io.close_child_ends();
            let status = supervise::supervise(ch.as_mut(), io, pid, sfd, &launch);
            supervise::exit_code(status)
        }
        Err(code) => code,
    };
    say!("{} exited with code {code}", launch.argv[0]);
    channel::send_exit(code);
    supervise::power_off(port, code)
}

/// Hostname, network, /etc files, volumes, disk, user, environment, rlimits
/// and working directory: everything between the config and the fork.
fn prepare(cfg: &RuntimeConfig, req: &RunRequest, port: Option<u16>) -> Launch {
    let hostname = [cfg.hostname.as_str(), req.hostname.as_str(), "d2v"]
        .into_iter()
        .find(|h| !h.is_empty())
        .unwrap_or("d2v");
    // SAFETY: hostname points to hostname.len() bytes.
    if unsafe { libc::sethostname(hostname.as_ptr() as *const libc::c_char, hostname.len()) } != 0 {
        let m = format!("couldn't set hostname {hostname}: {}", sys::Errno::last());
        fail(port, code::SYSTEM, &m);
    }
    if let Err(m) = setup_network(cfg) {
        fail(port, code::NETWORK, &m);
    }
    if let Err(m) = setup::etc_files(cfg, hostname) {
        fail(port, code::SYSTEM, &m);
    }
    if let Err(m) = setup::volumes(&req.volumes) {
        fail(port, code::MOUNT, &m);
    }
    let passwd = sys::read_file(b"/etc/passwd").ok();
    let group = sys::read_file(b"/etc/group").ok();
    let user = match user::resolve(&cfg.user, passwd.as_deref(), group.as_deref()) {
        Ok(u) => u,
        Err(e) => match (cfg.uid, cfg.gid) {
            // The pack-time resolution, when the image's files are gone.
            (Some(uid), Some(gid)) => user::ExecUser {
                uid,
                gid,
                groups: Vec::new(),
                home: "/".to_string(),
            },
            _ => fail(port, code::USER, &e.to_string()),
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
    Launch {
        path: path_of_env(&env).to_string(),
        argv,
        env,
        user,
        workdir,
        stop_signal,
        grace_ms: req.grace_ms.unwrap_or(2000),
    }
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
