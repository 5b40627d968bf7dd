//! The daemon as an [`ImageSource`]: `FROM app:1` finds an image that only the
//! local Docker (or Podman) daemon holds.

use super::{Daemon, DaemonError};
use crate::source::{ImageSource, SourceError, SourceKind};
use crate::store::{Image, Store};
use std::sync::OnceLock;

/// Looks images up in the daemon at `host`, connecting on first use. A daemon
/// that is not reachable is a source without images, not an error.
#[derive(Debug)]
pub struct DaemonSource {
    host: String,
    daemon: OnceLock<Option<Daemon>>,
}

impl DaemonSource {
    /// A source for the daemon at `host` (see [`Daemon::connect`]).
    pub fn new(host: impl Into<String>) -> DaemonSource {
        DaemonSource {
            host: host.into(),
            daemon: OnceLock::new(),
        }
    }

    /// The connected daemon, or `None` when it is not reachable (tried once).
    pub fn daemon(&self) -> Option<&Daemon> {
        self.daemon
            .get_or_init(|| match Daemon::connect(&self.host) {
                Ok(d) => Some(d),
                Err(DaemonError::Unreachable { .. }) => None,
                Err(e) => {
                    eprintln!("d2v: warning: the daemon image source is off: {e}");
                    None
                }
            })
            .as_ref()
    }
}

impl ImageSource for DaemonSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Daemon
    }

    fn fetch(
        &self,
        store: &Store,
        reference: &str,
        names: &[String],
    ) -> Result<Option<Image>, SourceError> {
        let Some(daemon) = self.daemon() else {
            return Ok(None);
        };
        Ok(daemon.fetch(store, reference, names)?)
    }
}
