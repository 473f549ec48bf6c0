//! Who is calling: the principal named by the verified client certificate, and that certificate's
//! fingerprint.
//!
//! rustls has already verified the chain, validity and clientAuth purpose at the handshake; this
//! module only reads names. The certificate names its principal by a SPIFFE ID in a URI SAN
//! (`spiffe://<trust-domain>/<kind>/<name>`), or by its subject CN when it has no SPIFFE ID. A
//! principal must also be listed in the principals file (policies/principals.toml): a certificate
//! that verifies but names nobody known is refused with 403.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chrono::FixedOffset;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

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

/// The names the service's own actions are recorded under: the ledger itself (expiry, checkpoints, the
/// owner of system accounts) and the daily settlement schedule. No principal may be listed under one,
/// so no certificate or token can ever act as the service.
pub const SERVICE_PRINCIPALS: [&str; 2] = ["finledger", "settlement-schedule"];

/// The owner of the accounts the service keeps for itself (the payouts clearing accounts).
pub const SYSTEM_PRINCIPAL: &str = SERVICE_PRINCIPALS[0];

/// A principal as listed in the principals file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    pub roles: Vec<String>,
    /// Accounts it owns besides those it created.
    pub accounts: Vec<Uuid>,
    /// Per currency code, in minor units: the largest transfer it makes without a second principal's
    /// approval, and the largest it may approve. A currency not listed means 0.
    pub approval_limits: BTreeMap<String, u64>,
    /// Per currency code, in minor units: the most it moves out of one account in sum within the
    /// approval window without a second principal's approval. A currency not listed means its
    /// approval limit: splitting a transfer never escapes four eyes.
    pub aggregate_limits: BTreeMap<String, u64>,
}

impl Principal {
    /// The approval limit in `currency`, in minor units (0 when none is configured).
    pub fn approval_limit(&self, currency: &str) -> u64 {
        self.approval_limits.get(currency).copied().unwrap_or(0)
    }

    /// The aggregate limit in `currency`, in minor units (the approval limit when none is configured).
    pub fn aggregate_limit(&self, currency: &str) -> u64 {
        self.aggregate_limits
            .get(currency)
            .copied()
            .unwrap_or_else(|| self.approval_limit(currency))
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The caller of one request: the principal decisions are made for, and the certificate presented.
/// When a trusted front-end relays a user's signed token, the principal is that user and `front_end`
/// the front-end whose certificate it is.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub certificate_sha256: String,
    pub front_end: Option<Arc<Principal>>,
    /// The user passed multi-factor authentication (the token's `amr` lists "mfa").
    pub mfa: bool,
}

impl Caller {
    /// Who the audit log names for this caller's commands, allowed (or denied) by `policy_set`.
    pub fn actor(&self, policy_set: Option<[u8; 32]>) -> audit::Actor {
        let mut fingerprint = [0u8; 32];
        let certificate_sha256 = hex::decode_to_slice(&self.certificate_sha256, &mut fingerprint)
            .ok()
            .map(|()| fingerprint);
        audit::Actor {
            principal: self.principal.name.clone(),
            certificate_sha256,
            front_end: self.front_end.as_ref().map(|front_end| front_end.name.clone()),
            policy_set,
        }
    }
}

/// The principals file: every principal that may call the service, the roles they may hold, and the
/// business time zone.
#[derive(Debug)]
pub struct Principals {
    trust_domain: String,
    business_utc_offset: FixedOffset,
    by_name: BTreeMap<String, Arc<Principal>>,
    /// Accounts listed under a principal's `accounts`, with their listed owners.
    listed_owners: HashMap<Uuid, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    trust_domain: String,
    #[serde(default = "utc")]
    business_utc_offset: String,
    roles: BTreeMap<String, String>,
    #[serde(default)]
    conflicting_roles: Vec<[String; 2]>,
    principals: BTreeMap<String, PrincipalEntry>,
}

fn utc() -> String {
    "+00:00".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    kind: PrincipalKind,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    accounts: Vec<Uuid>,
    #[serde(default)]
    approval_limits: BTreeMap<String, u64>,
    #[serde(default)]
    aggregate_limits: BTreeMap<String, u64>,
}

/// Checks one principal's entry: a name usable in a SPIFFE ID and not the service's own, known roles,
/// no conflicting pair of roles (static separation of duties), real currencies, no account of the
/// service's own.
fn check_principal(
    name: &str,
    entry: &PrincipalEntry,
    roles: &BTreeMap<String, String>,
    conflicts: &[[String; 2]],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "principal {name:?}: a name is letters, digits, '-', '_' and '.'"
    );
    anyhow::ensure!(
        !SERVICE_PRINCIPALS.contains(&name),
        "principal {name:?}: the name is the service's own (its records and system accounts carry it)"
    );
    if let Some(account) = entry.accounts.iter().find(|id| ledger::is_reserved(**id)) {
        anyhow::bail!("principal {name:?}: accounts lists {account}, an id reserved for the service's own accounts");
    }
    for role in &entry.roles {
        anyhow::ensure!(
            roles.contains_key(role),
            "principal {name:?}: the role {role:?} is not defined in [roles]"
        );
    }
    for [a, b] in conflicts {
        let holds = |role: &String| entry.roles.contains(role);
        anyhow::ensure!(
            !(holds(a) && holds(b)),
            "principal {name:?} holds the conflicting roles {a:?} and {b:?} (separation of duties: no \
             principal may hold both)"
        );
    }
    for (field, limits) in [
        ("approval_limits", &entry.approval_limits),
        ("aggregate_limits", &entry.aggregate_limits),
    ] {
        for currency in limits.keys() {
            ledger::Currency::from_code(currency).map_err(|_| {
                anyhow::anyhow!("principal {name:?}: {field} names {currency:?}, which is not an ISO 4217 code")
            })?;
        }
    }
    Ok(())
}

