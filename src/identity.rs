//! Who is calling: the principal named by the verified client certificate, and that certificate's
//! fingerprint.
//!
//! rustls has already verified the chain, validity and clientAuth purpose at the handshake; this
//! module only reads names. The certificate names its principal by a SPIFFE ID in a URI SAN
//! (`spiffe://<trust-domain>/<kind>/<name>`), or by its subject CN when it has no SPIFFE ID. A
//! principal must also be listed in the principals file (policies/principals.toml): a certificate
//! that verifies but names nobody known is refused with 403.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a principal is: a calling service, or a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum PrincipalKind {
    #[serde(rename = "svc")]
    Service,
    #[serde(rename = "user")]
    User,
}

impl PrincipalKind {
    /// The kind's path segment in a SPIFFE ID.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Service => "svc",
            PrincipalKind::User => "user",
        }
    }

    fn parse(segment: &str) -> Option<PrincipalKind> {
        match segment {
            "svc" => Some(PrincipalKind::Service),
            "user" => Some(PrincipalKind::User),
            _ => None,
        }
    }
}

/// What a verified client certificate says about its holder, read once per connection.
#[derive(Clone, Debug)]
pub struct PeerCertificate {
    /// Lowercase hex SHA-256 of the certificate's DER encoding.
    pub fingerprint_sha256: String,
    pub name: Result<ClaimedName, String>,
}

/// The name a certificate claims, before it is looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimedName {
    Spiffe {
        trust_domain: String,
        kind: PrincipalKind,
        name: String,
    },
    CommonName(String),
}

impl PeerCertificate {
    pub fn from_der(der: &[u8]) -> PeerCertificate {
        PeerCertificate {
            fingerprint_sha256: hex::encode(Sha256::digest(der)),
            name: claimed_name(der),
        }
    }
}

fn claimed_name(der: &[u8]) -> Result<ClaimedName, String> {
    let (_, certificate) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("the client certificate does not parse: {e}"))?;
    let san = certificate
        .subject_alternative_name()
        .map_err(|e| format!("the client certificate's subject alternative names do not parse: {e}"))?;
    let spiffe_ids: Vec<&str> = san
        .iter()
        .flat_map(|extension| extension.value.general_names.iter())
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
            _ => None,
        })
        .collect();
    match spiffe_ids.as_slice() {
        [] => {}
        [uri] => return parse_spiffe_id(uri),
        _ => return Err("the client certificate carries more than one SPIFFE ID".to_string()),
    }
    let common_name = certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("the client certificate has neither a SPIFFE ID nor a subject CN")?;
    Ok(ClaimedName::CommonName(common_name.to_string()))
}

fn parse_spiffe_id(uri: &str) -> Result<ClaimedName, String> {
    let path = uri.strip_prefix("spiffe://").unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let [trust_domain, kind, name] = segments.as_slice() else {
        return Err(format!(
            "the SPIFFE ID {uri:?} is not spiffe://<trust-domain>/<kind>/<name>"
        ));
    };
    let kind =
        PrincipalKind::parse(kind).ok_or_else(|| format!("the SPIFFE ID {uri:?} has a kind other than svc or user"))?;
    if trust_domain.is_empty() || name.is_empty() {
        return Err(format!("the SPIFFE ID {uri:?} has an empty trust domain or name"));
    }
    Ok(ClaimedName::Spiffe {
        trust_domain: trust_domain.to_string(),
        kind,
        name: name.to_string(),
    })
}

/// A principal as listed in the principals file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    pub roles: Vec<String>,
}

/// The caller of one request: the principal and the certificate it presented.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub certificate_sha256: String,
}

impl Caller {
    /// Who the audit log names for this caller's commands.
    pub fn actor(&self) -> audit::Actor {
        let mut fingerprint = [0u8; 32];
        let certificate_sha256 = hex::decode_to_slice(&self.certificate_sha256, &mut fingerprint)
            .ok()
            .map(|()| fingerprint);
        audit::Actor {
            principal: self.principal.name.clone(),
            certificate_sha256,
        }
    }
}

/// The principals file: every principal that may call the service.
#[derive(Debug)]
pub struct Principals {
    trust_domain: String,
    by_name: BTreeMap<String, Arc<Principal>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    trust_domain: String,
    principals: BTreeMap<String, PrincipalEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    kind: PrincipalKind,
    #[serde(default)]
    roles: Vec<String>,
}

