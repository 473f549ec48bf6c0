//! The service's one configuration struct. Every setting has an embedded default, so `finledger
//! serve` runs with none; each can be set by flag or environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::authz::token::TokenSettings;
use crate::pki::PkiPaths;
use crate::store::SequencerConfig;
use crate::tls::{TlsFiles, TlsVersionMin};

#[derive(clap::Args, Clone, Debug)]
pub struct Settings {
    /// PostgreSQL to use. Without it, a local cluster is started (or reused) under <data-dir>/pg.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory for local state: the embedded PostgreSQL cluster and the dev PKI.
    #[arg(long, env = "FINLEDGER_DATA_DIR", default_value = "var")]
    pub data_dir: PathBuf,

    /// The mutual-TLS API listener.
    #[arg(long, env = "FINLEDGER_API_LISTEN", default_value = "127.0.0.1:8443")]
    pub api_listen: SocketAddr,

    /// The API's certificate chain (PEM). Without the three TLS files, the dev PKI under
    /// <data-dir>/pki is used, and created when missing.
    #[arg(long, env = "FINLEDGER_TLS_CERT", requires_all = ["tls_key", "tls_client_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// The private key of the API's certificate (PEM).
    #[arg(long, env = "FINLEDGER_TLS_KEY", requires_all = ["tls_cert", "tls_client_ca"])]
    pub tls_key: Option<PathBuf>,

    /// The CA bundle (PEM) that client certificates must chain to.
    #[arg(long, env = "FINLEDGER_TLS_CLIENT_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_client_ca: Option<PathBuf>,

    /// The oldest TLS version accepted.
    #[arg(long, env = "FINLEDGER_TLS_VERSION_MIN", value_enum, default_value = "1.3")]
    pub tls_version_min: TlsVersionMin,

    /// The policy directory: schema.cedarschema, the *.cedar authorization policies and
    /// principals.toml (who may call the API, with roles and limits). Reloaded on SIGHUP.
    #[arg(long, env = "FINLEDGER_POLICIES", default_value = "policies")]
    pub policies: PathBuf,

    /// The JWK set (JSON) whose keys sign the tokens a trusted front-end presents for its users
    /// (EdDSA, ES256 or RS256; each key with kid and alg). Without it, tokens are refused. Reloaded on
    /// SIGHUP.
    #[arg(long, env = "FINLEDGER_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// The `iss` every front-end token must carry.
    #[arg(long, env = "FINLEDGER_JWT_ISSUER", default_value = "https://console.finledger.dev")]
    pub jwt_issuer: String,

    /// The `aud` every front-end token must carry.
    #[arg(long, env = "FINLEDGER_JWT_AUDIENCE", default_value = "finledger")]
    pub jwt_audience: String,

    /// How long a transfer held for approval waits for a decision before it expires, in seconds.
    #[arg(long, env = "FINLEDGER_HOLD_TIMEOUT_S", default_value_t = 259_200, value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
    pub hold_timeout_s: u32,

    /// The window approval limits sum over, in seconds: the most an initiator moves out of one account
    /// within it without review is its aggregate limit (principals.toml). At most seven days.
    #[arg(long, env = "FINLEDGER_APPROVAL_WINDOW_S", default_value_t = 86_400, value_parser = clap::value_parser!(u32).range(60..=604_800))]
    pub approval_window_s: u32,

    /// How often each instance looks for a fraud ruleset activated on another, in milliseconds: an
    /// activation is in effect on every instance within this (plus one batch).
    #[arg(long, env = "FINLEDGER_RULESET_POLL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub ruleset_poll_ms: u64,

    /// Currencies whose payouts clearing account the service creates at start-up (comma-separated ISO
    /// 4217 codes); settlements are made in these currencies only.
    #[arg(long, env = "FINLEDGER_SETTLEMENT_CURRENCIES", value_delimiter = ',', default_value = "USD,EUR,GBP", value_parser = parse_currency)]
    pub settlement_currencies: Vec<ledger::Currency>,

    /// Plain-HTTP operations listener: /healthz and /readyz only, never business data.
    #[arg(long, env = "FINLEDGER_OPS_LISTEN", default_value = "127.0.0.1:9464")]
    pub ops_listen: SocketAddr,

    /// Most commands committed in one database transaction.
    #[arg(long, env = "FINLEDGER_BATCH_SIZE_MAX", default_value_t = 8190, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub batch_size_max: u32,

    /// Most submissions queued for the sequencer before submitters wait.
    #[arg(long, env = "FINLEDGER_QUEUE_DEPTH_MAX", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_depth_max: u32,

    /// Accounts the sequencer keeps cached between batches.
    #[arg(long, env = "FINLEDGER_ACCOUNT_CACHE_MAX", default_value_t = 1_000_000)]
    pub account_cache_max: u32,

    /// Most batches writing or committing at once, each on its own database connection.
    #[arg(long, env = "FINLEDGER_COMMIT_PIPELINE_DEPTH", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub commit_pipeline_depth: u32,

