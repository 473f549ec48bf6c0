//! The audit log's files: the checkpoint signing key, evidence bundles (export) and their offline
//! verification.

use std::path::Path;

use anyhow::Context;
use audit::note::NoteSigner;

/// The origin (and key name) of the dev key `serve` creates when no key is configured.
pub const DEV_AUDIT_ORIGIN: &str = "finledger.dev/audit";

/// Reads a signing key file (`PRIVATE+KEY+<name>+<id>+<key>`).
pub fn read_key(path: &Path) -> anyhow::Result<NoteSigner> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the audit key {}", path.display()))?;
    NoteSigner::parse(&text).with_context(|| format!("the audit key {}", path.display()))
}

/// Writes a new signing key for the log `origin` (readable by its owner only). An existing file is
/// replaced only with `force`: a log's key is its identity.
pub fn write_key(path: &Path, origin: &str, force: bool) -> anyhow::Result<NoteSigner> {
    if path.exists() && !force {
        anyhow::bail!(
            "{} exists; pass --force to replace the log's signing key",
            path.display()
        );
    }
    let signer = NoteSigner::generate(origin)?;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = format!("{}\n", signer.to_key_text());
    crate::pki::write_file(path, text.as_bytes(), 0o600, &mut Vec::new())?;
    Ok(signer)
}

/// The configured key; without one configured, the dev key, created when missing.
pub fn service_key(path: &Path, configured: bool) -> anyhow::Result<NoteSigner> {
    if !configured && !path.exists() {
        let signer = write_key(path, DEV_AUDIT_ORIGIN, false)?;
        tracing::warn!(path = %path.display(), origin = DEV_AUDIT_ORIGIN, "created a dev audit signing key");
        return Ok(signer);
    }
    read_key(path)
}
