//! The outbox relay against a local Kafka-protocol broker (tansu, in-memory storage, started here):
//!
//! - `relay`: events/s draining a backlog of committed events (transfers and checkpoints, as the
//!   sequencer writes them) from PostgreSQL to the broker, acknowledged and marked delivered;
//! - `raw producer`: the baseline, the same number of messages of the same size produced straight to
//!   the broker by one idempotent producer (acks=all), with no database;
//! - `commit to broker`: p50/p99 from a transfer's commit to its event arriving at a consumer, with the
//!   relay running and transfers committed one at a time.
//!
//! Run: `cargo bench --bench relay` (tansu must be installed: `make test` installs it). Settings via
//! FINLEDGER_BENCH_* variables below; each throughput scenario runs `REPEATS` times and the median is
//! reported with its ratio to the baseline.

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use finledger::local_postgres::LocalPostgres;
use finledger::outbox::relay::{self, RelayConfig, RelayStatus};
use finledger::outbox::{EventType, position};
use finledger::store::SequencerConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{Connection, PgConnection};
use support::{bench_audit, env_or, ledger_with_accounts, median, scale, transfer_command};
use uuid::Uuid;

const ACCOUNTS: u128 = 1_000;
const RAW_TOPIC: &str = "bench.raw.v1";

struct Broker(Child, u16);

impl Broker {
    fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let home = std::env::var("HOME").unwrap_or_default();
        let tansu = ["tansu".to_string(), format!("{home}/.cargo/bin/tansu")]
            .into_iter()
            .find(|path| Command::new(path).arg("--help").stdout(Stdio::null()).status().is_ok())
            .expect("tansu is installed");
        let child = Command::new(tansu)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &listener,
            ])
            .args(["--advertised-listener-url", &listener])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker(child, port)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.1)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn relay_config(broker: &Broker, events_committed: Arc<tokio::sync::Notify>) -> RelayConfig {
    RelayConfig {
        replication: 1,
        partitions: 6,
        ..RelayConfig::new(broker.address(), events_committed)
    }
}

