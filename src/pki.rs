//! Development PKI: a private CA, a server certificate and client certificates for the demo
//! principals, so that the service runs over mutual TLS from the first `make run`.
//!
//! Client certificates name their principal twice: as a SPIFFE ID in a URI SAN
//! (`spiffe://<trust-domain>/<kind>/<name>`, what the service reads first) and as the subject CN (the
//! fallback). Production deployments bring their own CA; nothing in the service depends on this one.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::identity::PrincipalKind;

/// The trust domain of the dev PKI's SPIFFE IDs.
pub const DEV_TRUST_DOMAIN: &str = "finledger.dev";

/// The demo principals `certs init` issues client certificates for.
pub const DEMO_PRINCIPALS: [(&str, PrincipalKind); 7] = [
    ("payments", PrincipalKind::Service),
    ("orders", PrincipalKind::Service),
    ("analyst-a", PrincipalKind::User),
    ("analyst-b", PrincipalKind::User),
    ("auditor", PrincipalKind::User),
    ("console", PrincipalKind::Service),
    ("payouts", PrincipalKind::Service),
];

/// How long dev certificates stay valid.
const VALIDITY_DAYS: i64 = 365;

/// What a certificate may be used for (its extended key usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// What to put in a certificate issued by the CA.
#[derive(Clone, Debug)]
pub struct Profile {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub usages: Vec<Usage>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Profile {
    /// A server certificate for the loopback names, valid from now.
    pub fn server() -> Profile {
        let now = OffsetDateTime::now_utc();
        Profile {
            common_name: "finledger".to_string(),
            dns_names: vec!["localhost".to_string()],
            ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            uris: Vec::new(),
            usages: vec![Usage::Server],
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(VALIDITY_DAYS),
        }
    }

    /// A client certificate naming `name` by SPIFFE ID and CN, valid from now.
    pub fn client(trust_domain: &str, kind: PrincipalKind, name: &str) -> Profile {
        let now = OffsetDateTime::now_utc();
        Profile {
            common_name: name.to_string(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: vec![format!("spiffe://{trust_domain}/{}/{name}", kind.as_str())],
            usages: vec![Usage::Client],
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(VALIDITY_DAYS),
        }
    }
}

/// A certificate and its private key, PEM-encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that signs server and client certificates.
pub struct CertificateAuthority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
}

impl CertificateAuthority {
    pub fn generate(common_name: &str) -> anyhow::Result<CertificateAuthority> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(10 * VALIDITY_DAYS);
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        Ok(CertificateAuthority { issuer, key_pem })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn issue(&self, profile: &Profile) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&profile.common_name);
        let dns = profile
            .dns_names
            .iter()
            .map(|name| Ok(SanType::DnsName(name.clone().try_into()?)));
        let uris = profile.uris.iter().map(|uri| Ok(SanType::URI(uri.clone().try_into()?)));
        let ips = profile.ip_addresses.iter().map(|ip| Ok(SanType::IpAddress(*ip)));
        params.subject_alt_names = dns.chain(uris).chain(ips).collect::<Result<_, rcgen::Error>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = profile
            .usages
            .iter()
            .map(|usage| match usage {
                Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
                Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            })
            .collect();
        params.not_before = profile.not_before;
        params.not_after = profile.not_after;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "finledger dev");
    name.push(DnType::CommonName, common_name);
    name
}

/// The files of a dev PKI directory.
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn client_cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }
    pub fn client_key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

/// `finledger certs init`: writes a CA, a server certificate and the demo principals' client
/// certificates into `dir`. An existing CA is never overwritten unless `force` is set: replacing it
/// would silently invalidate every certificate issued from it.
pub fn init(dir: &Path, trust_domain: &str, force: bool) -> anyhow::Result<Vec<PathBuf>> {
    let paths = PkiPaths { dir: dir.to_path_buf() };
    if paths.ca_cert().exists() && !force {
        anyhow::bail!(
            "{} already exists; pass --force to replace the whole dev PKI",
            paths.ca_cert().display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = CertificateAuthority::generate("finledger dev CA")?;
    let mut written = Vec::new();
    write_file(&paths.ca_cert(), ca.cert_pem().as_bytes(), 0o644, &mut written)?;
    write_file(&paths.ca_key(), ca.key_pem().as_bytes(), 0o600, &mut written)?;
    let server = ca.issue(&Profile::server())?;
    write_file(&paths.server_cert(), server.cert_pem.as_bytes(), 0o644, &mut written)?;
    write_file(&paths.server_key(), server.key_pem.as_bytes(), 0o600, &mut written)?;
    for (name, kind) in DEMO_PRINCIPALS {
        let client = ca.issue(&Profile::client(trust_domain, kind, name))?;
        write_file(
            &paths.client_cert(name),
            client.cert_pem.as_bytes(),
            0o644,
            &mut written,
        )?;
        write_file(&paths.client_key(name), client.key_pem.as_bytes(), 0o600, &mut written)?;
    }
    Ok(written)
}

pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    // Written to a new file and renamed, so a key is never readable with the wrong mode, even briefly.
    let temporary = path.with_extension("tmp");
    let _ = fs::remove_file(&temporary);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    written.push(path.to_path_buf());
    Ok(())
}
