//! Fraud and AML screening of every new transfer: rules as data (policies/fraud/rules.toml), each a
//! checked condition over the transfer and declared features (policies/fraud/features.toml, computed in
//! [`features`]) and lists (policies/lists/). Each rule's outcome is a hit, a miss or an error; enforced
//! hits act (deny over review over allow), an error acts as the rule's `on_error` says, shadow rules
//! are recorded and never act. A ruleset is identified by the SHA-256 of its files.

pub mod backtest;
pub mod expr;
pub mod features;
pub mod lists;
pub mod screen;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use expr::{Engine, Language, Type, Value, Vocabulary};
use features::{Activity, Feature, Screened};

/// What a rule does when it hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Review,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Review => "review",
            Verdict::Deny => "deny",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Enforce,
    Shadow,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    /// No rules at all is a ruleset too: every transfer is allowed (and still recorded as screened).
    #[serde(rename = "rule", default)]
    rules: Vec<RuleDeclaration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDeclaration {
    id: toml::Spanned<String>,
    version: u32,
    description: String,
    condition: toml::Spanned<String>,
    action: Verdict,
    score: i64,
    mode: Mode,
    on_error: Verdict,
    reason: toml::Spanned<String>,
}

/// What a listing shows of a rule, read from a rules file without checking it.
#[derive(Clone, Debug, Deserialize)]
pub struct RuleHeader {
    pub id: String,
    pub version: u32,
    pub mode: Mode,
    pub action: Verdict,
}

#[derive(Deserialize)]
struct RuleHeaders {
    #[serde(rename = "rule", default)]
    rules: Vec<RuleHeader>,
}

/// The rules of a (stored, once checked) rules file, as a listing shows them; none if it does not
/// parse.
pub fn rule_headers(rules_text: &str) -> Vec<RuleHeader> {
    toml::from_str::<RuleHeaders>(rules_text)
        .map(|headers| headers.rules)
        .unwrap_or_default()
}

pub struct Rule {
    pub id: String,
    pub version: u32,
    pub description: String,
    pub source: String,
    condition: <Engine as Language>::Condition,
    pub action: Verdict,
    pub score: i64,
    pub mode: Mode,
    pub on_error: Verdict,
    reason: Template,
}

/// A reason with `{scope.name}` placeholders, checked against the vocabulary.
struct Template {
    parts: Vec<Part>,
}

enum Part {
    Text(String),
    Value(usize, usize),
}

/// The files a ruleset is made of, by name (`fraud/rules.toml`, `fraud/features.toml`,
/// `lists/<name>.toml`).
pub type Files = BTreeMap<String, String>;

pub const RULES_FILE: &str = "fraud/rules.toml";
pub const FEATURES_FILE: &str = "fraud/features.toml";

/// Largest rules or features file: a ruleset is checked whole before anything of it runs, so its size
/// bounds the work of checking it.
pub const RULESET_FILE_BYTES_MAX: usize = 256 * 1024;
/// Most rules in a ruleset.
pub const RULES_MAX: usize = 256;
/// Longest reason template of a rule.
pub const REASON_BYTES_MAX: usize = 1024;
/// How long checking a proposed ruleset may take before it is refused.
pub const COMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The fields of the transfer conditions see as `transfer.<name>`.
const TRANSFER_FIELDS: [(&str, Type); 7] = [
    ("amount_minor", Type::Int),
    ("amount_major", Type::Int),
    ("currency", Type::String),
    ("code", Type::Int),
    ("debit_account", Type::String),
    ("credit_account", Type::String),
    ("pending", Type::Bool),
];

/// One loaded, checked ruleset.
pub struct Ruleset {
    pub rules: Vec<Rule>,
    pub features: Vec<Feature>,
    vocabulary: Vocabulary,
    engine: Engine,
    files: Files,
    hash: [u8; 32],
}

