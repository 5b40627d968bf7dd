//! Image references as Docker writes them, and their normalised form.

use oci_spec::distribution::Reference;

/// The normalised form of `reference`: registry, repository and tag or digest
/// spelled out (`alpine` → `docker.io/library/alpine:latest`), or `None` when
/// it is not a valid image reference (store names may be anything).
pub fn normalize(reference: &str) -> Option<String> {
    let parsed: Reference = reference.parse().ok()?;
    Some(parsed.whole())
}

/// The parsed reference, for sources that talk to a registry.
pub fn parse(reference: &str) -> Result<Reference, String> {
    reference
        .parse()
        .map_err(|e| format!("invalid image reference {reference:?}: {e}"))
}

/// The names an image fetched as `reference` is stored under: the reference
/// as written, then its normalised form when that differs.
pub fn store_names(reference: &str) -> Vec<String> {
    let mut names = vec![reference.to_string()];
    if let Some(n) = normalize(reference) {
        if n != reference {
            names.push(n);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        assert_eq!(
            normalize("alpine").as_deref(),
            Some("docker.io/library/alpine:latest")
        );
        assert_eq!(
            normalize("ghcr.io/org/app:1").as_deref(),
            Some("ghcr.io/org/app:1")
        );
        assert_eq!(
            normalize("127.0.0.1:5000/base").as_deref(),
            Some("127.0.0.1:5000/base:latest")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("debian@{d}")),
            Some(format!("docker.io/library/debian@{d}"))
        );
        assert_eq!(normalize("Not A Ref"), None);
        assert_eq!(
            store_names("hello/app:1.0"),
            vec!["hello/app:1.0", "docker.io/hello/app:1.0"]
        );
        assert_eq!(
            store_names("docker.io/library/x:latest"),
            vec!["docker.io/library/x:latest"]
        );
    }
}
