//! Finding and connecting to a Docker-API daemon.

use super::DaemonError;
use bollard::Docker;
use std::path::Path;
use std::time::Duration;

/// How long a ping may take before the daemon counts as not available.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The request timeout given to bollard for ordinary calls (seconds). Image
/// exports and builds stream for as long as they take.
const REQUEST_TIMEOUT_SECS: u64 = 3600;

/// Docker's default socket.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Rootful Podman's API socket (`podman.socket`).
pub const PODMAN_SOCKET: &str = "/run/podman/podman.sock";

/// The daemon address to use when none is given: `DOCKER_HOST`, else Docker's
/// socket if it exists, else Podman's if it exists, else Docker's.
pub fn default_host() -> String {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if !host.is_empty() {
            return host;
        }
    }
    for socket in [DOCKER_SOCKET, PODMAN_SOCKET] {
        if Path::new(socket).exists() {
            return format!("unix://{socket}");
        }
    }
    format!("unix://{DOCKER_SOCKET}")
}

/// A connected daemon with its own runtime; every method blocks.
pub struct Daemon {
    pub(super) docker: Docker,
    pub(super) runtime: tokio::runtime::Runtime,
    host: String,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("host", &self.host).finish()
    }
}

impl Daemon {
    /// Connects to `host` (`unix://PATH`, a bare socket path, `tcp://HOST:PORT`
    /// or `http://HOST:PORT`) and pings it; a daemon that does not answer within
    /// [`PING_TIMEOUT`] is [`DaemonError::Unreachable`].
    pub fn connect(host: &str) -> Result<Daemon, DaemonError> {
        let unreachable = |reason: String| DaemonError::Unreachable {
            host: host.to_string(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DaemonError::Io(format!("starting the async runtime: {e}")))?;
        let version = bollard::API_DEFAULT_VERSION;
        let docker = {
            // bollard's connectors need a runtime context to be created in.
            let _guard = runtime.enter();
            if let Some(path) = host
                .strip_prefix("unix://")
                .or_else(|| host.starts_with('/').then_some(host))
            {
                Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version)
            } else if host.starts_with("tcp://") || host.starts_with("http://") {
                Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, version)
            } else {
                return Err(DaemonError::BadHost(host.to_string()));
            }
        }
        .map_err(|e| unreachable(e.to_string()))?;
        runtime
            .block_on(async { tokio::time::timeout(PING_TIMEOUT, docker.ping()).await })
            .map_err(|_| unreachable(format!("no answer within {}s", PING_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(e.to_string()))?;
        // Speak the daemon's API version when it is older than bollard's
        // (Podman 4 speaks 1.41); keep bollard's if the daemon won't say.
        let negotiate = docker.clone().negotiate_version();
        let docker =
            match runtime.block_on(async { tokio::time::timeout(PING_TIMEOUT, negotiate).await }) {
                Ok(Ok(negotiated)) => negotiated,
                _ => docker,
            };
        Ok(Daemon {
            docker,
            runtime,
            host: host.to_string(),
        })
    }

    /// The address this daemon was reached at.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub(super) fn api_error(
        &self,
        what: impl Into<String>,
        e: bollard::errors::Error,
    ) -> DaemonError {
        DaemonError::Api {
            host: self.host.clone(),
            what: what.into(),
            message: error_message(e),
        }
    }
}

/// The daemon's own message when it sent one, else bollard's description.
pub(super) fn error_message(e: bollard::errors::Error) -> String {
    use bollard::errors::Error;
    match e {
        Error::DockerResponseServerError { message, .. } => message.trim().to_string(),
        Error::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unknown_schemes_and_missing_sockets_quickly() {
        assert!(matches!(
            Daemon::connect("ssh://host"),
            Err(DaemonError::BadHost(_))
        ));
        let started = std::time::Instant::now();
        let err = Daemon::connect("unix:///nonexistent/docker.sock").unwrap_err();
        assert!(matches!(err, DaemonError::Unreachable { .. }), "{err}");
        assert!(started.elapsed() < PING_TIMEOUT * 2);
    }
}