/// One rule's outcome for one transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleOutcome {
    pub id: String,
    pub version: u32,
    pub mode: Mode,
    /// `hit`, or `error` (with `error`); misses are not listed.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What this outcome asks for: the rule's action on a hit, its on_error on an error; shadow rules
    /// ask for nothing.
    pub acts: Verdict,
}

/// The screening of one transfer: the verdict, the score of enforced hits, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Screening {
    pub transfer: uuid::Uuid,
    #[serde(serialize_with = "hex_hash")]
    pub ruleset: [u8; 32],
    pub verdict: Verdict,
    pub score: i64,
    pub rules: Vec<RuleOutcome>,
    /// Every feature's value, by name, when any rule hit or failed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, String>,
}

impl Ruleset {
    /// Reads policies/fraud/ and policies/lists/ under `policies`.
    pub fn load(policies: &Path) -> anyhow::Result<Ruleset> {
        let mut files = Files::new();
        for name in [RULES_FILE, FEATURES_FILE] {
            let path = policies.join(name);
            let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            files.insert(name.to_string(), text);
        }
        let texts = lists::load(&policies.join("lists"))?;
        files.extend(texts);
        Ruleset::from_files(files).map_err(|e| anyhow::anyhow!("{}/{e}", policies.display()))
    }

    /// Checks a ruleset given as its files; an error names the file, and for a condition or a
    /// reason the line and column in it.
    pub fn from_files(files: Files) -> Result<Ruleset, String> {
        for name in [RULES_FILE, FEATURES_FILE] {
            if files.get(name).is_some_and(|text| text.len() > RULESET_FILE_BYTES_MAX) {
                return Err(format!(
                    "{name}: larger than {RULESET_FILE_BYTES_MAX} bytes, the most a ruleset file may be"
                ));
            }
        }
        let text = |name: &str| files.get(name).ok_or_else(|| format!("{name}: missing"));
        let mut lists = BTreeMap::new();
        for (name, body) in files.iter().filter(|(n, _)| n.starts_with("lists/")) {
            let list = lists::parse(body).map_err(|e| format!("{name}: {e}"))?;
            let stem = name.trim_start_matches("lists/").trim_end_matches(".toml");
            lists.insert(stem.to_string(), Arc::new(list));
        }
        let features = features::parse(text(FEATURES_FILE)?, &lists).map_err(|e| format!("{FEATURES_FILE}: {e}"))?;
        let mut vocabulary = Vocabulary::default();
        for (name, ty) in TRANSFER_FIELDS {
            vocabulary.declare("transfer", name, ty);
        }
        for feature in &features {
            vocabulary.declare("f", &feature.name, feature.value_type());
        }
        let engine = Engine::default();
        let rules_text = text(RULES_FILE)?;
        let file: RulesFile = toml::from_str(rules_text).map_err(|e| format!("{RULES_FILE}: {e}"))?;
        if file.rules.len() > RULES_MAX {
            return Err(format!(
                "{RULES_FILE}: {} rules; the most a ruleset may have is {RULES_MAX}",
                file.rules.len()
            ));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(file.rules.len());
        for declaration in file.rules {
            let id = declaration.id.get_ref().clone();
            let at = |span: std::ops::Range<usize>, line: usize, column: usize, message: &str| {
                let (l, c) = within(rules_text, span, line, column);
                format!("{RULES_FILE}:{l}:{c}: rule `{id}`: {message}")
            };
            if id.is_empty() || rules.iter().any(|r| r.id == id) {
                return Err(at(declaration.id.span(), 1, 1, "ids are unique and not empty"));
            }
            if declaration.reason.get_ref().len() > REASON_BYTES_MAX {
                return Err(at(
                    declaration.reason.span(),
                    1,
                    1,
                    &format!("the reason is longer than {REASON_BYTES_MAX} bytes, the most it may be"),
                ));
            }
            let condition = engine
                .compile(declaration.condition.get_ref(), &vocabulary)
                .map_err(|e| at(declaration.condition.span(), e.line, e.column, &e.message))?;
            let reason = Template::parse(declaration.reason.get_ref(), &vocabulary)
                .map_err(|(column, message)| at(declaration.reason.span(), 1, column, &message))?;
            if declaration.action == Verdict::Allow {
                return Err(at(declaration.id.span(), 1, 1, "action is review or deny"));
            }
            rules.push(Rule {
                id,
                version: declaration.version,
                description: declaration.description,
                source: declaration.condition.into_inner(),
                condition,
                action: declaration.action,
                score: declaration.score,
                mode: declaration.mode,
                on_error: declaration.on_error,
                reason,
            });
        }
        let hash = hash(&files);
        Ok(Ruleset {
            rules,
            features,
            vocabulary,
            engine,
            files,
            hash,
        })
    }

    /// Checks a ruleset given as its files on a blocking thread, within [`COMPILE_TIMEOUT`]: checking
    /// is CPU work that must not hold an async worker, however large the (bounded) input.
    pub async fn from_files_off_thread(files: Files) -> Result<Ruleset, String> {
        let checking = tokio::task::spawn_blocking(move || Ruleset::from_files(files));
        match tokio::time::timeout(COMPILE_TIMEOUT, checking).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(format!("the ruleset could not be checked: {join}")),
            Err(_) => Err(format!(
                "checking the ruleset took longer than {} s, the most it may",
                COMPILE_TIMEOUT.as_secs()
            )),
        }
    }

