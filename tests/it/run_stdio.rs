//! `d2v run`'s stdio is the entrypoint's: stdout and stderr separate and
//! byte-exact, stdin only with `-i` (EOF otherwise), a terminal only with
//! `-t`, no kernel or init text, and an exit code the app cannot forge.

use crate::run_support;

use run_support::{build_image, config, d2v, finish, one_boot, probe_image};
use std::io::Write;
use std::process::Stdio;

/// What `probe stdio` writes to stdout.
fn expected_stdout() -> Vec<u8> {
    let mut v = b"a\nb".to_vec();
    let mut x: u32 = 1;
    for _ in 0..1 << 20 {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        v.push((x >> 16) as u8);
    }
    v.extend_from_slice(b"\nd2v-init: probe exited with code 42\n");
    v
}

#[test]
fn stdout_and_stderr_are_separate_and_byte_exact_and_the_exit_line_is_not_trusted() {
    require_facilities!();
    let img = probe_image();
    let r = run_support::d2v_run(&img.path, &["--", "stdio"]);
    assert_eq!(r.stderr, "to stderr\n");
    assert!(
        r.stdout == expected_stdout(),
        "stdout differs ({} bytes)",
        r.stdout.len()
    );
    assert_eq!(r.code, Some(0), "the forged exit line must not count");
}

#[test]
fn stdin_flows_with_dash_i_and_is_empty_without() {
    require_facilities!();
    let img = build_image(&config(|c| c.entrypoint = vec!["/bin/cat".into()]), &[]);
    let _one = one_boot();
    // `d2v run FLAGS --image IMG` with every stdio a pipe.
    let spawn = |flags: &[&str]| {
        d2v()
            .arg("run")
            .args(flags)
            .arg("--image")
            .arg(&img.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = spawn(&["-i"]);
    let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let r = finish(child.wait_with_output().unwrap());
    writer.join().unwrap().unwrap();
    assert!(
        r.stdout == input,
        "cat returned {} of {} bytes",
        r.stdout.len(),
        input.len()
    );
    assert_eq!(r.code, Some(0));

    // Without -i the entrypoint's stdin is /dev/null even when d2v's has data.
    let mut child = spawn(&[]);
    child.stdin.take().unwrap().write_all(b"ignored\n").unwrap();
    let r = finish(child.wait_with_output().unwrap());
    assert_eq!(r.stdout, b"");
    assert_eq!(r.code, Some(0));

    // A short input and its end, written before the guest is up, arrive in
    // the same read as the handshake: they must still reach the entrypoint
    // (this used to hang until the guest was stopped).
    let mut child = spawn(&["-i"]);
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("cat never saw the end of a short stdin");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = finish(child.wait_with_output().unwrap());
    assert_eq!(r.stdout, b"hi\n");
    assert_eq!(r.code, Some(0));
}

#[test]
fn a_terminal_only_with_dash_t() {
    require_facilities!();
    let img = probe_image();
    let r = run_support::d2v_run(&img.path, &["--", "tty"]);
    assert_eq!(r.out(), "probe: tty 000 size 0x0\n");
    let r = run_support::d2v_run(&img.path, &["-t", "--", "tty"]);
    // No terminal on d2v's side: Docker's default 24x80; the terminal's
    // line discipline turns \n into \r\n.
    assert_eq!(r.out(), "probe: tty 111 size 24x80\r\n");
}

#[test]
fn large_output_arrives_whole_before_the_vm_powers_off() {
    require_facilities!();
    let img = probe_image();
    // Init waits for the host's acknowledgement of the exit code before it
    // powers off: a VMM drops whatever was still on its way.
    let r = run_support::d2v_run(
        &img.path,
        &[
            "--entrypoint",
            "/bin/sh",
            "--",
            "-c",
            "head -c 33554432 /dev/zero",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout.len(), 32 << 20);
    assert!(r.stdout.iter().all(|&b| b == 0));
}
