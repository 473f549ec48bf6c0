//! Load on the mTLS API: the real server (rustls, axum) over a local PostgreSQL with fsync on, driven
//! by Rust clients with keep-alive connections, all on one machine.
//!
//! Scenarios, each on a fresh database, dropped when its run ends (see `support::settle`):
//! - `single`: `clients` concurrent clients, each on its own connection, POST one transfer at a time
//!   for `seconds`, once as fast as they are answered and once at a fixed total `rate` (5,000/s);
//!   throughput and latency percentiles, over HTTP/2 and over HTTP/1.1;
//! - `batch`: `batch_clients` concurrent clients POST /v1/transfers/batch with `batch_size` transfers
//!   each; transfers/s.
//!
//! Every transfer is screened by the shipped fraud rules, the velocity rule's threshold raised from 10
//! to 100,000 transfers an hour (the load sends hundreds per account within seconds, which the shipped
//! rule would hold for review: a different workload).
//!
//! Run: `cargo bench --bench api_load` (settings via FINLEDGER_BENCH_* variables below). Each scenario
//! runs `REPEATS` times; medians are reported.

mod support;

#[path = "../tests/helpers/client.rs"]
mod client;

use std::time::{Duration, Instant};

use clap::Parser;
use client::{ApiClient, Protocol, client_config};
use finledger::configuration::Settings;
use finledger::local_postgres::LocalPostgres;
use finledger::startup::{Application, Database};
use hyper::StatusCode;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use support::{env_or, median, policies_with_velocity, scale, settle};
use uuid::Uuid;

const ACCOUNTS: u128 = 1_000;

/// The velocity rule's threshold for this load (see `support::rules_with_velocity`).
const VELOCITY_PER_HOUR: u32 = 100_000;

struct Load {
    clients: usize,
    rate_per_s: f64,
    seconds: u64,
    batch_clients: usize,
    batch_size: usize,
    batch_transfers: usize,
    repeats: usize,
}

/// Full sizes under `cargo bench`, small ones under `cargo test`.
fn load() -> Load {
    Load {
        clients: env_or("FINLEDGER_BENCH_CLIENTS", 64),
        rate_per_s: env_or("FINLEDGER_BENCH_RATE", 5_000) as f64,
        seconds: env_or("FINLEDGER_BENCH_SECONDS", scale(20, 1)) as u64,
        // Enough outstanding transfers (32 x 1,000) to keep the commit pipeline's 3 batches busy.
        batch_clients: env_or("FINLEDGER_BENCH_BATCH_CLIENTS", 32),
        batch_size: env_or("FINLEDGER_BENCH_BATCH_SIZE", 1_000),
        batch_transfers: env_or("FINLEDGER_BENCH_BATCH_TRANSFERS", scale(400_000, 8_000)),
        repeats: env_or("FINLEDGER_BENCH_REPEATS", scale(3, 1)),
    }
}

#[derive(Parser)]
struct Arguments {
    #[command(flatten)]
    settings: Settings,
}

/// The service on random ports over a fresh database, with a dev PKI, and the `payments` client
/// configuration.
async fn start(cluster: &LocalPostgres, name: &str, dir: &std::path::Path) -> (Application, rustls::ClientConfig) {
    cluster
        .create_database(name)
        .await
        .expect("creating the bench database");
    let pki = dir.join(name);
    let arguments = [
        "finledger".to_string(),
        "--api-listen=127.0.0.1:0".to_string(),
        "--ops-listen=127.0.0.1:0".to_string(),
        format!("--data-dir={}", pki.display()),
        format!(
            "--policies={}",
            policies_with_velocity(&pki, VELOCITY_PER_HOUR).display()
        ),
        "--log=warn".to_string(),
    ];
    let settings = Arguments::parse_from(arguments).settings;
    let database = Database {
        options: cluster.connect_options(name),
        local: None,
    };
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect_with(&database.options)
        .await
        .expect("connecting");
    finledger::store::migrate(&mut connection).await.expect("migrating");
    let application = Application::start(&settings, database, finledger::clock::system())
        .await
        .expect("the service starts");
    let read = |file: &str| std::fs::read_to_string(pki.join("pki").join(file)).expect("a dev PKI file");
    let config = client_config(&read("ca.crt"), Some((&read("payments.crt"), &read("payments.key"))));
    (application, config)
}

fn transfer(rng: &mut impl Rng) -> Value {
    let debit = rng.random_range(1..=ACCOUNTS);
    let mut credit = rng.random_range(1..=ACCOUNTS);
    while credit == debit {
        credit = rng.random_range(1..=ACCOUNTS);
    }
    json!({"id": Uuid::new_v4(), "debit_account_id": Uuid::from_u128(debit), "credit_account_id": Uuid::from_u128(credit),
           "amount": "1.00", "currency": "USD", "code": 1})
}

async fn create_accounts(client: &ApiClient) {
    let mut tasks = Vec::new();
    for worker in 0..16u128 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for n in (1..=ACCOUNTS).filter(|n| n % 16 == worker) {
                let body = json!({"id": Uuid::from_u128(n), "currency": "USD", "code": 1});
                let answer = client.post("/v1/accounts", &body).await;
                assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
            }
        }));
    }
    for task in tasks {
        task.await.expect("account creation");
    }
}

struct SingleResult {
    requests_per_s: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
}

