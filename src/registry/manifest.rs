//! Manifests and configs from a registry: fetched with a size cap, parsed
//! without trusting a single field.
//!
//! `oci_client` reads a manifest response whole, however large; the
//! distribution registry refuses manifests over 4 MiB, and so does d2v:
//! manifests are fetched here with our own request (the client still does
//! the token dance), refused early when `Content-Length` is over the cap, and
//! cut off one byte past it when it is not. Configs are capped the same way
//! before a byte is fetched, and no buffer is sized by a declared size.

use super::client::{client_error, Target};
use super::{RegistryError, Result};
use crate::store::oci::{Digest, Index, Manifest, MAX_DOCUMENT_SIZE};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};

/// What a manifest endpoint returned, parsed.
#[derive(Debug)]
pub(super) enum Document {
    /// An OCI image index or a Docker manifest list.
    Index(Index),
    /// An image manifest.
    Manifest(Box<Manifest>),
}

/// Parses a manifest endpoint's body: an index (by media type, or by a
/// `manifests` field when there is none) or an image manifest. Never panics,
/// whatever the bytes (fuzzed below).
pub(super) fn parse_document(bytes: &[u8]) -> Result<Document, String> {
    use crate::store::oci::{MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_INDEX};
    if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
        return Err(format!("larger than {MAX_DOCUMENT_SIZE} bytes"));
    }
    let body: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let media_type = body.get("mediaType").and_then(|t| t.as_str());
    let is_index = match media_type {
        Some(t) => t == MEDIA_TYPE_INDEX || t == MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        None => body.get("manifests").is_some(),
    };
    if is_index {
        let index: Index = serde_json::from_value(body).map_err(|e| format!("index: {e}"))?;
        return Ok(Document::Index(index));
    }
    let manifest: Manifest = serde_json::from_value(body).map_err(|e| format!("manifest: {e}"))?;
    if manifest.schema_version != 2 {
        return Err(format!(
            "schemaVersion {}, expected 2",
            manifest.schema_version
        ));
    }
    Ok(Document::Manifest(Box::new(manifest)))
}

/// The error for a response that is not what a registry should send.
fn refused(target: &Target, message: String) -> RegistryError {
    RegistryError::Unsupported {
        reference: target.name.clone(),
        message,
    }
}

/// Fetches the manifest (or index) `reference` names, at most
/// [`MAX_DOCUMENT_SIZE`] bytes; checks the `Docker-Content-Digest` header
/// when the registry sends one. Returns the bytes as sent.
pub(super) async fn fetch_manifest(
    target: &Target,
    reference: &Reference,
    accept: &[&str],
) -> Result<Vec<u8>> {
    let fail = |e: OciDistributionError| client_error(&target.name, "fetch manifest", e);
    let token = target
        .client
        .auth(reference, &target.auth, RegistryOperation::Pull)
        .await
        .map_err(fail)?;
    let url = manifest_url(target, reference);
    let mut request = target.http.get(&url).header("Accept", accept.join(", "));
    request = match (token, &target.auth) {
        (Some(token), _) => request.bearer_auth(token),
        (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
        _ => request,
    };
    let mut response = request
        .send()
        .await
        .map_err(|e| fail(OciDistributionError::RequestError(e)))?;
    let status = response.status();
    if !status.is_success() {
        let message = read_capped(&mut response, 64 << 10)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        return Err(fail(OciDistributionError::ServerError {
            code: status.as_u16(),
            url,
            message: String::from_utf8_lossy(&message).into_owned(),
        }));
    }
    if let Some(len) = response.content_length().filter(|&l| l > MAX_DOCUMENT_SIZE) {
        return Err(refused(
            target,
            format!("the registry offers a manifest of {len} bytes; at most {MAX_DOCUMENT_SIZE} are accepted"),
        ));
    }
    let header_digest = response
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_capped(&mut response, MAX_DOCUMENT_SIZE)
        .await
        .map_err(|e| fail(OciDistributionError::RequestError(e)))?
        .ok_or_else(|| {
            refused(
                target,
                format!("the registry sent a manifest of more than {MAX_DOCUMENT_SIZE} bytes"),
            )
        })?;
    let digest = Digest::of(&bytes);
    if let Some(header) = header_digest.filter(|h| h.starts_with("sha256:")) {
        if header != digest.as_str() {
            return Err(RegistryError::Verification {
                reference: target.name.clone(),
                what: "manifest",
                digest: header,
                message: format!("the registry's Docker-Content-Digest header does not match what it sent ({digest})"),
            });
        }
    }
    Ok(bytes)
}

/// Reads a response body of at most `limit` bytes; `Ok(None)` when it is longer
/// (reading stops as soon as it is).
async fn read_capped(
    response: &mut reqwest::Response,
    limit: u64,
) -> std::result::Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn manifest_url(target: &Target, reference: &Reference) -> String {
    let registry = reference.resolve_registry();
    let scheme = if target.plain_http { "http" } else { "https" };
    let tag_or_digest = reference.digest().or(reference.tag()).unwrap_or("latest");
    let ns = reference
        .namespace()
        .map(|ns| format!("?ns={ns}"))
        .unwrap_or_default();
    format!(
        "{scheme}://{registry}/v2/{}/manifests/{tag_or_digest}{ns}",
        reference.repository()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":18446744073709551615},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":4611686018427387904}]}"#;

    #[test]
    fn documents_parse_by_media_type_or_shape() {
        assert!(matches!(
            parse_document(MANIFEST.as_bytes()),
            Ok(Document::Manifest(_))
        ));
        let index = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_document(index.as_bytes()),
            Ok(Document::Index(_))
        ));
        let v1 = MANIFEST.replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert!(parse_document(v1.as_bytes())
            .unwrap_err()
            .contains("schemaVersion"));
        let deep = "[".repeat(100_000);
        assert!(
            parse_document(deep.as_bytes()).is_err(),
            "deep nesting is an error, not a crash"
        );
        let big = vec![b' '; MAX_DOCUMENT_SIZE as usize + 1];
        assert!(parse_document(&big).unwrap_err().contains("larger"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse_document(&bytes);
        }

        /// A valid manifest with bytes replaced, cut or doubled never panics
        /// the parser, and whatever it accepts has only well-formed digests.
        #[test]
        fn mutated_manifests_parse_or_fail_cleanly(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = MANIFEST.as_bytes().to_vec();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let keep = cut.index(bytes.len() + 1);
            bytes.truncate(keep.max(bytes.len() / 2));
            if let Ok(Document::Manifest(m)) = parse_document(&bytes) {
                for d in m.layers.iter().chain([&m.config]) {
                    prop_assert!(d.digest.as_str().parse::<Digest>().is_ok());
                }
            }
        }
    }
}
