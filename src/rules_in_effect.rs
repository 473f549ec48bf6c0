//! The fraud ruleset in effect on this instance: the rules and features of the ruleset activated last
//! through the API (the policy files' until one is), always with the lists of the policy files as last
//! loaded (at start-up and on SIGHUP). A sanctions list edited and reloaded takes effect whatever was
//! activated; an activation made on any instance takes effect on every other within one poll interval
//! ([`RulesInEffect::follow_activations`]).
//!
//! Whenever the ruleset in effect changes to one the audit log does not already name (a reload of the
//! files, or an activation combined with lists other than those it was proposed with), a
//! `fraud.ruleset` record with the change `loaded` names its hash and each file's, so every screening's
//! ruleset hash is explained by the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use sha2::Digest;

use crate::fraud::{Files, Ruleset};
use crate::store::{LedgerHandle, Store};

/// The files under `lists/` of a ruleset's files.
fn is_list(name: &str) -> bool {
    name.starts_with("lists/")
}

/// What the ruleset in effect was made of.
#[derive(Default)]
struct Sources {
    /// The policy directory's files as last loaded: rules, features and lists.
    files: Files,
    /// The activation in effect: its sequence number and the ruleset it activated.
    activation: Option<(i64, [u8; 32])>,
}

pub struct RulesInEffect {
    dir: PathBuf,
    store: Store,
    current: Arc<ArcSwap<Ruleset>>,
    /// Held while the ruleset in effect is rebuilt, so rebuilds never interleave.
    sources: tokio::sync::Mutex<Sources>,
}

impl RulesInEffect {
    /// Loads the policy directory's ruleset (any error stops start-up) and the latest activation.
    pub async fn load(dir: &Path, store: Store) -> anyhow::Result<RulesInEffect> {
        let files = read_files(dir)?;
        let activation = store.latest_activation().await?;
        let ruleset = combine(&store, &files, activation).await?;
        Ok(RulesInEffect {
            dir: dir.to_path_buf(),
            store,
            current: Arc::new(ArcSwap::from_pointee(ruleset)),
            sources: tokio::sync::Mutex::new(Sources { files, activation }),
        })
    }

    /// The ruleset every new transfer is screened with, swapped whole on each change.
    pub fn current(&self) -> &Arc<ArcSwap<Ruleset>> {
        &self.current
    }

    /// The id of the ruleset activated through the API that is in effect, if any is.
    pub async fn activated(&self) -> Option<[u8; 32]> {
        self.sources.lock().await.activation.map(|(_, id)| id)
    }

    /// Reads the policy directory again (SIGHUP): on success its lists, and its rules and features
    /// unless an activation is in effect, take effect at once; on any error nothing changes. Returns
    /// whether the ruleset in effect changed.
    pub async fn reload_files(&self, ledger: &LedgerHandle) -> anyhow::Result<bool> {
        let files = read_files(&self.dir)?;
        let mut sources = self.sources.lock().await;
        let activation = self.store.latest_activation().await?;
        let ruleset = combine(&self.store, &files, activation).await?;
        let changed = self.install(ruleset, activation, ledger).await?;
        *sources = Sources { files, activation };
        Ok(changed)
    }

    /// Takes the latest activation into effect if it is not yet (after one made here, and on every
    /// poll for those made on other instances). Returns whether the ruleset in effect changed.
    pub async fn follow_activations(&self, ledger: &LedgerHandle) -> anyhow::Result<bool> {
        let mut sources = self.sources.lock().await;
        let activation = self.store.latest_activation().await?;
        if activation == sources.activation {
            return Ok(false);
        }
        let ruleset = combine(&self.store, &sources.files, activation).await?;
        let changed = self.install(ruleset, activation, ledger).await?;
        sources.activation = activation;
        Ok(changed)
    }

    /// Puts `ruleset` in effect, recording it first unless it is the activated ruleset itself (whose
    /// activation record names it) or already in effect.
    async fn install(
        &self,
        ruleset: Ruleset,
        activation: Option<(i64, [u8; 32])>,
        ledger: &LedgerHandle,
    ) -> anyhow::Result<bool> {
        let hash = ruleset.hash();
        if hash == self.current.load().hash() {
            return Ok(false);
        }
        if activation.is_none_or(|(_, id)| id != hash) {
            let files = ruleset
                .files()
                .iter()
                .map(|(name, text)| (name.clone(), sha2::Sha256::digest(text.as_bytes()).into()))
                .collect();
            let loaded = audit::Event::RulesetChanged(audit::record::RulesetChanged {
                ruleset: hash,
                change: "loaded".to_string(),
                files,
            });
            ledger
                .record(vec![loaded])
                .await
                .context("recording the fraud ruleset in the audit log")?;
        }
        tracing::info!(hash = ruleset.hash_hex(), "fraud rules: a new ruleset is in effect");
        self.current.store(Arc::new(ruleset));
        Ok(true)
    }
}

/// The policy directory's ruleset files, checked as a ruleset of their own.
fn read_files(dir: &Path) -> anyhow::Result<Files> {
    let ruleset = Ruleset::load(dir).with_context(|| format!("loading the fraud rules in {}", dir.display()))?;
    Ok(ruleset.files().clone())
}

/// The ruleset in effect: the activated ruleset's rules and features (the directory's when none is
/// activated) with the directory's lists.
async fn combine(store: &Store, files: &Files, activation: Option<(i64, [u8; 32])>) -> anyhow::Result<Ruleset> {
    let mut combined: Files = match activation {
        None => files.clone(),
        Some((_, id)) => {
            let stored = store
                .ruleset(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the activated fraud ruleset {} is not stored", hex::encode(id)))?;
            stored.files.into_iter().collect()
        }
    };
    combined.retain(|name, _| !is_list(name));
    combined.extend(
        files
            .iter()
            .filter(|(name, _)| is_list(name))
            .map(|(n, t)| (n.clone(), t.clone())),
    );
    Ruleset::from_files(combined)
        .map_err(|error| anyhow::anyhow!("the fraud ruleset in effect does not check: {error}"))
}
