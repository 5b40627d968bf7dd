//! A registry that lies: a small HTTP server written here (Python, on
//! 127.0.0.1) that serves manifests declaring absurd sizes, blobs that never
//! end, blobs shorter than declared, manifests larger than any registry
//! accepts and blobs that are not what their digest names. `d2v pull` must
//! stop early with a clear error, never crash, never fill the disk, and leave
//! nothing named.

use crate::harness;

use d2v::store::oci::Digest;
use harness::{fixture, require_root_and, sh, D2v};
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The server: `routes.json` maps a request path to what is sent back;
/// every response appends `{"path", "sent", "complete"}` to `stats.jsonl`.
const SERVER: &str = r#"
import http.server, json, socketserver, sys
routes = json.load(open(sys.argv[1]))
stats = sys.argv[2]

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.serve(head=True)

    def do_GET(self):
        self.serve(head=False)

    def serve(self, head):
        path = self.path.split("?")[0]
        if "__bearer__" in routes:
            token = routes["__bearer__"]
            if path == "/token":
                body = json.dumps({"token": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if self.headers.get("Authorization") != "Bearer " + token:
                realm = "http://127.0.0.1:%d/token" % self.server.server_address[1]
                self.send_response(401)
                self.send_header("WWW-Authenticate",
                                 'Bearer realm="%s",service="lying"' % realm)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        route = routes.get(path)
        if path in ("/v2", "/v2/"):
            route = {"text": "{}", "type": "application/json"}
        if route is None:
            route = {"status": 404, "type": "application/json",
                     "text": '{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}'}
        sent, complete = 0, False
        try:
            self.send_response(route.get("status", 200))
            self.send_header("Content-Type", route.get("type", "application/octet-stream"))
            if "zeros" in route:
                if "length" in route:
                    self.send_header("Content-Length", str(route["length"]))
                self.end_headers()
                if not head:
                    chunk, left = bytes(1 << 16), route["zeros"]
                    while left > 0:
                        n = min(left, len(chunk))
                        self.wfile.write(chunk[:n])
                        sent += n
                        left -= n
            else:
                body = open(route["file"], "rb").read() if "file" in route else route["text"].encode()
                if route.get("length", True):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)
                    sent = len(body)
            complete = True
        except (BrokenPipeError, ConnectionResetError):
            pass
        with open(stats, "a") as f:
            f.write(json.dumps({"path": path, "sent": sent, "complete": complete}) + "\n")

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A running lying registry; killed on drop.
struct LyingRegistry {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl LyingRegistry {
    fn start(routes: &Value) -> LyingRegistry {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.py"), SERVER).unwrap();
        std::fs::write(dir.path().join("routes.json"), routes.to_string()).unwrap();
        let mut child = Command::new("python3")
            .arg(dir.path().join("server.py"))
            .arg(dir.path().join("routes.json"))
            .arg(dir.path().join("stats.jsonl"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        LyingRegistry { port, dir, child }
    }

    fn reference(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{repo}:latest", self.port)
    }

    /// Bytes sent for `path` over all requests, and whether every response
    /// was sent whole.
    fn sent(&self, path: &str) -> (u64, bool) {
        let text = std::fs::read_to_string(self.dir.path().join("stats.jsonl")).unwrap_or_default();
        let mut total = 0;
        let mut complete = true;
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["path"] == path {
                total += v["sent"].as_u64().unwrap();
                complete &= v["complete"].as_bool().unwrap();
            }
        }
        (total, complete)
    }
}

impl Drop for LyingRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The busybox fixture's config and layer: (config path, config descriptor, layer path, layer descriptor).
fn busybox() -> (PathBuf, Value, PathBuf, Value) {
    let dir = PathBuf::from(fixture("busybox-oci"));
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let config = manifest["config"].clone();
    let layer = manifest["layers"][0].clone();
    (
        blob(config["digest"].as_str().unwrap()),
        config,
        blob(layer["digest"].as_str().unwrap()),
        layer,
    )
}

fn manifest(config: &Value, layers: &[Value]) -> String {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    })
    .to_string()
}

fn manifest_route(body: &str) -> Value {
    json!({ "text": body, "type": "application/vnd.oci.image.manifest.v1+json" })
}

fn blob_path(desc: &Value) -> String {
    format!("/v2/lie/blobs/{}", desc["digest"].as_str().unwrap())
}

/// Runs `d2v pull` and waits at most `secs`; a d2v that is still running
/// then (reading for ever, filling the disk) is killed and the test fails.
fn pull_within(d2v: &D2v, reference: &str, secs: u64) -> Output {
    let mut child = d2v
        .cmd()
        .args(["pull", reference])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "d2v pull {reference} still running after {secs}s:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Asserts the pull failed as an error (exit 1, not a signal or a panic),
/// with `needle` in its message, and named nothing; returns the message.
fn refused(d2v: &D2v, out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    let images = d2v.ok(&["images", "--json"]);
    assert_eq!(images.trim(), "[]", "a failed pull names nothing");
    err
}

/// The blobs the store holds.
fn blob_count(home: &Path) -> usize {
    std::fs::read_dir(home.join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn absurd_config_sizes_are_refused_before_anything_is_fetched() {
    if !require_root_and(&["python3"]) {
        return;
    }
    let (_, config, _, layer) = busybox();
    for size in [1u64 << 40, 1 << 62, u64::MAX] {
        let mut lie = config.clone();
        lie["size"] = json!(size);
        let registry = LyingRegistry::start(&json!({
            "/v2/lie/manifests/latest": manifest_route(&manifest(&lie, std::slice::from_ref(&layer))),
        }));
        let d2v = D2v::new();
        let out = pull_within(&d2v, &registry.reference("lie"), 30);
        refused(&d2v, &out, &format!("declares a config of {size} bytes"));
        assert_eq!(
            registry.sent(&blob_path(&config)).0,
            0,
            "the config was never asked for"
        );
    }
}

#[test]
fn a_blob_that_never_ends_is_cut_one_byte_past_its_declared_size() {
    if !require_root_and(&["python3"]) {
        return;
    }
    let (config_file, config, _, layer) = busybox();
    let mut lie = layer.clone();
    lie["size"] = json!(1024);
    let stream = 256u64 << 20;
    let registry = LyingRegistry::start(&json!({
        "/v2/lie/manifests/latest": manifest_route(&manifest(&config, &[lie.clone()])),
        blob_path(&config): { "file": config_file },
        blob_path(&layer): { "zeros": stream },
    }));
    let d2v = D2v::new();
    let out = pull_within(&d2v, &registry.reference("lie"), 60);
    refused(&d2v, &out, "more than the declared 1024 bytes arrived");
    let (sent, complete) = registry.sent(&blob_path(&layer));
    assert!(
        !complete && sent < stream / 4,
        "d2v read on: {sent} of {stream} bytes sent"
    );
    assert_eq!(blob_count(d2v.home()), 0, "{:?}", d2v.home());
}

#[test]
fn a_full_disk_ends_the_transfer_at_once() {
    if !require_root_and(&["python3", "mount", "umount"]) {
        return;
    }
    let (config_file, config, _, layer) = busybox();
    let mut lie = layer.clone();
    lie["size"] = json!(1u64 << 40);
    let stream = 1u64 << 30;
    let registry = LyingRegistry::start(&json!({
        "/v2/lie/manifests/latest": manifest_route(&manifest(&config, &[lie])),
        blob_path(&config): { "file": config_file },
        blob_path(&layer): { "zeros": stream },
    }));
    // A store on a 16 MiB tmpfs.
    let d2v = D2v::new();
    let home = d2v.home().display().to_string();
    sh(&format!("mount -t tmpfs -o size=16m d2v-test {home}"));
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(home.clone());
    let out = pull_within(&d2v, &registry.reference("lie"), 60);
    refused(&d2v, &out, "No space left on device");
    let (sent, complete) = registry.sent(&blob_path(&layer));
    assert!(
        !complete && sent < 256 << 20,
        "d2v drained the stream after ENOSPC: {sent} of {stream} bytes sent"
    );
    let scratch = std::fs::read_dir(d2v.home().join("d2v/tmp"))
        .unwrap()
        .count();
    assert_eq!(scratch, 0, "the partial blob is gone");
}

#[test]
fn a_blob_shorter_than_declared_is_refused_even_when_its_digest_matches() {
    if !require_root_and(&["python3"]) {
        return;
    }
    let (config_file, config, layer_file, layer) = busybox();
    let mut lie = layer.clone();
    lie["size"] = json!(10u64 << 30);
    let registry = LyingRegistry::start(&json!({
        "/v2/lie/manifests/latest": manifest_route(&manifest(&config, &[lie])),
        blob_path(&config): { "file": config_file },
        blob_path(&layer): { "file": layer_file },
    }));
    let d2v = D2v::new();
    let out = pull_within(&d2v, &registry.reference("lie"), 60);
    let real = layer["size"].as_u64().unwrap();
    refused(
        &d2v,
        &out,
        &format!("{real} bytes arrived, {} were declared", 10u64 << 30),
    );
    assert_eq!(blob_count(d2v.home()), 0, "no decompressed layer is left");
}

#[test]
fn manifests_over_four_mib_are_refused_with_or_without_a_length() {
    if !require_root_and(&["python3"]) {
        return;
    }
    let (_, config, _, layer) = busybox();
    // Valid JSON (white space is), one byte over the limit.
    let mut body = manifest(&config, &[layer]);
    body.push_str(&" ".repeat((4 << 20) + 1 - body.len()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.json");
    std::fs::write(&file, &body).unwrap();
    let registry = LyingRegistry::start(&json!({
        "/v2/sized/manifests/latest": {
            "file": file, "type": "application/vnd.oci.image.manifest.v1+json" },
        "/v2/chunked/manifests/latest": {
            "file": file, "length": false, "type": "application/vnd.oci.image.manifest.v1+json" },
    }));
    let d2v = D2v::new();
    let out = pull_within(&d2v, &registry.reference("sized"), 30);
    refused(
        &d2v,
        &out,
        "offers a manifest of 4194305 bytes; at most 4194304",
    );
    let out = pull_within(&d2v, &registry.reference("chunked"), 30);
    refused(&d2v, &out, "a manifest of more than 4194304 bytes");
}

#[test]
fn a_digest_mismatch_shows_the_digest_of_what_arrived() {
    if !require_root_and(&["python3"]) {
        return;
    }
    let (config_file, config, _, layer) = busybox();
    // The config's bytes served where the layer should be.
    let served = std::fs::read(&config_file).unwrap();
    let mut lie = layer.clone();
    lie["size"] = json!(served.len());
    let registry = LyingRegistry::start(&json!({
        "/v2/lie/manifests/latest": manifest_route(&manifest(&config, &[lie])),
        blob_path(&config): { "file": config_file },
        blob_path(&layer): { "file": config_file },
    }));
    let d2v = D2v::new();
    let out = pull_within(&d2v, &registry.reference("lie"), 60);
    let err = refused(&d2v, &out, Digest::of(&served).as_str());
    let empty = Digest::of(b"");
    assert!(!err.contains(empty.as_str()), "{err}");
    assert!(err.contains(layer["digest"].as_str().unwrap()), "{err}");
}

#[test]
fn a_registry_with_token_auth_is_pulled_from() {
    if !require_root_and(&["python3"]) {
        return;
    }
    let (config_file, config, layer_file, layer) = busybox();
    let registry = LyingRegistry::start(&json!({
        "__bearer__": "sekrit",
        "/v2/lie/manifests/latest": manifest_route(&manifest(&config, std::slice::from_ref(&layer))),
        blob_path(&config): { "file": config_file },
        blob_path(&layer): { "file": layer_file },
    }));
    let d2v = D2v::new();
    let out = pull_within(&d2v, &registry.reference("lie"), 60);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d2v.ok(&["images"]).contains("lie"));
}
