//! Entitlements: what a build may do beyond Docker's default confinement,
//! granted when the build is started (`d2v build --allow network.host`,
//! `--allow security.insecure`, buildx's names), never by the Dockerfile.

use crate::dockerfile::{Network, Plan, StepKind};

/// The entitlements a build was started with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entitlements {
    /// `network.host`: `RUN --network=host` may use the host's network.
    pub network_host: bool,
    /// `security.insecure`: `RUN --security=insecure` may keep every
    /// capability and run without seccomp or masked paths.
    pub security_insecure: bool,
}

/// An entitlement was named wrongly or is needed but not granted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntitlementError {
    /// `--allow` with a name d2v does not know.
    #[error("unknown entitlement {0:?} (known: network.host, security.insecure)")]
    Unknown(String),
    /// A step needs an entitlement the build was not started with.
    #[error("{location}: `{text}` needs `--allow {name}` (d2v build --allow {name})")]
    NotGranted {
        /// file:line:col of the step.
        location: String,
        /// The instruction.
        text: String,
        /// The entitlement.
        name: &'static str,
    },
}

impl Entitlements {
    /// Parses `--allow` values (each may be a comma-separated list).
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Self, EntitlementError> {
        let mut out = Entitlements::default();
        for value in values {
            for name in value.as_ref().split(',').map(str::trim) {
                match name {
                    "" => {}
                    "network.host" => out.network_host = true,
                    "security.insecure" => out.security_insecure = true,
                    other => return Err(EntitlementError::Unknown(other.to_string())),
                }
            }
        }
        Ok(out)
    }

    /// Fails on the first RUN of `plan` that needs an entitlement not granted,
    /// before anything is built.
    pub fn check(&self, plan: &Plan) -> Result<(), EntitlementError> {
        for stage in &plan.stages {
            for step in &stage.steps {
                let StepKind::Run(run) = &step.kind else {
                    continue;
                };
                let missing = if run.network == Network::Host && !self.network_host {
                    Some("network.host")
                } else if run.insecure && !self.security_insecure {
                    Some("security.insecure")
                } else {
                    None
                };
                if let Some(name) = missing {
                    return Err(EntitlementError::NotGranted {
                        location: step.location.to_string(),
                        text: step.text.clone(),
                        name,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildx_names_and_lists() {
        assert_eq!(
            Entitlements::parse(&["network.host,security.insecure"]).unwrap(),
            Entitlements {
                network_host: true,
                security_insecure: true
            }
        );
        assert_eq!(
            Entitlements::parse(&["network.host"]).unwrap(),
            Entitlements {
                network_host: true,
                security_insecure: false
            }
        );
        assert_eq!(
            Entitlements::parse::<&str>(&[]).unwrap(),
            Entitlements::default()
        );
        assert!(matches!(
            Entitlements::parse(&["device"]),
            Err(EntitlementError::Unknown(_))
        ));
    }
}