/// "+HH:MM" or "-HH:MM" as an offset from UTC.
fn parse_utc_offset(text: &str) -> anyhow::Result<FixedOffset> {
    let invalid = || anyhow::anyhow!("business_utc_offset {text:?} is not an offset like \"+01:00\"");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(invalid()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(invalid)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(invalid());
    }
    let hours: i32 = hours.parse().map_err(|_| invalid())?;
    let minutes: i32 = minutes.parse().map_err(|_| invalid())?;
    if hours > 14 || minutes > 59 {
        return Err(invalid());
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(invalid)
}

impl Principals {
    pub fn load(path: &Path) -> anyhow::Result<Principals> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Principals::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Principals> {
        let file: PrincipalsFile = toml::from_str(text)?;
        anyhow::ensure!(!file.trust_domain.is_empty(), "trust_domain must not be empty");
        let business_utc_offset = parse_utc_offset(&file.business_utc_offset)?;
        for pair in &file.conflicting_roles {
            for role in pair {
                anyhow::ensure!(
                    file.roles.contains_key(role),
                    "conflicting_roles names the role {role:?}, which [roles] does not define"
                );
            }
            anyhow::ensure!(
                pair[0] != pair[1],
                "conflicting_roles pairs the role {:?} with itself",
                pair[0]
            );
        }
        let mut by_name = BTreeMap::new();
        let mut listed_owners: HashMap<Uuid, Vec<String>> = HashMap::new();
        for (name, entry) in file.principals {
            check_principal(&name, &entry, &file.roles, &file.conflicting_roles)?;
            for account in &entry.accounts {
                listed_owners.entry(*account).or_default().push(name.clone());
            }
            let principal = Principal {
                name: name.clone(),
                kind: entry.kind,
                roles: entry.roles,
                accounts: entry.accounts,
                approval_limits: entry.approval_limits,
                aggregate_limits: entry.aggregate_limits,
            };
            by_name.insert(name, Arc::new(principal));
        }
        Ok(Principals {
            trust_domain: file.trust_domain,
            business_utc_offset,
            by_name,
            listed_owners,
        })
    }

    /// The time zone of the business-hours rule.
    pub fn business_utc_offset(&self) -> FixedOffset {
        self.business_utc_offset
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Principal>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Principal>> {
        self.by_name.values()
    }

    /// Principals listed as owning `account` in this file (besides the owner the ledger recorded).
    pub fn listed_owners(&self, account: Uuid) -> &[String] {
        self.listed_owners.get(&account).map(Vec::as_slice).unwrap_or_default()
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
            front_end: None,
            mfa: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        trust_domain = "finledger.dev"
        [roles]
        payments = "moves money"
        auditor = "reads"
        [principals.payments]
        kind = "svc"
        roles = ["payments"]
        approval_limits = { USD = 500 }
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
        let error =
            Principals::parse("trust_domain = \"x\"\n[roles]\n[principals.a]\nkind = \"svc\"\nrole = \"typo\"\n");
        assert!(format!("{:#}", error.unwrap_err()).contains("role"));
    }

    #[test]
    fn limits_are_per_currency_and_zero_when_absent() {
        let principals = Principals::parse(FILE).unwrap();
        let payments = principals.get("payments").unwrap();
        assert_eq!(payments.approval_limit("USD"), 500);
        assert_eq!(payments.approval_limit("EUR"), 0);
        assert_eq!(
            payments.aggregate_limit("USD"),
            500,
            "the approval limit unless configured"
        );
        let text = FILE.replace(
            "approval_limits = { USD = 500 }",
            "approval_limits = { USD = 500 }\naggregate_limits = { USD = 2000 }",
        );
        let principals = Principals::parse(&text).unwrap();
        assert_eq!(principals.get("payments").unwrap().aggregate_limit("USD"), 2000);
    }

    #[test]
    fn nobody_is_listed_as_the_service_or_as_owning_its_accounts() {
        for name in SERVICE_PRINCIPALS {
            let text = format!("{FILE}\n[principals.{name}]\nkind = \"svc\"\n");
            let error = format!("{:#}", Principals::parse(&text).unwrap_err());
            assert!(error.contains("the service's own"), "{error}");
        }
        let clearing = ledger::reserved_id(b"clearing/USD");
        let text = FILE.replace(
            "roles = [\"payments\"]",
            &format!("roles = [\"payments\"]\naccounts = [\"{clearing}\"]"),
        );
        let error = format!("{:#}", Principals::parse(&text).unwrap_err());
        assert!(error.contains("reserved"), "{error}");
    }

    #[test]
    fn a_principal_holding_conflicting_roles_is_refused_with_both_named() {
        let text = format!("{FILE}\n[principals.mallory]\nkind = \"user\"\nroles = [\"auditor\", \"payments\"]\n")
            .replace("[principals.payments]", "[principals.payments]")
            .replacen(
                "trust_domain = \"finledger.dev\"",
                "trust_domain = \"finledger.dev\"\nconflicting_roles = [[\"auditor\", \"payments\"]]",
                1,
            );
        let error = format!("{:#}", Principals::parse(&text).unwrap_err());
        assert!(
            error.contains("mallory") && error.contains("\"auditor\"") && error.contains("\"payments\""),
            "{error}"
        );
    }

    #[test]
    fn unknown_roles_currencies_and_offsets_are_refused() {
        for (text, expected) in [
            (
                FILE.replace("roles = [\"payments\"]", "roles = [\"payment\"]"),
                "\"payment\" is not defined",
            ),
            (FILE.replace("USD = 500", "USX = 500"), "USX"),
            (
                FILE.replacen("[roles]", "business_utc_offset = \"1:00\"\n[roles]", 1),
                "business_utc_offset",
            ),
        ] {
            let error = format!("{:#}", Principals::parse(&text).unwrap_err());
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn the_shipped_principals_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/principals.toml");
        let principals = Principals::load(&path).unwrap();
        assert!(principals.get("payments").unwrap().has_role("money-mover"));
    }
}
