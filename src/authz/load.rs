//! Reading the policy directory: the Cedar schema, every `*.cedar` file, the accounts designated for
//! settlement and the principals file, checked together. Any problem is reported as
//! `file:line:column: reason` and nothing is loaded.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::identity::Principals;

const SCHEMA_FILE: &str = "schema.cedarschema";
const PRINCIPALS_FILE: &str = "principals.toml";
const SETTLEMENT_FILE: &str = "settlement.toml";

/// The files of a policy directory as read, before they are checked.
pub struct Sources {
    /// (file name, text): the schema, then the policy files by name, then the settlement designations
    /// when there are any, then the principals file.
    pub files: Vec<(String, String)>,
}

impl Sources {
    pub fn read(dir: &Path) -> anyhow::Result<Sources> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        let mut policy_files = Vec::new();
        let entries = std::fs::read_dir(dir).with_context(|| format!("reading the directory {}", dir.display()))?;
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".cedar") {
                policy_files.push(name);
            }
        }
        anyhow::ensure!(
            !policy_files.is_empty(),
            "{} holds no *.cedar policy file",
            dir.display()
        );
        policy_files.sort();
        let mut files = vec![(SCHEMA_FILE.to_string(), read(SCHEMA_FILE)?)];
        for name in policy_files {
            let text = read(&name)?;
            files.push((name, text));
        }
        if dir.join(SETTLEMENT_FILE).exists() {
            files.push((SETTLEMENT_FILE.to_string(), read(SETTLEMENT_FILE)?));
        }
        files.push((PRINCIPALS_FILE.to_string(), read(PRINCIPALS_FILE)?));
        Ok(Sources { files })
    }

    /// SHA-256 of each file, and the set's hash over every file's name and contents in order.
    pub fn hashes(&self) -> ([u8; 32], Vec<(String, [u8; 32])>) {
        let mut set = Sha256::new();
        let mut files = Vec::with_capacity(self.files.len());
        for (name, text) in &self.files {
            set.update((name.len() as u64).to_be_bytes());
            set.update(name.as_bytes());
            set.update((text.len() as u64).to_be_bytes());
            set.update(text.as_bytes());
            files.push((name.clone(), Sha256::digest(text.as_bytes()).into()));
        }
        (set.finalize().into(), files)
    }
}

/// What the files say, checked: the schema, the policies (each with its `@id`), the accounts designated
/// for settlement, and the principals.
pub struct Checked {
    pub schema: Schema,
    pub policies: PolicySet,
    pub settlement_accounts: HashSet<Uuid>,
    pub principals: Principals,
}

/// policies/settlement.toml: the accounts a settlement may net and pay out (merchant accounts), the
/// fact the `settlement` attribute of an account gives the policies.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettlementFile {
    accounts: Vec<Uuid>,
}

fn settlement_accounts(text: &str) -> anyhow::Result<HashSet<Uuid>> {
    let file: SettlementFile = toml::from_str(text)?;
    if let Some(account) = file.accounts.iter().find(|id| ledger::is_reserved(**id)) {
        anyhow::bail!("accounts lists {account}, an id reserved for the service's own accounts");
    }
    Ok(file.accounts.into_iter().collect())
}

pub fn check(sources: &Sources) -> anyhow::Result<Checked> {
    let (schema_name, schema_text) = &sources.files[0];
    let (schema, _warnings) = Schema::from_cedarschema_str(schema_text)
        .map_err(|error| anyhow::anyhow!(located(schema_name, schema_text, &error)))?;
    let mut policies = PolicySet::new();
    let mut file_of: HashMap<PolicyId, usize> = HashMap::new();
    let policy_files: Vec<&(String, String)> = sources.files.iter().filter(|(n, _)| n.ends_with(".cedar")).collect();
    for (index, (name, text)) in policy_files.iter().enumerate() {
        let parsed = PolicySet::from_str(text).map_err(|error| anyhow::anyhow!(located(name, text, &error)))?;
        anyhow::ensure!(
            parsed.templates().next().is_none(),
            "{name}: templates are not used here; write static policies"
        );
        for policy in parsed.policies() {
            let line = policy
                .to_cedar()
                .and_then(|source| text.find(&source))
                .map(|offset| line_column(text, offset).0)
                .unwrap_or(1);
            let id = policy
                .annotation("id")
                .ok_or_else(|| anyhow::anyhow!("{name}:{line}: the policy has no @id(\"...\") annotation"))?;
            anyhow::ensure!(
                !id.is_empty()
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}:{line}: the @id {id:?} is not lowercase letters, digits and '-'"
            );
            let id = PolicyId::new(id);
            if let Some(other) = file_of.get(&id) {
                anyhow::bail!(
                    "{name}:{line}: the @id {id} is already used in {}",
                    policy_files[*other].0
                );
            }
            file_of.insert(id.clone(), index);
            policies
                .add(policy.new_id(id))
                .map_err(|error| anyhow::anyhow!("{name}:{line}: {error}"))?;
        }
    }
    let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    if let Some(error) = result.validation_errors().next() {
        let (name, text) = &policy_files[file_of.get(error.policy_id()).copied().unwrap_or(0)];
        anyhow::bail!(located(name, text, error));
    }
    let (principals_name, principals_text) = &sources.files[sources.files.len() - 1];
    let principals = Principals::parse(principals_text).with_context(|| principals_name.clone())?;
    let settlement_accounts = match sources.files.iter().find(|(name, _)| name == SETTLEMENT_FILE) {
        Some((name, text)) => settlement_accounts(text).with_context(|| name.clone())?,
        None => HashSet::new(),
    };
    Ok(Checked {
        schema,
        policies,
        settlement_accounts,
        principals,
    })
}

