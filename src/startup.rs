//! Bringing the service up and down: database (given or embedded), migrations, the sequencer, the
//! listeners, and an orderly shutdown on Ctrl-C or SIGTERM.

use std::str::FromStr;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::net::TcpListener;

use crate::configuration::Settings;
use crate::local_postgres::LocalPostgres;
use crate::store::{self, Store, sequencer};

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
    let mut database = open_database(&settings).await?;
    let store = Store::connect(database.options.clone(), settings.db_connections_max).await?;
    let (_ledger, shutdown) = sequencer::spawn(database.options.clone(), settings.sequencer(), crate::clock::system());
    let listener = TcpListener::bind(settings.ops_listen)
        .await
        .with_context(|| format!("binding the operations port {}", settings.ops_listen))?;
    tracing::info!(ops = %settings.ops_listen, embedded_postgres = database.local.is_some(), "finledger serving");
    axum::serve(listener, crate::ops::router(store.pool().clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shutting down: draining the sequencer");
    shutdown.drain().await;
    store.pool().close().await;
    if let Some(mut local) = database.local.take() {
        tokio::task::spawn_blocking(move || local.stop()).await?;
    }
    tracing::info!("stopped");
    Ok(())
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

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler succeeds at start-up");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
