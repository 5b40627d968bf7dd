//! Options shared by the commands that look images up (`build`, `pull`, `mount`,
//! `pack`, `run`), and the [`Resolver`] they configure.

use anyhow::{anyhow, Context, Result};
use clap::Args;
use d2v::daemon::DaemonSource;
use d2v::registry::RegistrySource;
use d2v::source::{Resolver, SourceKind, DEFAULT_ORDER};
use d2v::store::Store;

/// Where base images are looked for.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Where to look for images, in order: store, daemon (a Docker-API daemon), registry
    #[arg(
        long = "image-sources",
        env = "D2V_IMAGE_SOURCES",
        value_name = "LIST",
        default_value = DEFAULT_ORDER
    )]
    pub image_sources: String,
    /// Look for a newer image in the daemon and registry before using the store's
    #[arg(long)]
    pub pull: bool,
    /// The Docker-API daemon (Docker, or `podman system service`): unix://PATH or
    /// tcp://HOST:PORT [default: $DOCKER_HOST, else /var/run/docker.sock, else
    /// /run/podman/podman.sock if present]
    #[arg(long = "docker-host", value_name = "URL")]
    pub docker_host: Option<String>,
    /// How registries are reached
    #[command(flatten)]
    pub registry: super::registry::RegistryArgs,
}

impl SourceArgs {
    /// The lookup order these options ask for.
    pub fn order(&self) -> Result<Vec<SourceKind>> {
        let mut order = SourceKind::parse_order(&self.image_sources).map_err(|e| anyhow!(e))?;
        if self.pull {
            order.retain(|k| *k != SourceKind::Store);
            order.push(SourceKind::Store);
        }
        Ok(order)
    }

    /// A resolver over `store` with every configured source.
    pub fn resolver<'a>(&self, store: &'a Store) -> Result<Resolver<'a>> {
        let order = self.order()?;
        let mut resolver = Resolver::new(store, order.clone());
        if order.contains(&SourceKind::Daemon) {
            resolver = resolver.with_source(Box::new(DaemonSource::new(self.docker_host())));
        }
        if order.contains(&SourceKind::Registry) {
            resolver = resolver.with_source(Box::new(RegistrySource::new(self.registry.options())));
        }
        Ok(resolver)
    }

    /// Makes sure the store holds image `name`, fetching it from the daemon or
    /// a registry (in the configured order) when it does not, as `docker run`
    /// pulls a missing image. `--pull` fetches even when the store has it.
    pub fn ensure(&self, store: &Store, name: &str) -> Result<()> {
        if !self.pull && store.image(name).is_ok() {
            return Ok(());
        }
        self.resolver(store)?.image(name).with_context(|| {
            format!("no image named {name:?} in the store, and fetching it failed")
        })?;
        Ok(())
    }

    /// The daemon address to use.
    pub fn docker_host(&self) -> String {
        self.docker_host
            .clone()
            .unwrap_or_else(d2v::daemon::default_host)
    }
}
