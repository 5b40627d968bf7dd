//! Registry credentials: `--registry-auth [REGISTRY=]USER:PASS` and the `auths`
//! of Docker's `config.json`.

use super::{RegistryError, Result};
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One `--registry-auth` value: credentials for one registry, or for every
/// registry when `registry` is `None`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthEntry {
    /// The registry host (`ghcr.io`, `127.0.0.1:5000`), or `None` for all.
    pub registry: Option<String>,
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEntry")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Whether `s` looks like a registry host: `localhost`, a name with a dot, an
/// IP address, any of them with a numeric `:port`.
fn is_registry_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, Some(p)),
        _ => (s, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    host == "localhost"
        || host.contains('.')
        || host.starts_with('[')
        || host.parse::<std::net::IpAddr>().is_ok()
}

impl FromStr for AuthEntry {
    type Err = String;

    /// Parses `USER:PASS` or `REGISTRY=USER:PASS`.
    fn from_str(s: &str) -> Result<AuthEntry, String> {
        let (registry, creds) = match s.split_once('=') {
            Some((host, rest)) if is_registry_host(host) => (Some(normalize_host(host)), rest),
            _ => (None, s),
        };
        let (user, pass) = creds
            .split_once(':')
            .filter(|(u, _)| !u.is_empty())
            .ok_or_else(|| "expected [REGISTRY=]USER:PASS".to_string())?;
        Ok(AuthEntry {
            registry,
            username: user.to_string(),
            password: pass.to_string(),
        })
    }
}

/// The key credentials are filed under: the host without scheme or path, with
/// Docker Hub's several names folded into `docker.io`.
pub(crate) fn normalize_host(s: &str) -> String {
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        h => h.to_string(),
    }
}

/// The credentials d2v knows, by registry.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    explicit: Vec<AuthEntry>,
    docker: BTreeMap<String, (String, String)>,
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(serde::Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Credentials {
    /// `explicit` (from `--registry-auth`) plus the Docker config file's `auths`
    /// when there is one ([`Credentials::docker_config_path`]).
    pub fn load(explicit: Vec<AuthEntry>) -> Result<Credentials> {
        let mut creds = Credentials {
            explicit,
            docker: BTreeMap::new(),
        };
        if let Some(path) = Credentials::docker_config_path().filter(|p| p.is_file()) {
            creds.docker = read_docker_config(&path)?;
        }
        Ok(creds)
    }

    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn docker_config_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
        Some(PathBuf::from(home).join(".docker/config.json"))
    }

    /// The credentials for `registry` (a host as in a reference): an explicit
    /// entry for that registry, else an explicit entry for all, else the Docker
    /// config's, else anonymous.
    pub(crate) fn for_registry(&self, registry: &str) -> RegistryAuth {
        let key = normalize_host(registry);
        let explicit = self
            .explicit
            .iter()
            .find(|e| e.registry.as_deref() == Some(key.as_str()))
            .or_else(|| self.explicit.iter().find(|e| e.registry.is_none()));
        if let Some(e) = explicit {
            return RegistryAuth::Basic(e.username.clone(), e.password.clone());
        }
        match self.docker.get(&key) {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

fn read_docker_config(path: &Path) -> Result<BTreeMap<String, (String, String)>> {
    let bad = |why: String| RegistryError::Config(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let config: DockerConfig =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let mut out = BTreeMap::new();
    for (host, entry) in config.auths {
        let pair = match (entry.auth, entry.username, entry.password) {
            (Some(auth), _, _) if !auth.is_empty() => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| bad(format!("auths.{host}.auth is not base64: {e}")))?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| bad(format!("auths.{host}.auth is not UTF-8")))?;
                let (u, p) = text
                    .split_once(':')
                    .ok_or_else(|| bad(format!("auths.{host}.auth is not USER:PASS")))?;
                (u.to_string(), p.to_string())
            }
            (_, Some(u), Some(p)) => (u, p),
            // An entry kept by a credential helper: nothing here to use.
            _ => continue,
        };
        out.insert(normalize_host(&host), pair);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auth_entries() {
        let e: AuthEntry = "alice:s3cret:x".parse().unwrap();
        assert_eq!(e.registry, None);
        assert_eq!(
            (e.username.as_str(), e.password.as_str()),
            ("alice", "s3cret:x")
        );
        let e: AuthEntry = "127.0.0.1:5000=bob:pw=1".parse().unwrap();
        assert_eq!(e.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!((e.username.as_str(), e.password.as_str()), ("bob", "pw=1"));
        let e: AuthEntry = "ghcr.io=bob:pw".parse().unwrap();
        assert_eq!(e.registry.as_deref(), Some("ghcr.io"));
        // A user name with `=` is not a registry.
        let e: AuthEntry = "team=dev:pw".parse().unwrap();
        assert_eq!(
            (e.registry.as_deref(), e.username.as_str()),
            (None, "team=dev")
        );
        assert!("nopassword".parse::<AuthEntry>().is_err());
        assert!(":pw".parse::<AuthEntry>().is_err());
        assert!(!format!("{e:?}").contains("pw"));
    }

    #[test]
    fn reads_docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("u1:p1");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{b64}"}},
                   "localhost:5000":{{"username":"u2","password":"p2"}},
                   "ghcr.io":{{}}}},"credsStore":"desktop"}}"#
            ),
        )
        .unwrap();
        let creds = Credentials {
            explicit: vec!["localhost:5000=x:y".parse().unwrap()],
            docker: read_docker_config(&path).unwrap(),
        };
        assert_eq!(
            creds.for_registry("index.docker.io"),
            RegistryAuth::Basic("u1".into(), "p1".into())
        );
        assert_eq!(
            creds.for_registry("localhost:5000"),
            RegistryAuth::Basic("x".into(), "y".into())
        );
        assert_eq!(creds.for_registry("ghcr.io"), RegistryAuth::Anonymous);
        std::fs::write(&path, "{not json").unwrap();
        assert!(read_docker_config(&path).is_err());
    }
}
