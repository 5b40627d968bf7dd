//! The system around a run, as `docker run` gives it: any size of env and
//! args, the host's clock, outbound network with DNS, published ports (`-p`,
//! `-P` printed like `docker port`), shared directories (`-v`), room on the
//! disk (`--disk-size`), named runs kept between boots, concurrent runs of one
//! packed image that never modify it, and all of it for an ordinary user.

use crate::run_support;

use run_support::{build_image, build_root, config, d2v, d2v_run, finish, one_boot, probe_image};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn large_env_and_args_and_the_hosts_clock() {
    require_facilities!();
    let img = probe_image();
    let big = format!("BIG={}", "x".repeat(64 << 10));
    let args: Vec<String> = (0..10_000).map(|i| format!("arg{i}")).collect();
    let _one = one_boot();
    let mut child = d2v()
        .args(["run", "-e", &big, "--image"])
        .arg(&img.path)
        .arg("--")
        .arg("args")
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut summary = String::new();
    let mut skew = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(d) = line.strip_prefix("probe: date ") {
            skew = Some(d.parse::<f64>().unwrap() - now());
        } else if line.starts_with("probe: argc=") {
            summary = line;
        }
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(summary.starts_with("probe: argc=10001 "), "{summary}");
    assert!(
        summary.contains(" big=65536 ") && summary.ends_with(" last=arg9999"),
        "{summary}"
    );
    let skew = skew.expect("no date line");
    assert!(
        skew.abs() < 2.0,
        "guest clock is {skew:.3} s off the host's"
    );
}

#[test]
fn outbound_dns_and_http_reach_the_debian_mirror() {
    require_facilities!();
    let img = probe_image();
    let r = d2v_run(
        &img.path,
        &[
            "--user",
            "root",
            "--entrypoint",
            "/bin/sh",
            "--",
            "-c",
            "cat /etc/resolv.conf; nslookup deb.debian.org >/dev/null && echo dns-ok; \
             wget -q -O /tmp/r http://deb.debian.org/debian/dists/bookworm/Release && head -c 7 /tmp/r",
        ],
    );
    assert_eq!(
        r.out(),
        "nameserver 10.0.2.3\ndns-ok\nOrigin:",
        "{}",
        r.stderr
    );
    assert_eq!(r.code, Some(0));
    let r = d2v_run(
        &img.path,
        &[
            "--network",
            "none",
            "--entrypoint",
            "/bin/sh",
            "--",
            "-c",
            "ls /sys/class/net",
        ],
    );
    assert_eq!(r.out(), "lo\n");
}

#[test]
fn volumes_are_shared_read_write_or_read_only_and_the_disk_grows() {
    require_facilities!();
    let img = probe_image();
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(rw.path().join("in.txt"), "from host\n").unwrap();
    std::fs::write(ro.path().join("ro.txt"), "read only\n").unwrap();
    let r = d2v_run(
        &img.path,
        &[
            "-v",
            &format!("{}:/data", rw.path().display()),
            "-v",
            &format!("{}:/ro:ro", ro.path().display()),
            "--disk-size",
            "512M",
            "--user",
            "root",
            "--entrypoint",
            "/bin/sh",
            "--",
            "-c",
            "cat /data/in.txt /ro/ro.txt; echo from guest > /data/out.txt; \
             echo x > /ro/no 2>/dev/null || echo ro-refused; \
             df -k / | tail -1 | while read fs size rest; do [ $size -gt 400000 ] && echo grown; done",
        ],
    );
    assert_eq!(
        r.out(),
        "from host\nread only\nro-refused\ngrown\n",
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out.txt")).unwrap(),
        "from guest\n"
    );
    assert!(!ro.path().join("no").exists());
}

