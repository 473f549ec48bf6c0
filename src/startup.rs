//! Bringing the service up and down: database (given or embedded), migrations, principals and TLS,
//! the sequencer, the API and operations listeners, and an orderly shutdown on Ctrl-C or SIGTERM.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum_server::tls_rustls::RustlsConfig;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::AppState;
use crate::authz::Authorizer;
use crate::clock::Clock;
use crate::configuration::Settings;
use crate::fraud::Ruleset;
use crate::local_postgres::LocalPostgres;
use crate::outbox::relay::{self, RelayStatus};
use crate::rules_in_effect::RulesInEffect;
use crate::settlement::Settlements;
use crate::store::sequencer::FraudScreening;
use crate::store::{self, AuditMode, SequencerConfig, Store, sequencer};
use crate::tls::{self, ClientCertificateAcceptor};

/// The database the service runs on, and the local cluster when the service owns one.
pub struct Database {
    pub options: PgConnectOptions,
    pub local: Option<LocalPostgres>,
}

const LOCAL_DATABASE: &str = "finledger";

/// Connects to DATABASE_URL, or starts (or reuses) the embedded cluster, and applies migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    let database = match &settings.database_url {
        Some(url) => Database {
            options: PgConnectOptions::from_str(url).context("parsing DATABASE_URL")?,
            local: None,
        },
        None => {
            let dir = settings.postgres_dir();
            let local = tokio::task::spawn_blocking(move || LocalPostgres::start(&dir)).await??;
            local.create_database(LOCAL_DATABASE).await?;
            Database {
                options: local.connect_options(LOCAL_DATABASE),
                local: Some(local),
            }
        }
    };
    let mut connection = PgConnection::connect_with(&database.options)
        .await
        .context("connecting to PostgreSQL")?;
    store::migrate(&mut connection).await.context("applying migrations")?;
    connection.close().await?;
    Ok(database)
}

/// `finledger serve`: runs until Ctrl-C or SIGTERM, then drains and exits.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let database = open_database(&settings).await?;
    let running = Application::start(&settings, database, crate::clock::system()).await?;
    let _reload = tls::reload_on_sighup(running.tls.clone(), settings.tls_files())?;
    let _reload_policies = running.reload_policies_on_sighup()?;
    tracing::info!(
        api = %running.api_address,
        ops = %running.ops_address,
        "finledger serving"
    );
    shutdown_signal().await;
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// How long open API connections get to finish their requests at shutdown.
const CONNECTIONS_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the outbox relay gets to finish its chunk at shutdown.
const RELAY_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The running service: the API and operations listeners over one sequencer and read pool.
pub struct Application {
    pub api_address: SocketAddr,
    pub ops_address: SocketAddr,
    /// The live TLS configuration: reloading it changes what new connections get.
    pub tls: RustlsConfig,
    api_handle: axum_server::Handle<SocketAddr>,
    api_task: JoinHandle<std::io::Result<()>>,
    ops_stop: oneshot::Sender<()>,
    ops_task: JoinHandle<std::io::Result<()>>,
    sequencer: sequencer::Shutdown,
    store: Store,
    database: Database,
    /// The live policy set and token keys.
    pub authz: Arc<Authorizer>,
    /// The live fraud ruleset.
    pub fraud: Arc<ArcSwap<Ruleset>>,
    rules: Arc<RulesInEffect>,
    ledger: store::LedgerHandle,
    /// The outbox relay, when a broker is configured: its stop signal and task.
    relay: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
    /// The daily settlement of configured accounts: its stop signal and task.
    schedule: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
    /// The poll that takes rulesets activated on other instances into effect: its stop signal and task.
    follow: (tokio::sync::watch::Sender<bool>, JoinHandle<()>),
}

