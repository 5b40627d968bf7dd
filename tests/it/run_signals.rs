//! Stopping a run as Docker stops a container: d2v handles SIGINT (a
//! terminal's Ctrl-C), SIGTERM and SIGHUP itself, the VMM in its own session
//! never sees them; the entrypoint gets the image's STOPSIGNAL, SIGKILL after
//! `--stop-timeout` (exit 137), and the root filesystem is cleanly unmounted.

use crate::run_support;

use run_support::{assert_fsck_clean, build_image, config, d2v, one_boot, Image};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stop_image(mode: &str) -> Image {
    build_image(
        &config(|c| {
            c.entrypoint = vec!["probe".into(), mode.into()];
            c.stop_signal = "SIGQUIT".into();
        }),
        &[],
    )
}

/// Starts `d2v run` with stdout piped, waits for "probe: ready", sends `sig`
/// to d2v, and returns (stdout, exit code, seconds from signal to exit).
fn signal_when_ready(cmd: &mut Command, sig: i32) -> (String, Option<i32>, f64) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    let mut line = String::new();
    let mut sent = None;
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        out.push_str(&line);
        if line.contains("probe: ready") && sent.is_none() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, sig) };
            sent = Some(Instant::now());
        }
        line.clear();
    }
    let st = child.wait().unwrap();
    eprintln!("{out}");
    let took = sent.expect("probe never got ready").elapsed().as_secs_f64();
    (out, st.code(), took)
}

/// The named run's disk, converted to raw, passes `e2fsck -fn`.
fn assert_container_fsck_clean(home: &Path, name: &str) {
    let disk = home.join("d2v/containers").join(name).join("disk");
    let raw = home.join("disk.raw");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&disk)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(st.success());
    assert_fsck_clean(&raw);
    // Cleanly unmounted: no journal left to replay.
    let dump = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&raw)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dump.stdout);
    let features = text
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap();
    assert!(!features.contains("needs_recovery"), "{features}");
}

#[test]
fn sigterm_delivers_the_stop_signal_and_the_fs_is_clean() {
    require_facilities!();
    let img = stop_image("wait-signal");
    let home = tempfile::tempdir().unwrap();
    let _one = one_boot();
    let (out, code, _) = signal_when_ready(
        d2v()
            .env("D2V_HOME", home.path())
            .args(["run", "--name", "stopme", "--image"])
            .arg(&img.path),
        libc::SIGTERM,
    );
    assert!(out.contains("probe: got signal 3 (QUIT)"), "{out}");
    assert_eq!(code, Some(0), "the app's own exit code");
    assert_container_fsck_clean(home.path(), "stopme");
}

#[test]
fn an_app_ignoring_its_stop_signal_is_killed_after_the_stop_timeout() {
    require_facilities!();
    let img = stop_image("ignore-stop");
    let _one = one_boot();
    let (_, code, took) = signal_when_ready(
        d2v()
            .args(["run", "--stop-timeout", "1", "--image"])
            .arg(&img.path),
        libc::SIGHUP,
    );
    assert_eq!(code, Some(137));
    assert!((1.0..20.0).contains(&took), "stopped after {took:.1} s");
}

fn read_until(master: &mut std::fs::File, out: &mut Vec<u8>, needle: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(out).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {:?}",
            String::from_utf8_lossy(out)
        );
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn ctrl_c_on_a_terminal_stops_the_app_not_the_vm() {
    require_facilities!();
    let img = stop_image("wait-signal");
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave: OwnedFd = pty.slave;
    let _one = one_boot();
    let mut cmd = d2v();
    cmd.args(["run", "--image"])
        .arg(&img.path)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // In the child before exec: d2v becomes the session leader with the pty as
    // its controlling terminal, as in a shell.
    let become_session_leader = || {
        nix::unistd::setsid()?;
        // SAFETY: TIOCSCTTY takes an int argument; fd 0 is the pty slave.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook only makes two async-signal-safe syscalls and touches
    // no memory shared with the parent.
    unsafe { cmd.pre_exec(become_session_leader) };
    let mut child = cmd.spawn().unwrap();
    drop(slave);
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    read_until(
        &mut master,
        &mut out,
        "probe: ready",
        Duration::from_secs(120),
    );
    // Ctrl-C: the terminal's line discipline sends SIGINT to its foreground
    // process group, which is d2v's alone.
    master.write_all(&[3]).unwrap();
    read_until(&mut master, &mut out, "got signal", Duration::from_secs(60));
    let st = child.wait().unwrap();
    let text = String::from_utf8_lossy(&out);
    eprintln!("{text}");
    assert!(text.contains("probe: got signal 3 (QUIT)"), "{text}");
    assert_eq!(st.code(), Some(0));
}