/// Commits `transfers` transfers (relay off), then drains them with the relay; events/s and count.
async fn relay_run(cluster: &LocalPostgres, broker: &Broker, name: &str, transfers: usize) -> (f64, i64) {
    let (options, ledger, shutdown) =
        ledger_with_accounts(cluster, name, SequencerConfig::default(), bench_audit(), ACCOUNTS).await;
    let commands: Vec<_> = (0..transfers)
        .map(|i| {
            let debit = 1 + (i as u128 % ACCOUNTS);
            transfer_command(Uuid::new_v4(), debit, 1 + (debit % ACCOUNTS))
        })
        .collect();
    for chunk in commands.chunks(8190) {
        ledger.submit(chunk.to_vec()).await.expect("transfers commit");
    }
    shutdown.drain().await;
    let mut connection = PgConnection::connect_with(&options).await.expect("connecting");
    let backlog = position(&mut connection).await.expect("the outbox position").written;
    let status = Arc::new(RelayStatus::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(relay::run(
        options.clone(),
        relay_config(broker, Arc::default()),
        status.clone(),
        stopped,
    ));
    loop {
        if position(&mut connection).await.expect("the outbox position").delivered == backlog {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    let _ = task.await;
    (backlog as f64 / elapsed.as_secs_f64(), backlog)
}

/// The baseline: `count` messages of `size` bytes straight to the broker.
async fn raw_run(broker: &Broker, count: i64, size: usize) -> f64 {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("a producer");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .create()
        .expect("an admin client");
    let topic = NewTopic::new(RAW_TOPIC, 6, TopicReplication::Fixed(1));
    // Created by the first run; later runs find it.
    let _ = admin.create_topics([&topic], &AdminOptions::new()).await;
    let payload = vec![b'x'; size];
    let started = Instant::now();
    let mut waiting = std::collections::VecDeque::new();
    for i in 0..count {
        let key = format!("{}", i % ACCOUNTS as i64);
        let record = FutureRecord::to(RAW_TOPIC).key(&key).payload(&payload);
        waiting.push_back(producer.send_result(record).map_err(|(e, _)| e).expect("queued"));
        if waiting.len() >= 100_000 {
            waiting
                .pop_front()
                .unwrap()
                .await
                .expect("delivered")
                .expect("acknowledged");
        }
    }
    for delivery in waiting {
        delivery.await.expect("delivered").expect("acknowledged");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// p50 and p99 (ms) from commit to arrival at a consumer, over `count` single transfers, on a broker
/// of its own (so the consumer has nothing older to read first).
async fn latency_run(cluster: &LocalPostgres, count: usize) -> (f64, f64) {
    let broker = &Broker::start();
    let config = SequencerConfig::default();
    let events_committed = config.events_committed.clone();
    let (options, ledger, shutdown) = ledger_with_accounts(cluster, "latency", config, bench_audit(), ACCOUNTS).await;
    let status = Arc::new(RelayStatus::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let relay = relay_config(broker, events_committed);
    let relay_task = tokio::spawn(relay::run(options.clone(), relay, status, stopped));
    let address = broker.address();
    let (arrivals_tx, arrivals_rx) = std::sync::mpsc::channel::<(String, Instant)>();
    let consumer_thread = std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", address)
            .set("group.id", format!("bench-{}", Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("fetch.wait.max.ms", "5")
            .create()
            .expect("a consumer");
        consumer
            .subscribe(&[EventType::TransferPosted.topic()])
            .expect("subscribing");
        let mut received = 0;
        while received < count {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                let payload: serde_json::Value =
                    serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or_default();
                if let Some(id) = payload["transfer_id"].as_str() {
                    let _ = arrivals_tx.send((id.to_string(), Instant::now()));
                    received += 1;
                }
            }
        }
    });
    // Let the consumer join its group before timing anything.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut committed = HashMap::new();
    for i in 0..count {
        let id = Uuid::new_v4();
        let debit = 1 + (i as u128 % ACCOUNTS);
        ledger
            .submit(vec![transfer_command(id, debit, 1 + (debit % ACCOUNTS))])
            .await
            .expect("the transfer commits");
        committed.insert(id.to_string(), Instant::now());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    consumer_thread.join().expect("the consumer thread");
    let mut samples: Vec<f64> = arrivals_rx
        .try_iter()
        .filter_map(|(id, at)| {
            committed
                .get(&id)
                .map(|c| at.saturating_duration_since(*c).as_secs_f64() * 1e3)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let _ = stop.send(true);
    let _ = relay_task.await;
    shutdown.drain().await;
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

fn main() -> anyhow::Result<()> {
    let transfers = env_or("FINLEDGER_BENCH_RELAY_TRANSFERS", scale(200_000, 5_000));
    let repeats = env_or("FINLEDGER_BENCH_REPEATS", scale(3, 1));
    let latency_count = env_or("FINLEDGER_BENCH_LATENCY_TRANSFERS", scale(1_000, 50));
    let dir = tempfile::tempdir()?;
    let cluster = LocalPostgres::start(dir.path())?;
    let broker = Broker::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let (mut relay, mut raw) = (Vec::new(), Vec::new());
        let mut events = 0;
        for repeat in 0..repeats {
            let (rate, count) = relay_run(&cluster, &broker, &format!("relay{repeat}"), transfers).await;
            events = count;
            relay.push(rate);
            // Transfer events are ~420 bytes of JSON.
            raw.push(raw_run(&broker, count, 420).await);
            println!(
                "repeat {repeat}: relay {rate:.0} events/s, raw producer {:.0} messages/s",
                raw[repeat]
            );
        }
        let (relay, raw) = (median(&mut relay), median(&mut raw));
        println!("events per run: {events} ({transfers} transfers and their checkpoints)");
        println!("relay (median):        {relay:>9.0} events/s");
        println!(
            "raw producer (median): {raw:>9.0} messages/s   relay/raw = {:.2}",
            relay / raw
        );
        let (p50, p99) = latency_run(&cluster, latency_count).await;
        println!("commit to broker to consumer, {latency_count} single transfers: p50 {p50:.1} ms, p99 {p99:.1} ms");
    });
    Ok(())
}