/// `file:line:column: message (help)`, at the diagnostic's first label.
fn located(name: &str, text: &str, error: &(dyn Diagnostic + Send + Sync + 'static)) -> String {
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let mut out = match offset {
        Some(offset) => {
            let (line, column) = line_column(text, offset);
            format!("{name}:{line}:{column}: {error}")
        }
        None => format!("{name}: {error}"),
    };
    if let Some(help) = error.help() {
        let _ = write!(out, " ({help})");
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Sources {
        Sources::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    fn with_policy_file(text: &str) -> Sources {
        let mut sources = shipped();
        let at = sources.files.len() - 1;
        sources
            .files
            .insert(at, ("zz-extra.cedar".to_string(), text.to_string()));
        sources
    }

    fn error_of(sources: &Sources) -> String {
        match check(sources) {
            Ok(_) => panic!("the policies were accepted"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn every_shipped_policy_validates_strictly_against_the_schema() {
        let checked = check(&shipped()).unwrap();
        assert!(checked.policies.policies().count() >= 15);
    }

    #[test]
    fn a_syntax_error_names_file_line_and_column() {
        let error = error_of(&with_policy_file(
            "\n\n@id(\"x\")\npermit (principal, action, resource) when { ( };\n",
        ));
        assert!(error.starts_with("zz-extra.cedar:4:"), "{error}");
    }

    #[test]
    fn a_type_error_names_file_line_and_reason() {
        let text = "// comment\n@id(\"bad-attribute\")\npermit (principal, action == Action::\"transfer.read\", resource)\nwhen { resource.amount > 5 };\n";
        let error = error_of(&with_policy_file(text));
        assert!(error.starts_with("zz-extra.cedar:4:"), "{error}");
        assert!(error.contains("amount"), "{error}");
    }

    #[test]
    fn an_unknown_action_is_refused() {
        let error = error_of(&with_policy_file(
            "@id(\"typo\")\npermit (principal, action == Action::\"transfer.craete\", resource);\n",
        ));
        assert!(
            error.contains("zz-extra.cedar:2:") && error.contains("transfer.craete"),
            "{error}"
        );
    }

    #[test]
    fn policies_need_a_unique_id() {
        let error = error_of(&with_policy_file("\npermit (principal, action, resource);\n"));
        assert!(error.contains("zz-extra.cedar:2: the policy has no @id"), "{error}");
        let error = error_of(&with_policy_file(
            "@id(\"maker-is-not-checker\")\nforbid (principal, action, resource);\n",
        ));
        assert!(error.contains("already used in approvals.cedar"), "{error}");
    }

    #[test]
    fn a_bad_principals_file_is_named() {
        let mut sources = shipped();
        let last = sources.files.len() - 1;
        sources.files[last]
            .1
            .push_str("\n[principals.eve]\nkind = \"user\"\nroles = [\"auditor\", \"money-mover\"]\n");
        let error = error_of(&sources);
        assert!(
            error.contains("principals.toml") && error.contains("\"eve\""),
            "{error}"
        );
    }

    #[test]
    fn settlement_designations_are_ids_of_accounts_the_service_does_not_own() {
        let mut sources = shipped();
        let at = sources.files.iter().position(|(n, _)| n == SETTLEMENT_FILE).unwrap();
        let merchant = uuid::Uuid::from_u128(7);
        sources.files[at].1 = format!("accounts = [\"{merchant}\"]\n");
        assert!(check(&sources).unwrap().settlement_accounts.contains(&merchant));
        sources.files[at].1 = format!("accounts = [\"{}\"]\n", ledger::reserved_id(b"clearing/USD"));
        let error = error_of(&sources);
        assert!(
            error.contains("settlement.toml") && error.contains("reserved"),
            "{error}"
        );
        sources.files[at].1 = "account = []\n".to_string();
        assert!(error_of(&sources).contains("settlement.toml"));
    }

    #[test]
    fn the_set_hash_covers_every_file() {
        let a = shipped();
        let mut b = shipped();
        b.files[1].1.push(' ');
        assert_ne!(a.hashes().0, b.hashes().0);
        assert_eq!(a.hashes().0, shipped().hashes().0);
    }
}
