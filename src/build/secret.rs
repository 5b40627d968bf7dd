//! `--secret id=ID,src=PATH` (BuildKit's form; `source=` and `type=file` are
//! accepted too): a file a `RUN --mount=type=secret` step may read, which
//! never enters a layer or the step cache.

use std::path::PathBuf;

/// A parsed `--secret` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSpec {
    /// The id a `RUN --mount=type=secret,id=ID` names.
    pub id: String,
    /// The host file it reads.
    pub src: PathBuf,
}

impl std::str::FromStr for SecretSpec {
    type Err = String;

    /// `id=ID,src=PATH`, with PATH a readable file.
    fn from_str(raw: &str) -> Result<SecretSpec, String> {
        let bad = || format!("invalid --secret {raw:?}: expected id=ID,src=PATH");
        let mut id = None;
        let mut src = None;
        for part in raw.split(',') {
            match part.split_once('=') {
                Some(("id", v)) if !v.is_empty() => id = Some(v.to_string()),
                Some(("src" | "source", v)) if !v.is_empty() => src = Some(PathBuf::from(v)),
                Some(("type", "file")) => {}
                _ => return Err(bad()),
            }
        }
        let (Some(id), Some(src)) = (id, src) else {
            return Err(bad());
        };
        if !src.is_file() {
            return Err(format!(
                "--secret {id}: {} is not a readable file",
                src.display()
            ));
        }
        Ok(SecretSpec { id, src })
    }
}

#[cfg(test)]
mod tests {
    use super::SecretSpec;

    #[test]
    fn secrets_parse_as_buildkit_writes_them() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = f.path().display();
        let s: SecretSpec = format!("id=tok,src={p}").parse().unwrap();
        assert_eq!((s.id.as_str(), s.src.as_path()), ("tok", f.path()));
        let s: SecretSpec = format!("type=file,source={p},id=a").parse().unwrap();
        assert_eq!(s.id, "a");
        assert!("id=tok".parse::<SecretSpec>().is_err());
        assert!(format!("id=,src={p}").parse::<SecretSpec>().is_err());
        assert!("id=x,src=/nonexistent/d2v".parse::<SecretSpec>().is_err());
        assert!(format!("id=x,src={p},env=Y").parse::<SecretSpec>().is_err());
    }
}