/// `clients` connections, each posting one transfer at a time until the deadline.
async fn single_run(
    cluster: &LocalPostgres,
    name: &str,
    dir: &std::path::Path,
    protocol: Protocol,
    rate_per_s: Option<f64>,
    load: &Load,
) -> SingleResult {
    let (application, config) = start(cluster, name, dir).await;
    let port = application.api_address.port();
    create_accounts(&ApiClient::new(port, config.clone(), Protocol::Http2)).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(load.seconds);
    let mut tasks = Vec::new();
    // At a fixed rate, each client sends on a schedule and latency counts from the scheduled time, so
    // a slow answer that delays the next request is charged to it too (no coordinated omission).
    let interval = rate_per_s.map(|rate| Duration::from_secs_f64(load.clients as f64 / rate));
    let clients = load.clients;
    for worker in 0..clients {
        let client = ApiClient::new(port, config.clone(), protocol);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(worker as u64);
            let mut latencies_us = Vec::new();
            let mut scheduled =
                started + interval.map_or(Duration::ZERO, |i| i.mul_f64(worker as f64 / clients as f64));
            while Instant::now() < deadline {
                let body = transfer(&mut rng);
                let sent = match interval {
                    Some(interval) => {
                        tokio::time::sleep_until(scheduled.into()).await;
                        scheduled += interval;
                        scheduled - interval
                    }
                    None => Instant::now(),
                };
                let answer = client.post("/v1/transfers", &body).await;
                latencies_us.push(sent.elapsed().as_micros() as u64);
                assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
            }
            latencies_us
        }));
    }
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await.expect("a load client"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    application.stop().await;
    latencies_us.sort_unstable();
    let percentile =
        |p: f64| latencies_us[((latencies_us.len() as f64 * p) as usize).min(latencies_us.len() - 1)] as f64 / 1000.0;
    SingleResult {
        requests_per_s: latencies_us.len() as f64 / elapsed,
        p50_ms: percentile(0.50),
        p95_ms: percentile(0.95),
        p99_ms: percentile(0.99),
    }
}

/// `batch_clients` connections posting batches of `batch_size` transfers; durable transfers/s.
async fn batch_run(cluster: &LocalPostgres, name: &str, dir: &std::path::Path, load: &Load) -> f64 {
    let (application, config) = start(cluster, name, dir).await;
    let port = application.api_address.port();
    create_accounts(&ApiClient::new(port, config.clone(), Protocol::Http2)).await;
    let batches_per_client = (load.batch_transfers / load.batch_size / load.batch_clients).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..load.batch_clients {
        let client = ApiClient::new(port, config.clone(), Protocol::Http2);
        let batch_size = load.batch_size;
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + worker as u64);
            for _ in 0..batches_per_client {
                let transfers: Vec<Value> = (0..batch_size).map(|_| transfer(&mut rng)).collect();
                let answer = client
                    .post("/v1/transfers/batch", &json!({"transfers": transfers}))
                    .await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
                assert!(
                    !answer.text.contains(r#""status":"failed""#),
                    "a transfer of the batch failed"
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("a batch client");
    }
    let elapsed = started.elapsed().as_secs_f64();
    application.stop().await;
    (batches_per_client * load.batch_clients * load.batch_size) as f64 / elapsed
}

fn main() -> anyhow::Result<()> {
    let load = load();
    let dir = tempfile::tempdir()?;
    let cluster = LocalPostgres::start(&dir.path().join("pg"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut single: Vec<(Protocol, Option<f64>, Vec<SingleResult>)> = [Protocol::Http2, Protocol::Http1]
        .into_iter()
        .flat_map(|protocol| {
            [
                (protocol, None, Vec::new()),
                (protocol, Some(load.rate_per_s), Vec::new()),
            ]
        })
        .collect();
    let mut batch = Vec::new();
    runtime.block_on(async {
        for repeat in 0..load.repeats {
            for (protocol, rate, results) in &mut single {
                let name = format!("single_{protocol:?}_{}_{repeat}", rate.is_some()).to_lowercase();
                let result = single_run(&cluster, &name, dir.path(), *protocol, *rate, &load).await;
                eprintln!(
                    "repeat {repeat} {protocol:?} rate {rate:?}: {:.0} req/s, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
                    result.requests_per_s, result.p50_ms, result.p95_ms, result.p99_ms
                );
                results.push(result);
                settle(&cluster, &name).await;
            }
            let name = format!("batch_{repeat}");
            batch.push(batch_run(&cluster, &name, dir.path(), &load).await);
            settle(&cluster, &name).await;
            eprintln!("repeat {repeat} batch: {:.0} transfers/s", batch[repeat]);
        }
    });
    println!(
        "clients={} seconds={} batch_clients={} batch_size={} batch_transfers={} repeats={}",
        load.clients, load.seconds, load.batch_clients, load.batch_size, load.batch_transfers, load.repeats
    );
    println!("| scenario | requests/s | p50 ms | p95 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for (protocol, rate, results) in &single {
        let pick = |f: fn(&SingleResult) -> f64| median(&mut results.iter().map(f).collect::<Vec<_>>());
        let pace = match rate {
            Some(rate) => format!("at a fixed {rate:.0} requests/s"),
            None => "as fast as answered".to_string(),
        };
        println!(
            "| (a) single transfers, {} clients, {protocol:?}, {pace} | {:.0} | {:.2} | {:.2} | {:.2} |",
            load.clients,
            pick(|r| r.requests_per_s),
            pick(|r| r.p50_ms),
            pick(|r| r.p95_ms),
            pick(|r| r.p99_ms)
        );
    }
    println!(
        "| (b) batches of {}, {} clients: transfers/s | {:.0} | | | |",
        load.batch_size,
        load.batch_clients,
        median(&mut batch)
    );
    Ok(())
}