impl Principals {
    pub fn load(path: &Path) -> anyhow::Result<Principals> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Principals::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Principals> {
        let file: PrincipalsFile = toml::from_str(text)?;
        anyhow::ensure!(!file.trust_domain.is_empty(), "trust_domain must not be empty");
        let by_name = file
            .principals
            .into_iter()
            .map(|(name, entry)| {
                let principal = Principal {
                    name: name.clone(),
                    kind: entry.kind,
                    roles: entry.roles,
                };
                (name, Arc::new(principal))
            })
            .collect();
        Ok(Principals {
            trust_domain: file.trust_domain,
            by_name,
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The principal a verified certificate names, or why it names nobody this service knows.
    pub fn resolve(&self, certificate: &PeerCertificate) -> Result<Caller, String> {
        let principal = match &certificate.name {
            Err(reason) => return Err(reason.clone()),
            Ok(ClaimedName::Spiffe {
                trust_domain,
                kind,
                name,
            }) => {
                if *trust_domain != self.trust_domain {
                    return Err(format!("the trust domain {trust_domain:?} is not this service's"));
                }
                self.by_name.get(name).filter(|p| p.kind == *kind)
            }
            Ok(ClaimedName::CommonName(name)) => self.by_name.get(name),
        };
        let principal = principal.ok_or("the certificate names no known principal")?;
        Ok(Caller {
            principal: principal.clone(),
            certificate_sha256: certificate.fingerprint_sha256.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        trust_domain = "finledger.dev"
        [principals.payments]
        kind = "svc"
        roles = ["payments"]
        [principals.analyst-a]
        kind = "user"
    "#;

    fn certificate(name: Result<ClaimedName, String>) -> PeerCertificate {
        PeerCertificate {
            fingerprint_sha256: "ab".repeat(32),
            name,
        }
    }

    fn spiffe(trust_domain: &str, kind: PrincipalKind, name: &str) -> Result<ClaimedName, String> {
        Ok(ClaimedName::Spiffe {
            trust_domain: trust_domain.to_string(),
            kind,
            name: name.to_string(),
        })
    }

    #[test]
    fn a_spiffe_id_of_a_listed_principal_resolves_with_its_fingerprint() {
        let principals = Principals::parse(FILE).unwrap();
        let caller = principals
            .resolve(&certificate(spiffe(
                "finledger.dev",
                PrincipalKind::Service,
                "payments",
            )))
            .unwrap();
        assert_eq!(caller.principal.name, "payments");
        assert_eq!(caller.principal.roles, ["payments"]);
        assert_eq!(caller.certificate_sha256, "ab".repeat(32));
    }

    #[test]
    fn a_common_name_resolves_when_there_is_no_spiffe_id() {
        let principals = Principals::parse(FILE).unwrap();
        let caller = principals
            .resolve(&certificate(Ok(ClaimedName::CommonName("analyst-a".to_string()))))
            .unwrap();
        assert_eq!(caller.principal.kind, PrincipalKind::User);
    }

    #[test]
    fn unknown_names_kinds_and_trust_domains_are_refused() {
        let principals = Principals::parse(FILE).unwrap();
        for name in [
            spiffe("other.example", PrincipalKind::Service, "payments"),
            spiffe("finledger.dev", PrincipalKind::User, "payments"),
            spiffe("finledger.dev", PrincipalKind::Service, "nobody"),
            Ok(ClaimedName::CommonName("nobody".to_string())),
            Err("unreadable".to_string()),
        ] {
            assert!(principals.resolve(&certificate(name.clone())).is_err(), "{name:?}");
        }
    }

    #[test]
    fn malformed_spiffe_ids_are_refused() {
        for uri in [
            "spiffe://finledger.dev/svc",
            "spiffe://finledger.dev/robot/x",
            "spiffe://finledger.dev/svc/a/b",
            "spiffe:///svc/x",
            "spiffe://finledger.dev/svc/",
        ] {
            assert!(parse_spiffe_id(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn a_principals_file_with_unknown_fields_is_refused() {
        let error = Principals::parse("trust_domain = \"x\"\n[principals.a]\nkind = \"svc\"\nrole = \"typo\"\n");
        assert!(format!("{:#}", error.unwrap_err()).contains("role"));
    }
}