    /// The id a ruleset of `files` has, without checking them.
    pub fn id_of(files: &Files) -> [u8; 32] {
        hash(files)
    }

    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Screens one transfer: computes the features, evaluates every rule and combines them.
    pub fn screen(&self, activity: &mut Activity, transfer: &Screened) -> Screening {
        let movement = transfer.movement;
        let transfer_values = [
            Value::Int(movement.amount.minor() as i64),
            Value::Int((movement.amount.minor() / 10u64.pow(movement.currency.scale())) as i64),
            Value::String(movement.currency.code().into()),
            Value::Int(i64::from(transfer.code)),
            Value::String(movement.debit_account_id.uuid().to_string().into()),
            Value::String(movement.credit_account_id.uuid().to_string().into()),
            Value::Bool(transfer.pending),
        ];
        let features = features::compute(&self.features, activity, transfer);
        self.combine(transfer.id, &transfer_values, features)
    }

    /// Evaluates every rule against the transfer's fields and its features (or the error computing
    /// them, which every rule then reports).
    fn combine(&self, id: uuid::Uuid, transfer: &[Value], features: Result<Vec<Value>, String>) -> Screening {
        let (feature_values, failure) = match features {
            Ok(values) => (values, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        let values: [(&str, &[Value]); 2] = [("transfer", transfer), ("f", &feature_values)];
        let bindings = failure.is_none().then(|| self.engine.bind(&self.vocabulary, &values));
        let mut verdict = Verdict::Allow;
        let mut score = 0;
        let mut outcomes = Vec::new();
        for rule in &self.rules {
            let result = match &bindings {
                Some(bindings) => self.engine.evaluate(&rule.condition, bindings),
                None => Err(failure.clone().unwrap_or_default()),
            };
            let outcome = match result {
                Ok(false) => continue,
                Ok(true) => RuleOutcome {
                    id: rule.id.clone(),
                    version: rule.version,
                    mode: rule.mode,
                    outcome: "hit",
                    reason: Some(rule.reason.render(&values)),
                    error: None,
                    acts: rule.action,
                },
                Err(error) => RuleOutcome {
                    id: rule.id.clone(),
                    version: rule.version,
                    mode: rule.mode,
                    outcome: "error",
                    reason: None,
                    error: Some(error),
                    acts: rule.on_error,
                },
            };
            let outcome = if rule.mode == Mode::Shadow {
                RuleOutcome {
                    acts: Verdict::Allow,
                    ..outcome
                }
            } else {
                if outcome.outcome == "hit" {
                    score += rule.score;
                }
                outcome
            };
            verdict = verdict.max(outcome.acts);
            outcomes.push(outcome);
        }
        let features = if outcomes.is_empty() {
            BTreeMap::new()
        } else {
            self.features
                .iter()
                .zip(&feature_values)
                .map(|(feature, value)| (feature.name.clone(), value.to_string()))
                .collect()
        };
        Screening {
            transfer: id,
            ruleset: self.hash,
            verdict,
            score,
            rules: outcomes,
            features,
        }
    }
}

fn hex_hash<S: serde::Serializer>(hash: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(hash))
}

/// SHA-256 over each file's name and text, in name order, each length-prefixed.
fn hash(files: &Files) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (name, text) in files {
        for part in [name.as_bytes(), text.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    hasher.finalize().into()
}

/// The 1-based line and column in `file` of the (`line`, `column`) of a TOML string value at `span`.
fn within(file: &str, span: std::ops::Range<usize>, line: usize, column: usize) -> (usize, usize) {
    let before = &file[..span.start.min(file.len())];
    let start_line = before.matches('\n').count() + 1;
    let start_column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    let value = &file[span.start.min(file.len())..];
    let (quote, leading_newline) = if value.starts_with("\"\"\"") || value.starts_with("'''") {
        (3, value[3..].starts_with('\n'))
    } else {
        (1, false)
    };
    match (line, leading_newline) {
        (1, false) => (start_line, start_column + quote + column - 1),
        (l, true) => (start_line + l, column),
        (l, false) => (start_line + l - 1, column),
    }
}

impl Template {
    /// Splits `{scope.name}` placeholders out; an unknown one is an error at its 1-based column.
    fn parse(text: &str, vocabulary: &Vocabulary) -> Result<Template, (usize, String)> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut column = 1;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let at = column + rest[..open].chars().count();
            let close = rest[open..].find('}').ok_or((at, "`{` without `}`".to_string()))?;
            let name = &rest[open + 1..open + close];
            let (scope, field) = name.split_once('.').ok_or((
                at,
                format!("`{{{name}}}`: expected {{transfer.<name>}} or {{f.<name>}}"),
            ))?;
            let (index, _) = vocabulary
                .get(scope, field)
                .ok_or((at, format!("`{{{name}}}` names no field or feature")))?;
            let scope_index = if scope == "transfer" { 0 } else { 1 };
            parts.push(Part::Value(scope_index, index));
            column = at + close + 1;
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    fn render(&self, values: &[(&str, &[Value])]) -> String {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Value(scope, index) => {
                    if let Some(value) = values.get(*scope).and_then(|(_, v)| v.get(*index)) {
                        text.push_str(&value.to_string());
                    }
                }
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use ledger::{Account, AccountId, Amount, BalanceLimit, Currency, Metadata, Movement, Timestamp};
    use uuid::Uuid;

    use super::*;

    const DAY_S: i64 = 86_400;
    const NOW_S: i64 = 1_800_000_000;

    fn shipped() -> Ruleset {
        Ruleset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_micros(seconds * 1_000_000)
    }

    #[test]
    fn rulesets_beyond_their_bounds_are_refused_naming_the_bound() {
        let files = shipped().files().clone();
        let with_rules = |rules: String| {
            let mut files = files.clone();
            files.insert(RULES_FILE.to_string(), rules);
            Ruleset::from_files(files).map(drop)
        };
        let rule = |n: usize, reason: &str| {
            format!(
                "[[rule]]\nid = \"r{n}\"\nversion = 1\ndescription = \"d\"\ncondition = \"transfer.amount_minor > 0\"\n\
                 action = \"review\"\nscore = 1\nmode = \"shadow\"\non_error = \"allow\"\nreason = \"{reason}\"\n"
            )
        };
        let too_large = format!("# {}\n", "x".repeat(RULESET_FILE_BYTES_MAX));
        assert!(with_rules(too_large).unwrap_err().contains("larger than 262144 bytes"));
        let too_many: String = (0..=RULES_MAX).map(|n| rule(n, "r")).collect();
        assert!(with_rules(too_many).unwrap_err().contains("257 rules; the most"));
        let long_reason = rule(0, &"r".repeat(REASON_BYTES_MAX + 1));
        assert!(
            with_rules(long_reason)
                .unwrap_err()
                .contains("reason is longer than 1024 bytes")
        );
        let at_the_bound: String = (0..RULES_MAX).map(|n| rule(n, "r")).collect();
        assert_eq!(with_rules(at_the_bound), Ok(()));
    }

    fn account(n: u128, age_s: i64, metadata: serde_json::Value) -> Account {
        Account {
            id: AccountId::from_stored(Uuid::from_u128(n)),
            currency: Currency::from_code("USD").unwrap(),
            code: 1,
            owner: "payments".into(),
            limit: BalanceLimit::None,
            metadata: Metadata::parse(Some(metadata)).unwrap(),
            closed: false,
            created_at: at(NOW_S - age_s),
            balances: Default::default(),
        }
    }

    /// A month-old debit account and a credit account, with recent activity to add.
    struct Bench {
        ruleset: Ruleset,
        activity: Activity,
        debit: Account,
        credit: Account,
        metadata: Metadata,
    }

    impl Bench {
        fn new(ruleset: Ruleset) -> Bench {
            Bench {
                ruleset,
                activity: Activity::default(),
                debit: account(1, 30 * DAY_S, serde_json::json!({})),
                credit: account(2, 30 * DAY_S, serde_json::json!({})),
                metadata: Metadata::default(),
            }
        }

        /// A past transfer from the debit account, `ago_s` before now.
        fn sent(&mut self, amount: &str, ago_s: i64) {
            let usd = Currency::from_code("USD").unwrap();
            let minor = Amount::parse(amount, usd).unwrap().minor();
            self.activity
                .add(self.debit.id, self.credit.id, minor, usd, at(NOW_S - ago_s));
        }

        fn screen(&mut self, amount: &str, currency: &str) -> Screening {
            let currency = Currency::from_code(currency).unwrap();
            let movement = Movement {
                debit_account_id: self.debit.id,
                credit_account_id: self.credit.id,
                amount: Amount::parse(amount, currency).unwrap(),
                currency,
            };
            let screened = Screened {
                id: Uuid::from_u128(77),
                movement: &movement,
                code: 1,
                pending: false,
                metadata: &self.metadata,
                debit: &self.debit,
                credit: &self.credit,
                now: at(NOW_S),
            };
            self.ruleset.screen(&mut self.activity, &screened)
        }
    }

    /// The rules that hit or failed, shadow ones included.
    fn hits(screening: &Screening) -> Vec<&str> {
        screening.rules.iter().map(|r| r.id.as_str()).collect()
    }

    /// The enforced rules that hit.
    fn acting(screening: &Screening) -> Vec<&str> {
        screening
            .rules
            .iter()
            .filter(|r| r.mode == Mode::Enforce)
            .map(|r| r.id.as_str())
            .collect()
    }

    #[test]
    fn an_ordinary_transfer_is_allowed_with_nothing_to_explain() {
        let screening = Bench::new(shipped()).screen("120.50", "USD");
        assert_eq!(screening.verdict, Verdict::Allow);
        assert!(screening.rules.is_empty() && screening.features.is_empty());
        assert_eq!(screening.ruleset, shipped().hash());
    }

    #[test]
    fn large_amounts_are_reviewed_from_the_threshold_on() {
        let mut bench = Bench::new(shipped());
        let hit = bench.screen("50000.00", "USD");
        assert_eq!((hit.verdict, acting(&hit)), (Verdict::Review, vec!["large-amount"]));
        assert_eq!(hit.score, 40);
        assert_eq!(
            hit.rules[0].reason.as_deref(),
            Some("50000 USD is at or above the 50,000.00 review threshold")
        );
        assert_eq!(hit.features["debit_count_1h"], "1");
        let below = bench.screen("49999.99", "USD");
        assert_eq!(below.verdict, Verdict::Allow);
        assert_eq!(bench.screen("50000.01", "EUR").verdict, Verdict::Allow, "USD rule");
    }

    #[test]
    fn the_eleventh_transfer_within_an_hour_is_reviewed() {
        let mut bench = Bench::new(shipped());
        bench.sent("10.00", 3_600); // exactly an hour ago: outside the window
        for minute in (1..=9).rev() {
            bench.sent("10.00", minute * 60);
        }
        let tenth = bench.screen("10.00", "USD");
        assert_eq!(tenth.verdict, Verdict::Allow, "{tenth:?}");
        bench.sent("10.00", 30);
        let eleventh = bench.screen("10.00", "USD");
        assert_eq!(hits(&eleventh), ["velocity-1h"]);
        assert_eq!(eleventh.features["debit_count_1h"], "11");
        assert_eq!(eleventh.features["debit_count_24h"], "12");
    }

    #[test]
    fn three_near_threshold_transfers_in_a_day_are_structuring() {
        let mut bench = Bench::new(shipped());
        bench.sent("8000.00", 25 * 3_600); // more than 24 hours ago
        bench.sent("9500.00", 3_600);
        bench.sent("7999.99", 1_800); // below 80%: not near the threshold
        let second = bench.screen("9900.00", "USD");
        assert_eq!(second.verdict, Verdict::Allow, "{second:?}");
        bench.sent("8000.00", 600);
        let third = bench.screen("9900.00", "USD");
        assert_eq!(acting(&third), ["structuring"]);
        assert_eq!(third.features["near_ctr_24h"], "3");
        assert_eq!(bench.screen("9900.01", "USD").verdict, Verdict::Allow, "above 99%");
    }

    #[test]
    fn a_new_account_sending_more_than_five_thousand_is_reviewed() {
        let mut bench = Bench::new(shipped());
        bench.debit = account(1, 6 * DAY_S, serde_json::json!({}));
        assert_eq!(hits(&bench.screen("5000.01", "USD")), ["new-account-large"]);
        assert_eq!(bench.screen("5000.00", "USD").verdict, Verdict::Allow);
        bench.debit = account(1, 7 * DAY_S, serde_json::json!({}));
        assert_eq!(bench.screen("5000.01", "USD").verdict, Verdict::Allow);
    }

    #[test]
    fn round_amounts_are_observed_in_shadow_and_never_act() {
        let mut bench = Bench::new(shipped());
        let round = bench.screen("1200.00", "EUR");
        assert_eq!(round.verdict, Verdict::Allow);
        assert_eq!(round.score, 0, "shadow hits do not score");
        assert_eq!(hits(&round), ["round-amount"]);
        assert_eq!(
            (round.rules[0].mode, round.rules[0].acts),
            (Mode::Shadow, Verdict::Allow)
        );
        assert!(bench.screen("1250.00", "EUR").rules.is_empty());
        assert!(bench.screen("900.00", "EUR").rules.is_empty());
    }

    #[test]
    fn sanctioned_accounts_and_names_are_denied() {
        let mut bench = Bench::new(shipped());
        bench.credit = account(0x5a9c1d9e_0b7e_4c3f_9d2a_00000000dead, DAY_S, serde_json::json!({}));
        let denied = bench.screen("10.00", "USD");
        assert_eq!((denied.verdict, hits(&denied)), (Verdict::Deny, vec!["sanctions"]));

        let mut bench = Bench::new(shipped());
        bench.metadata = Metadata::parse(Some(serde_json::json!({"beneficiary_name": "EXAMPLEOV, viktor"}))).unwrap();
        assert_eq!(bench.screen("10.00", "USD").verdict, Verdict::Deny);
        bench.metadata = Metadata::parse(Some(serde_json::json!({"beneficiary_name": "Viktor Example"}))).unwrap();
        assert_eq!(bench.screen("10.00", "USD").verdict, Verdict::Allow);
        bench.credit = account(2, DAY_S, serde_json::json!({"holder_name": "lukasz fictitious nowak"}));
        assert_eq!(bench.screen("10.00", "USD").verdict, Verdict::Deny);
    }

    #[test]
    fn deny_wins_over_review_and_scores_add_up() {
        let mut bench = Bench::new(shipped());
        bench.credit = account(0x5a9c1d9e_0b7e_4c3f_9d2a_00000000dead, DAY_S, serde_json::json!({}));
        let screening = bench.screen("60000.00", "USD");
        assert_eq!(screening.verdict, Verdict::Deny);
        assert_eq!(hits(&screening), ["large-amount", "round-amount", "sanctions"]);
        assert_eq!(screening.score, 140);
    }

    fn with_rules(rules: &str) -> Result<Ruleset, String> {
        let mut files = shipped().files().clone();
        files.insert(RULES_FILE.to_string(), rules.to_string());
        Ruleset::from_files(files)
    }

    fn rule(condition: &str, mode: &str, on_error: &str) -> String {
        format!(
            "[[rule]]\nid = \"r\"\nversion = 1\ndescription = \"d\"\ncondition = '{condition}'\naction = \"deny\"\n\
             score = 1\nmode = \"{mode}\"\non_error = \"{on_error}\"\nreason = \"r\"\n"
        )
    }

    #[test]
    fn errors_follow_on_error_and_are_never_skipped() {
        // Division by zero at run time: an error, not a miss.
        let failing = "transfer.amount_minor / (transfer.code - 1) > 0";
        for (on_error, verdict) in [
            ("allow", Verdict::Allow),
            ("review", Verdict::Review),
            ("deny", Verdict::Deny),
        ] {
            let mut bench = Bench::new(with_rules(&rule(failing, "enforce", on_error)).unwrap());
            let screening = bench.screen("10.00", "USD");
            assert_eq!(screening.verdict, verdict, "{on_error}");
            assert_eq!(screening.rules[0].outcome, "error");
            assert!(screening.rules[0].error.is_some());
        }
        let mut shadow = Bench::new(with_rules(&rule(failing, "shadow", "deny")).unwrap());
        let screening = shadow.screen("10.00", "USD");
        assert_eq!(
            (screening.verdict, screening.rules[0].outcome),
            (Verdict::Allow, "error")
        );
    }

    #[test]
    fn a_ruleset_that_does_not_check_names_the_file_line_and_column() {
        let cases = [
            (
                "f.debit_count_1h > 10 && f.nope",
                "rules.toml:5:40",
                "`f` has no `nope`",
            ),
            ("transfer.amount_minor > 1.5", "rules.toml:5:38", "no floating point"),
            (
                "transfer.currency > 3",
                "rules.toml:5:34",
                "cannot compare string with int",
            ),
            ("f.debit_count_1h", "rules.toml:5:14", "must be a bool"),
            ("account.id == 1", "rules.toml:5:14", "unknown name `account`"),
            ("f.debit_count_1h >", "rules.toml:5:", "rule `r`"),
            ("transfer.currency.matches(\"x\")", "rules.toml:5:", "is not available"),
        ];
        for (condition, location, message) in cases {
            let error = with_rules(&rule(condition, "enforce", "review")).err().unwrap();
            assert!(error.starts_with(&format!("fraud/{location}")), "{condition}: {error}");
            assert!(error.contains(message), "{condition}: {error}");
        }
        let bad_reason = rule("true", "enforce", "review").replace("reason = \"r\"", "reason = \"x {f.missing}\"");
        let error = with_rules(&bad_reason).err().unwrap();
        assert!(error.starts_with("fraud/rules.toml:10:13:"), "{error}");
    }
}
