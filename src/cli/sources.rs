//! Options shared by the commands that look images up (`build`, `pull`, `mount`,
//! `pack`, `run`), and the [`Resolver`] they configure.

use anyhow::{anyhow, Result};
use clap::Args;
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
        let resolver = Resolver::new(store, self.order()?);
        Ok(resolver)
    }
}
