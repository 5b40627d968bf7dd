//! A throwaway Debian `docker-registry` (distribution 2.8) on 127.0.0.1: a free
//! port, filesystem storage in a temp dir, optional htpasswd auth; killed on drop.

use super::sh;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct TestRegistry {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Config, storage and log.
    pub dir: tempfile::TempDir,
    /// The htpasswd user and password, when auth is on.
    pub creds: Option<(String, String)>,
    child: Child,
}

impl TestRegistry {
    /// A registry without auth.
    pub fn start() -> TestRegistry {
        TestRegistry::start_with(None)
    }

    /// A registry that wants `user`/`password` (htpasswd, bcrypt).
    pub fn with_htpasswd(user: &str, password: &str) -> TestRegistry {
        TestRegistry::start_with(Some((user.to_string(), password.to_string())))
    }

    fn start_with(creds: Option<(String, String)>) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("d2v-test-registry-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let d = dir.path().display().to_string();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {d}/storage\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n"
        );
        if let Some((user, password)) = &creds {
            sh(&format!(
                "htpasswd -Bbn '{user}' '{password}' > {d}/htpasswd"
            ));
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: d2v-test\n    path: {d}/htpasswd\n"
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = TestRegistry {
            port,
            dir,
            creds,
            child,
        };
        registry.wait_ready();
        registry
    }

    /// Waits until `/v2/` answers (200, or 401 with auth on).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}):\n{}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host());
                let mut reply = String::new();
                let answered =
                    s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut reply).is_ok();
                if answered
                    && (reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.0 401"))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not answer in time:\n{}", self.log());
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// skopeo's credentials flag for `--{side}-creds` (empty without auth).
    fn creds_flag(&self, side: &str) -> String {
        match &self.creds {
            Some((u, p)) => format!("--{side}-creds '{u}:{p}'"),
            None => String::new(),
        }
    }

    /// Copies `src` (a skopeo transport reference such as `oci:DIR:TAG`) to
    /// `REPO:TAG` in this registry; `all` copies every platform of an index.
    pub fn seed(&self, src: &str, repo_tag: &str, all: bool) {
        sh(&format!(
            "skopeo copy -q {} --dest-tls-verify=false {} {src} docker://{}/{repo_tag}",
            if all { "--all" } else { "" },
            self.creds_flag("dest"),
            self.host()
        ));
    }

    /// `skopeo inspect [--raw]` of `REPO:TAG` as JSON.
    pub fn inspect(&self, repo_tag: &str, raw: bool) -> serde_json::Value {
        let out = sh(&format!(
            "skopeo inspect {} --tls-verify=false {} docker://{}/{repo_tag}",
            if raw { "--raw" } else { "" },
            self.creds_flag(""),
            self.host()
        ));
        serde_json::from_str(&out).unwrap()
    }

    /// The file holding blob `digest` in the registry's storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The body of `GET /v2/PATH` (plain HTTP; no auth), with curl.
    pub fn get(&self, path: &str, out: &Path) {
        sh(&format!(
            "curl -fsS -o {} http://{}/v2/{path}",
            out.display(),
            self.host()
        ));
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