#[test]
fn a_named_run_keeps_its_disk_until_removed_and_the_image_is_never_written() {
    require_facilities!();
    let img = probe_image();
    let before = std::fs::read(&img.path).unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = |script: &str, extra: &[&str]| {
        let _one = one_boot();
        let out = d2v()
            .env("D2V_HOME", home.path())
            .args(["run", "--name", "keep", "--user", "root"])
            .args(extra)
            .arg("--image")
            .arg(&img.path)
            .args(["--entrypoint", "/bin/sh", "--", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        finish(out)
    };
    assert_eq!(
        run("echo kept > /kept; echo written", &[]).out(),
        "written\n"
    );
    assert_eq!(run("cat /kept", &["--rm"]).out(), "kept\n");
    assert!(!home.path().join("d2v/containers/keep").exists());
    assert!(
        std::fs::read(&img.path).unwrap() == before,
        "the packed image changed"
    );
}

/// A store image with EXPOSEd ports, built from a Dockerfile by d2v.
fn build_web_image(home: &Path) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    build_root(&ctx.path().join("root"), "{}", &[]);
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY root/ /\nEXPOSE 8080 8081/tcp\nSTOPSIGNAL SIGTERM\n\
         ENTRYPOINT [\"/bin/httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    let st = d2v()
        .env("D2V_HOME", home)
        .args(["build", "-t", "web", "--progress", "plain"])
        .arg(ctx.path())
        .status()
        .unwrap();
    assert!(st.success());
    ctx
}

fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut response = String::new();
            let _ = s.read_to_string(&mut response);
            if response.starts_with("HTTP/1.") {
                return response;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no HTTP answer on port {port}");
}

#[test]
fn store_images_publish_ports_pack_once_and_run_concurrently() {
    require_facilities!();
    let home = tempfile::tempdir().unwrap();
    let _ctx = build_web_image(home.path());
    let _one = one_boot();
    // -P and -p: every EXPOSEd port on a free host port, printed like `docker port`.
    let mut child = d2v()
        .env("D2V_HOME", home.path())
        .args(["run", "-P", "-p", "127.0.0.1::8080", "web"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    let mut line = String::new();
    while lines.len() < 3 && err.read_line(&mut line).unwrap() > 0 {
        if line.contains(" -> ") {
            lines.push(line.trim().to_string());
        }
        line.clear();
    }
    let port_of = |prefix: &str| -> u16 {
        let l = lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{lines:?}"));
        l.rsplit(':').next().unwrap().parse().unwrap()
    };
    let response = http_get(port_of("8080/tcp -> 127.0.0.1:"));
    assert!(response.contains("hello from d2v"), "{response}");
    let response = http_get(port_of("8080/tcp -> 0.0.0.0:"));
    assert!(response.contains("hello from d2v"), "{response}");
    assert!(
        lines.iter().any(|l| l.starts_with("8081/tcp -> 0.0.0.0:")),
        "{lines:?}"
    );
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    let _ = err.read_to_string(&mut rest);
    assert_eq!(
        child.wait().unwrap().code(),
        Some(143),
        "httpd dies of SIGTERM: {rest}"
    );

    // Two runs of the same image at once; neither packs again, neither
    // changes the pack.
    let pack = home.path().join("d2v/packs/web.ext4");
    let mtime = std::fs::metadata(&pack).unwrap().modified().unwrap();
    let spawn = |n: &str| {
        d2v()
            .env("D2V_HOME", home.path())
            .args(["run", "--entrypoint", "/bin/sh", "web", "--", "-c"])
            .arg(format!("echo {n} > /mine; sleep 1; cat /mine"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("one"), spawn("two"));
    let (a, b) = (
        finish(a.wait_with_output().unwrap()),
        finish(b.wait_with_output().unwrap()),
    );
    assert_eq!((a.out().as_str(), a.code), ("one\n", Some(0)));
    assert_eq!((b.out().as_str(), b.code), ("two\n", Some(0)));
    assert!(
        !a.stderr.contains("packed") && !b.stderr.contains("packed"),
        "{}{}",
        a.stderr,
        b.stderr
    );
    assert_eq!(std::fs::metadata(&pack).unwrap().modified().unwrap(), mtime);
}

#[test]
fn an_ordinary_user_runs_images_under_tcg() {
    require_facilities!("useradd", "runuser");
    let user = "d2vtester";
    if Command::new("id")
        .arg(user)
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        let st = Command::new("useradd").args(["-m", user]).status().unwrap();
        assert!(st.success(), "useradd {user}");
    }
    let img = build_image(&config(|c| c.entrypoint = vec!["/bin/id".into()]), &[]);
    let home = tempfile::tempdir().unwrap();
    std::fs::copy(&img.path, home.path().join("rootfs.ext4")).unwrap();
    let st = Command::new("chown")
        .args(["-R", user])
        .arg(home.path())
        .status()
        .unwrap();
    assert!(st.success());
    let _one = one_boot();
    let out = Command::new("runuser")
        .args(["-u", user, "--", "env"])
        .arg(format!("D2V_HOME={}", home.path().display()))
        .arg(format!("HOME={}", home.path().display()))
        .arg(env!("CARGO_BIN_EXE_d2v"))
        .args(["run", "--image"])
        .arg(home.path().join("rootfs.ext4"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let r = finish(out);
    assert_eq!(
        r.out(),
        "uid=0(root) gid=0(root) groups=0(root),10(wheel)\n"
    );
    assert_eq!(r.code, Some(0));
}
