//! Inspecting a daemon's images and importing their exports into the store.

use super::connect::error_message;
use super::{Daemon, DaemonError};
use crate::store::oci::Digest;
use crate::store::{ExternalImage, Image, Store};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::io::Read;
use std::pin::Pin;

impl Daemon {
    /// The daemon's ID of image `reference`, or `None` when it has no such image.
    pub fn image_id(&self, reference: &str) -> Result<Option<String>, DaemonError> {
        match self.runtime.block_on(self.docker.inspect_image(reference)) {
            Ok(inspect) => Ok(Some(inspect.id.unwrap_or_else(|| reference.to_string()))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.api_error(format!("inspecting image {reference:?}"), e)),
        }
    }

    /// Exports image `id_or_ref` (the Engine API's `docker save`) and reads it
    /// into the store's blobs as it streams in.
    pub fn export(&self, store: &Store, id_or_ref: &str) -> Result<ExternalImage, DaemonError> {
        let stream = self.docker.export_image(id_or_ref);
        let reader = StreamReader {
            runtime: &self.runtime,
            stream: Box::pin(stream),
            chunk: Bytes::new(),
        };
        let source_name = format!("docker-daemon:{id_or_ref}");
        let (config, layers) =
            crate::import::docker_archive::read(store, reader, &source_name, None)?;
        Ok(ExternalImage {
            id: Digest::of(&config).to_string(),
            config,
            layers,
        })
    }

    /// Copies image `reference` from the daemon into `store` under each of
    /// `names`; returns the image under the first name, or `None` when the
    /// daemon has no such image.
    pub fn fetch(
        &self,
        store: &Store,
        reference: &str,
        names: &[String],
    ) -> Result<Option<Image>, DaemonError> {
        let Some(id) = self.image_id(reference)? else {
            return Ok(None);
        };
        let exported = self.export(store, &id)?;
        commit_names(store, &exported, names).map(Some)
    }

    /// Like [`Daemon::fetch`], but a missing image is an error.
    pub fn import(
        &self,
        store: &Store,
        reference: &str,
        names: &[String],
    ) -> Result<Image, DaemonError> {
        self.fetch(store, reference, names)?
            .ok_or_else(|| DaemonError::NoSuchImage {
                host: self.host().to_string(),
                reference: reference.to_string(),
            })
    }
}

/// Records `exported` under each of `names`; returns the image under the first.
pub fn commit_names(
    store: &Store,
    exported: &ExternalImage,
    names: &[String],
) -> Result<Image, DaemonError> {
    let mut first = None;
    for name in names {
        let image = store.commit_image(name, &exported.config, &exported.layers)?;
        first.get_or_insert(image);
    }
    first.ok_or_else(|| DaemonError::Io("no name to store the image under".into()))
}

type ByteStream<'a> = Pin<Box<dyn Stream<Item = Result<Bytes, bollard::errors::Error>> + 'a>>;

/// A blocking [`Read`] over a daemon's response body, pulled chunk by chunk
/// on the daemon's runtime.
struct StreamReader<'a> {
    runtime: &'a tokio::runtime::Runtime,
    stream: ByteStream<'a>,
    chunk: Bytes,
}

impl Read for StreamReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(bytes)) => self.chunk = bytes,
                Some(Err(e)) => return Err(std::io::Error::other(error_message(e))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