impl Application {
    /// Loads the policy directory and TLS files (creating the dev PKI when none is configured), starts
    /// the sequencer, records the policy set in the audit log and binds both listeners. Any invalid
    /// file stops start-up with its path, line and reason.
    pub async fn start(settings: &Settings, database: Database, clock: Clock) -> anyhow::Result<Application> {
        let authz = Arc::new(
            Authorizer::load(&settings.policies, settings.token_settings())
                .with_context(|| format!("loading the policies in {}", settings.policies.display()))?,
        );
        if settings.uses_dev_pki() && !settings.pki().ca_cert().exists() {
            let dir = settings.pki().dir;
            crate::pki::init(&dir, authz.current().principals().trust_domain(), false)?;
            tracing::info!(dir = %dir.display(), "created the dev PKI");
        }
        let tls = RustlsConfig::from_config(tls::server_config(&settings.tls_files())?);
        let store = Store::connect(database.options.clone(), settings.db_connections_max).await?;
        let audit_key = Arc::new(crate::evidence::service_key(
            &settings.audit_key_path(),
            settings.audit_key.is_some(),
        )?);
        let audit = AuditMode::Signed {
            signer: audit_key.clone(),
            checkpoint_interval: Duration::from_millis(settings.audit_checkpoint_interval_ms),
        };
        // The policy files are checked at every start; a ruleset activated through the API wins,
        // with the files' lists.
        let rules = Arc::new(RulesInEffect::load(&settings.policies, store.clone()).await?);
        let fraud = rules.current().clone();
        let config = SequencerConfig {
            fraud: Some(FraudScreening {
                ruleset: fraud.clone(),
                hold_timeout_s: settings.hold_timeout_s,
                approval_window_s: settings.approval_window_s,
            }),
            ..settings.sequencer()
        };
        let events_committed = config.events_committed.clone();
        let (ledger, sequencer) = sequencer::spawn(database.options.clone(), config, audit, clock.clone());
        record_policy_set(&ledger, &authz.current()).await?;
        let relay_status = Arc::new(RelayStatus::default());
        let relay = settings.relay(events_committed).map(|config| {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(relay::run(
                database.options.clone(),
                config,
                relay_status.clone(),
                stopped,
            ));
            (stop, task)
        });
        let settlements = Settlements::new(store.clone(), ledger.clone(), clock.clone());
        settlements
            .create_clearing_accounts(&settings.settlement_currencies)
            .await
            .context("creating the payouts clearing accounts")?;
        let schedule = (!settings.settlement_accounts.is_empty()).then(|| {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(crate::settlement::run_schedule(
                settlements.clone(),
                authz.clone(),
                settings.settlement_accounts.clone(),
                settings.settlement_time_utc,
                stopped,
            ));
            (stop, task)
        });
        let follow = {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let interval = Duration::from_millis(settings.ruleset_poll_ms);
            let task = tokio::spawn(follow_activations(rules.clone(), ledger.clone(), interval, stopped));
            (stop, task)
        };
        let state = AppState {
            relay: relay.is_some().then(|| relay_status.clone()),
            settlements,
            ledger: ledger.clone(),
            store: store.clone(),
            authz: authz.clone(),
            clock,
            audit_key: audit_key.verifier(),
            hold_timeout_s: settings.hold_timeout_s,
            rules: rules.clone(),
        };
        let ops_listener = TcpListener::bind(settings.ops_listen)
            .await
            .with_context(|| format!("binding the operations port {}", settings.ops_listen))?;
        let ops_address = ops_listener.local_addr()?;
        let (ops_stop, ops_stopped) = oneshot::channel::<()>();
        let ops = axum::serve(ops_listener, crate::ops::router(store.pool().clone())).with_graceful_shutdown(async {
            let _ = ops_stopped.await;
        });
        let ops_task = tokio::spawn(ops.into_future());
        let api_handle = axum_server::Handle::new();
        let api = axum_server::bind(settings.api_listen)
            .acceptor(ClientCertificateAcceptor::new(tls.clone()))
            .handle(api_handle.clone())
            .serve(crate::api::router(state).into_make_service());
        let api_task = tokio::spawn(api);
        let api_address = api_handle
            .listening()
            .await
            .with_context(|| format!("binding the API port {}", settings.api_listen))?;
        Ok(Application {
            api_address,
            ops_address,
            tls,
            api_handle,
            api_task,
            ops_stop,
            ops_task,
            sequencer,
            store,
            database,
            authz,
            fraud,
            rules,
            ledger,
            relay,
            schedule,
            follow,
        })
    }

    /// Loads the policy directory (and JWKS file) again: on success the new set takes effect at
    /// once and is recorded in the audit log; on any error the old set stays and the error is
    /// returned. Returns whether the set changed.
    pub async fn reload_policies(&self) -> anyhow::Result<bool> {
        reload_policies(&self.authz, &self.ledger).await
    }

    /// Loads the fraud rules and lists again: on success the new ruleset screens every transfer from
    /// the next batch on; on any error the old one stays and the error is returned. Returns whether
    /// the ruleset changed.
    pub async fn reload_fraud_rules(&self) -> anyhow::Result<bool> {
        self.rules.reload_files(&self.ledger).await
    }

