//! Fraud rulesets proposed and activated through the API, written in a batch transaction together
//! with their audit records.

use audit::record::{self, Actor, Event};
use ledger::Timestamp;
use sha2::Digest;
use sqlx::PgConnection;

use crate::store::rows::to_datetime;

/// A ruleset change to record in the same commit as its audit record.
#[derive(Clone, Debug)]
pub enum RulesetChange {
    /// A checked ruleset, by the SHA-256 of its files; proposing the same files again changes nothing.
    Propose {
        id: [u8; 32],
        files: Vec<(String, String)>,
    },
    Activate {
        id: [u8; 32],
    },
}

/// A batch's ruleset rows.
#[derive(Default)]
pub struct RulesetRows {
    at: Option<Timestamp>,
    proposed: Vec<(Vec<u8>, serde_json::Value, String, Option<String>)>,
    activated: Vec<(Vec<u8>, String, Option<String>)>,
}

impl RulesetRows {
    /// Adds the rows of `change` by `actor` and returns its audit event.
    pub fn push(&mut self, change: &RulesetChange, actor: &Actor, now: Timestamp) -> Event {
        self.at = Some(now);
        let (id, change, files) = match change {
            RulesetChange::Propose { id, files } => {
                let object: serde_json::Map<String, serde_json::Value> = files
                    .iter()
                    .map(|(name, text)| (name.clone(), serde_json::Value::from(text.as_str())))
                    .collect();
                self.proposed.push((
                    id.to_vec(),
                    serde_json::Value::Object(object),
                    actor.principal.clone(),
                    actor.front_end.clone(),
                ));
                let hashes = files
                    .iter()
                    .map(|(name, text)| (name.clone(), sha2::Sha256::digest(text.as_bytes()).into()))
                    .collect();
                (*id, "proposed", hashes)
            }
            RulesetChange::Activate { id } => {
                self.activated
                    .push((id.to_vec(), actor.principal.clone(), actor.front_end.clone()));
                (*id, "activated", Vec::new())
            }
        };
        Event::RulesetChanged(record::RulesetChanged {
            ruleset: id,
            change: change.to_string(),
            files,
        })
    }

    /// Inserts the rows (a proposal of an already stored ruleset adds nothing).
    pub async fn insert(&self, connection: &mut PgConnection) -> anyhow::Result<()> {
        let Some(at) = self.at.map(to_datetime) else {
            return Ok(());
        };
        for (id, files, by, front_end) in &self.proposed {
            sqlx::query!(
                "INSERT INTO fraud_rulesets (id, files, proposed_by, proposed_front_end, proposed_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                id,
                files,
                by,
                front_end.as_deref(),
                at
            )
            .execute(&mut *connection)
            .await?;
        }
        for (id, by, front_end) in &self.activated {
            sqlx::query!(
                "INSERT INTO fraud_ruleset_activations (ruleset_id, activated_by, front_end, activated_at)
                 VALUES ($1, $2, $3, $4)",
                id,
                by,
                front_end.as_deref(),
                at
            )
            .execute(&mut *connection)
            .await?;
        }
        Ok(())
    }
}

/// A stored ruleset, with its activations (newest last).
#[derive(Clone, Debug)]
pub struct StoredRuleset {
    pub id: [u8; 32],
    pub files: Vec<(String, String)>,
    pub proposed_by: String,
    pub proposed_front_end: Option<String>,
    pub proposed_at: chrono::DateTime<chrono::Utc>,
    pub activations: Vec<(String, Option<String>, chrono::DateTime<chrono::Utc>)>,
}

impl crate::store::Store {
    /// Every proposed ruleset, oldest first, with its activations.
    pub async fn rulesets(&self) -> anyhow::Result<Vec<StoredRuleset>> {
        let rows = sqlx::query!(
            "SELECT id, files, proposed_by, proposed_front_end, proposed_at FROM fraud_rulesets
             ORDER BY proposed_at, id"
        )
        .fetch_all(self.pool())
        .await?;
        let activations = sqlx::query!(
            "SELECT ruleset_id, activated_by, front_end, activated_at FROM fraud_ruleset_activations
             ORDER BY activated_at, seq"
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|row| {
                let id: [u8; 32] = row
                    .id
                    .as_slice()
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("a stored ruleset id is not 32 bytes"))?;
                let files = match row.files {
                    serde_json::Value::Object(map) => map
                        .into_iter()
                        .map(|(name, text)| (name, text.as_str().unwrap_or_default().to_string()))
                        .collect(),
                    _ => anyhow::bail!("stored ruleset files are not an object"),
                };
                Ok(StoredRuleset {
                    id,
                    files,
                    proposed_by: row.proposed_by,
                    proposed_front_end: row.proposed_front_end,
                    proposed_at: row.proposed_at,
                    activations: activations
                        .iter()
                        .filter(|a| a.ruleset_id == row.id)
                        .map(|a| (a.activated_by.clone(), a.front_end.clone(), a.activated_at))
                        .collect(),
                })
            })
            .collect()
    }

    /// The last activation, if there was one: its sequence number and the ruleset it activated.
    pub async fn latest_activation(&self) -> anyhow::Result<Option<(i64, [u8; 32])>> {
        let latest = sqlx::query!(
            "SELECT seq, ruleset_id FROM fraud_ruleset_activations ORDER BY activated_at DESC, seq DESC LIMIT 1"
        )
        .fetch_optional(self.pool())
        .await?;
        latest
            .map(|row| {
                let id = <[u8; 32]>::try_from(row.ruleset_id.as_slice())
                    .map_err(|_| anyhow::anyhow!("a stored ruleset id is not 32 bytes"))?;
                Ok((row.seq, id))
            })
            .transpose()
    }

    /// The stored ruleset `id`, with its activations.
    pub async fn ruleset(&self, id: &[u8; 32]) -> anyhow::Result<Option<StoredRuleset>> {
        Ok(self.rulesets().await?.into_iter().find(|r| &r.id == id))
    }
}
