//! The [`Registry`] handle: options, the runtime, one configured client per
//! reference, error classification and retries.

use super::auth::{normalize_host, AuthEntry, Credentials};
use super::{RegistryError, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::future::Future;
use std::time::Duration;

/// How many blobs move at once in one pull or push.
pub const DEFAULT_JOBS: usize = 4;

/// How often a transient failure is tried in all.
const ATTEMPTS: u32 = 3;

/// What a [`Registry`] is configured with.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// `--registry-auth` values; the Docker config's `auths` are used besides.
    pub auth: Vec<AuthEntry>,
    /// `--insecure-registry HOST:PORT` values: registries spoken to in plain
    /// HTTP besides the loopback ones.
    pub insecure: Vec<String>,
    /// Blobs transferred at once (0: [`DEFAULT_JOBS`]).
    pub jobs: usize,
    /// No progress on stderr.
    pub quiet: bool,
}

/// A handle for talking to registries: credentials, connection rules and the
/// async runtime behind the blocking functions.
pub struct Registry {
    pub(super) options: RegistryOptions,
    credentials: Credentials,
    /// The plain HTTP client for manifests (see `manifest.rs`); one per handle.
    http: reqwest::Client,
    pub(super) runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Whether `registry` (`host[:port]`) is a loopback address, which Docker
/// talks to in plain HTTP without being told: `localhost`, 127.0.0.0/8, `::1`.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One reference, with the client and credentials to reach it.
#[derive(Clone)]
pub(super) struct Target {
    /// The reference as the user wrote it (for messages).
    pub name: String,
    pub reference: Reference,
    pub client: Client,
    pub auth: RegistryAuth,
    /// A plain HTTP client for the requests `client` cannot bound (manifests).
    pub http: reqwest::Client,
    /// Whether the registry is spoken to in plain HTTP.
    pub plain_http: bool,
}

impl Target {
    /// `registry/repository`, as compressed-form records name where a blob is.
    pub fn repository(&self) -> String {
        format!(
            "{}/{}",
            self.reference.registry(),
            self.reference.repository()
        )
    }
}

impl Registry {
    /// A registry handle; reads the Docker config file's credentials.
    pub fn new(options: RegistryOptions) -> Result<Registry> {
        // reqwest is built without a default crypto provider (see Cargo.toml):
        // install ring's, unless the process has one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credentials = Credentials::load(options.auth.clone())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("d2v-registry")
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot start the async runtime: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("d2v/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Registry {
            options,
            credentials,
            http,
            runtime,
        })
    }

    /// Blobs transferred at once.
    pub(super) fn jobs(&self) -> usize {
        if self.options.jobs == 0 {
            DEFAULT_JOBS
        } else {
            self.options.jobs
        }
    }

    /// Whether `registry` is spoken to in plain HTTP.
    fn plain_http(&self, registry: &str) -> bool {
        is_loopback(registry)
            || self
                .options
                .insecure
                .iter()
                .any(|h| normalize_host(h) == normalize_host(registry))
    }

    /// Parses `reference` and sets up a client for its registry.
    pub(super) fn target(&self, name: &str) -> Result<Target> {
        let reference: Reference =
            crate::source::reference::parse(name).map_err(RegistryError::Reference)?;
        let registry = reference.resolve_registry().to_string();
        let plain_http = self.plain_http(&registry);
        let protocol = if plain_http {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            // Blobs are streamed from files with a known size: one PUT each.
            use_monolithic_push: true,
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(20)),
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("d2v/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client =
            Client::try_from(config).map_err(|e| client_error(name, "set up client", e))?;
        let http = self.http.clone();
        let auth = self.credentials.for_registry(reference.registry());
        Ok(Target {
            name: name.to_string(),
            reference,
            client,
            auth,
            http,
            plain_http,
        })
    }

    /// Runs `future` to completion on the registry runtime.
    pub(super) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// Classifies a client error: refusals, missing content and digest failures
/// get their own variants, the rest is [`RegistryError::Client`].
pub(super) fn client_error(
    reference: &str,
    context: &str,
    e: OciDistributionError,
) -> RegistryError {
    let registry = reference
        .parse::<Reference>()
        .map(|r| r.registry().to_string())
        .unwrap_or_default();
    let unauthorized = |message: String| RegistryError::Unauthorized {
        reference: reference.to_string(),
        registry: registry.clone(),
        message,
    };
    match e {
        OciDistributionError::UnauthorizedError { url } => {
            unauthorized(format!("401 Unauthorized from {url}"))
        }
        OciDistributionError::AuthenticationFailure(m) => unauthorized(m),
        OciDistributionError::RequestError(e)
            if matches!(e.status().map(|s| s.as_u16()), Some(401 | 403)) =>
        {
            unauthorized(e.to_string())
        }
        OciDistributionError::ServerError { code, message, url } if code == 401 || code == 403 => {
            unauthorized(format!("{code} from {url}: {}", message.trim()))
        }
        OciDistributionError::RegistryError { envelope, url } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let message = format!("{envelope} ({url})");
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized(message)
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                RegistryError::NotFound {
                    reference: reference.to_string(),
                    message,
                }
            } else {
                RegistryError::Client {
                    reference: reference.to_string(),
                    context: context.to_string(),
                    error: OciDistributionError::RegistryError { envelope, url },
                }
            }
        }
        OciDistributionError::ServerError {
            code: 404,
            message,
            url,
        } => RegistryError::NotFound {
            reference: reference.to_string(),
            message: format!("404 from {url}: {}", message.trim()),
        },
        OciDistributionError::ImageManifestNotFoundError(message) => RegistryError::NotFound {
            reference: reference.to_string(),
            message,
        },
        OciDistributionError::DigestError(d) => RegistryError::Verification {
            reference: reference.to_string(),
            what: "content",
            digest: String::new(),
            message: d.to_string(),
        },
        error => RegistryError::Client {
            reference: reference.to_string(),
            context: context.to_string(),
            error,
        },
    }
}

/// Runs `attempt` until it succeeds, fails for good, or has failed
/// [`ATTEMPTS`] times; transient failures are reported on stderr and retried
/// after a growing pause. `what` names the thing moved (`manifest`, `blob X`).
pub(super) async fn retry<T, F, Fut>(what: &str, quiet: bool, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut pause = Duration::from_millis(500);
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if tries < ATTEMPTS && e.is_transient() => {
                if !quiet {
                    eprintln!(
                        "retrying the {what} in {:.1}s after: {e}",
                        pause.as_secs_f64()
                    );
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
                tries += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.0.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "docker.io",
            "index.docker.io",
            "10.0.0.1:5000",
            "localhost.example:1",
            "[fe80::1]:5000",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
        let reg = Registry::new(RegistryOptions {
            insecure: vec!["build.internal:5000".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(reg.plain_http("build.internal:5000"));
        assert!(!reg.plain_http("build.internal:5001"));
        assert!(!reg.plain_http("ghcr.io"));
    }
}