    /// Reloads the policies and the fraud rules on every SIGHUP, logging the outcome.
    pub fn reload_policies_on_sighup(&self) -> anyhow::Result<JoinHandle<()>> {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing a SIGHUP handler")?;
        let (authz, ledger, rules) = (self.authz.clone(), self.ledger.clone(), self.rules.clone());
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                if let Err(error) = reload_policies(&authz, &ledger).await {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "policy reload failed; the previous policies stay"
                    );
                }
                if let Err(error) = rules.reload_files(&ledger).await {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "fraud rules reload failed; the previous ruleset stays"
                    );
                }
            }
        }))
    }

    /// Stops taking connections, lets open requests finish (bounded), commits what the sequencer
    /// holds, and stops the embedded PostgreSQL if the service owns it.
    pub async fn stop(mut self) {
        tracing::info!("shutting down: draining connections and the sequencer");
        self.api_handle.graceful_shutdown(Some(CONNECTIONS_DRAIN_TIMEOUT));
        if let Some((stop, task)) = self.schedule.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
        let (stop, task) = self.follow;
        let _ = stop.send(true);
        let _ = task.await;
        let _ = self.ops_stop.send(());
        let _ = self.api_task.await;
        let _ = self.ops_task.await;
        self.sequencer.drain().await;
        if let Some((stop, mut task)) = self.relay.take() {
            // The relay stops between chunks; one still waiting for a broker is cut short, which
            // loses nothing: its events stay undelivered in the outbox for the next relay.
            let _ = stop.send(true);
            if tokio::time::timeout(RELAY_STOP_TIMEOUT, &mut task).await.is_err() {
                task.abort();
            }
        }
        self.store.pool().close().await;
        if let Some(mut local) = self.database.local.take() {
            let _ = tokio::task::spawn_blocking(move || local.stop()).await;
        }
    }
}

/// Takes rulesets activated on other instances into effect, looking every `interval` until stopped.
async fn follow_activations(
    rules: Arc<RulesInEffect>,
    ledger: store::LedgerHandle,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if let Err(error) = rules.follow_activations(&ledger).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "fraud rules: the latest activation could not be taken into effect; retrying"
            );
        }
    }
}

async fn reload_policies(authz: &Authorizer, ledger: &store::LedgerHandle) -> anyhow::Result<bool> {
    let Some(policies) = authz.reload()? else {
        tracing::info!("policies reloaded: unchanged");
        return Ok(false);
    };
    record_policy_set(ledger, &policies).await?;
    tracing::info!(
        hash = hex::encode(policies.hash()),
        "policies reloaded: a new set is in effect"
    );
    Ok(true)
}

/// Records that `policies` took effect.
async fn record_policy_set(ledger: &store::LedgerHandle, policies: &crate::authz::Policies) -> anyhow::Result<()> {
    let actor = audit::Actor {
        policy_set: Some(policies.hash()),
        ..audit::Actor::system()
    };
    ledger
        .acting_as(actor)
        .record(vec![policies.loaded_event()])
        .await
        .context("recording the policy set in the audit log")
}

/// `finledger migrate`: applies migrations and exits.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let mut database = open_database(&settings).await?;
    if let Some(mut local) = database.local.take() {
        tokio::task::spawn_blocking(move || local.stop()).await?;
    }
    tracing::info!("migrations applied");
    Ok(())
}

/// `finledger audit export`: writes an evidence bundle from the database.
pub async fn export_audit(settings: Settings, out: &Path, from: u64, to: Option<u64>) -> anyhow::Result<()> {
    let key = crate::evidence::read_key(&settings.audit_key_path())?;
    let mut database = open_database(&settings).await?;
    let result = async {
        let mut connection = PgConnection::connect_with(&database.options).await?;
        crate::evidence::export(&mut connection, out, from, to, &key.verifier()).await
    }
    .await;
    if let Some(mut local) = database.local.take() {
        tokio::task::spawn_blocking(move || local.stop()).await?;
    }
    let exported = result?;
    println!(
        "wrote {}: records {}..{} of a log of {}{}",
        out.display(),
        exported.from_seq,
        exported.to_seq,
        exported.checkpoint_size,
        if exported.balances {
            ", with the database's balances"
        } else {
            ""
        }
    );
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler succeeds at start-up");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