    /// Connections in the read pool (the sequencer has its own).
    #[arg(long, env = "FINLEDGER_DB_CONNECTIONS_MAX", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_connections_max: u32,

    /// The audit log's checkpoint signing key (C2SP signed-note format; `finledger audit keygen`
    /// makes one). Without it, <data-dir>/audit/checkpoint.key is used, and created when missing.
    #[arg(long, env = "FINLEDGER_AUDIT_KEY")]
    pub audit_key: Option<PathBuf>,

    /// Sign an audit checkpoint after every commit (0), or at most this often, in milliseconds.
    #[arg(long, env = "FINLEDGER_AUDIT_CHECKPOINT_INTERVAL_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub audit_checkpoint_interval_ms: u64,

    /// Kafka bootstrap servers (comma-separated). With them the outbox relay publishes every event to
    /// Kafka; without, events are read through GET /v1/events.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Partitions of each event topic the relay creates (existing topics are left as they are).
    #[arg(long, env = "FINLEDGER_KAFKA_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub kafka_partitions: i32,

    /// Replicas of each event topic the relay creates.
    #[arg(long, env = "FINLEDGER_KAFKA_REPLICATION", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub kafka_replication: i32,

    /// Undelivered events beyond which the relay raises its alarm (logged, and shown by
    /// GET /v1/events/status). Transfers are accepted regardless.
    #[arg(long, env = "FINLEDGER_OUTBOX_ALARM_EVENTS", default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub outbox_alarm_events: i64,

    /// Merchant accounts settled every day at --settlement-time-utc (comma-separated account ids).
    #[arg(long, env = "FINLEDGER_SETTLEMENT_ACCOUNTS", value_delimiter = ',')]
    pub settlement_accounts: Vec<uuid::Uuid>,

    /// When the daily settlement runs, and its cut-off (HH:MM, UTC).
    #[arg(long, env = "FINLEDGER_SETTLEMENT_TIME_UTC", default_value = "00:00", value_parser = parse_time_utc)]
    pub settlement_time_utc: chrono::NaiveTime,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "FINLEDGER_LOG", default_value = "info")]
    pub log: String,
}

fn parse_currency(text: &str) -> Result<ledger::Currency, String> {
    ledger::Currency::from_code(text.trim()).map_err(|_| format!("{text:?} is not an ISO 4217 currency code"))
}

fn parse_time_utc(text: &str) -> Result<chrono::NaiveTime, String> {
    chrono::NaiveTime::parse_from_str(text, "%H:%M").map_err(|e| format!("expected HH:MM (UTC): {e}"))
}

impl Settings {
    pub fn sequencer(&self) -> SequencerConfig {
        SequencerConfig {
            batch_size_max: self.batch_size_max as usize,
            queue_depth_max: self.queue_depth_max as usize,
            account_cache_max: self.account_cache_max as usize,
            commit_pipeline_depth: self.commit_pipeline_depth as usize,
            ..SequencerConfig::default()
        }
    }

    /// The outbox relay's settings, when a broker is configured; `events_committed` is the sequencer's.
    pub fn relay(
        &self,
        events_committed: std::sync::Arc<tokio::sync::Notify>,
    ) -> Option<crate::outbox::relay::RelayConfig> {
        let brokers = self.kafka_brokers.clone().filter(|b| !b.trim().is_empty())?;
        Some(crate::outbox::relay::RelayConfig {
            partitions: self.kafka_partitions,
            replication: self.kafka_replication,
            alarm_events: self.outbox_alarm_events,
            ..crate::outbox::relay::RelayConfig::new(brokers, events_committed)
        })
    }

    /// Where front-end tokens come from, when they are accepted at all.
    pub fn token_settings(&self) -> Option<TokenSettings> {
        self.jwks_file.as_ref().map(|jwks_file| TokenSettings {
            jwks_file: jwks_file.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
        })
    }

    /// The checkpoint signing key file: the configured one, or the dev key's.
    pub fn audit_key_path(&self) -> PathBuf {
        self.audit_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit").join("checkpoint.key"))
    }

    pub fn postgres_dir(&self) -> PathBuf {
        self.data_dir.join("pg")
    }

    pub fn pki(&self) -> PkiPaths {
        PkiPaths {
            dir: self.data_dir.join("pki"),
        }
    }

    /// The TLS files given, or else the dev PKI's.
    pub fn tls_files(&self) -> TlsFiles {
        let pki = self.pki();
        TlsFiles {
            cert: self.tls_cert.clone().unwrap_or_else(|| pki.server_cert()),
            key: self.tls_key.clone().unwrap_or_else(|| pki.server_key()),
            client_ca: self.tls_client_ca.clone().unwrap_or_else(|| pki.ca_cert()),
            version_min: self.tls_version_min,
        }
    }

    /// Whether the API runs on the dev PKI (no TLS files configured).
    pub fn uses_dev_pki(&self) -> bool {
        self.tls_cert.is_none()
    }
}
