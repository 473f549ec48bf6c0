//! The outbox relay against a real Kafka-protocol broker (tansu, started here; Apache Kafka in a
//! container where a Docker daemon is reachable, for the test that needs no fault injection) and
//! against librdkafka's mock cluster for injected produce errors: every committed event arrives, in order per key, and a
//! consumer can drop duplicates by id — through a broker outage, a relay that fails, and a service
//! killed between commit and acknowledgement.

mod helpers;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use finledger::identity::PrincipalKind;
use helpers::app::TestApp;
use helpers::client::{ApiClient, Protocol, client_config};
use helpers::events::read_all;
use helpers::id;
use helpers::kafka::{AnyBroker, Broker, EventReader};
use hyper::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

/// Accounts 1 to `count`, as `payments`.
async fn accounts(client: &ApiClient, count: u128) {
    for n in 1..=count {
        let body = json!({"id": id(n), "currency": "USD", "code": 1, "flags": {}, "metadata": {}});
        let answer = client.post("/v1/accounts", &body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
}

/// A batch of `size` transfers numbered from `first`, spread over accounts 1 to `accounts`.
async fn batch(client: &ApiClient, first: u128, size: u128, accounts: u128) {
    let transfers: Vec<Value> = (first..first + size)
        .map(|n| {
            json!({"id": id(n), "debit_account_id": id(1 + n % accounts), "credit_account_id": id(1 + (n + 1) % accounts),
                   "amount": "1.00", "currency": "USD", "code": 1, "metadata": {}})
        })
        .collect();
    let answer = client
        .post("/v1/transfers/batch", &json!({ "transfers": transfers }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let results = answer.body["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["status"] == "created"), "{}", answer.text);
}

/// Waits (bounded) until the relay has delivered every event written; returns how many.
async fn delivered_all(reader: &ApiClient) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = reader.get("/v1/events/status").await;
        assert_eq!(status.status, StatusCode::OK, "{}", status.text);
        if status.body["lag"] == 0 {
            return status.body["delivered"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "the relay did not catch up: {}", status.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the relay to deliver everything written, then reads the topics at `address` until every
/// event in the outbox has arrived (checked on arrival: headers, schema, per-key order) and asserts
/// that nothing else did. Returns the consumer.
async fn everything_arrives(address: &str, reader: &ApiClient) -> EventReader {
    let delivered = delivered_all(reader).await;
    let expected = outbox_ids(reader).await;
    assert_eq!(expected.len() as i64, delivered);
    let consumer = consume(EventReader::new_at(address), expected.len()).await;
    let arrived: HashSet<String> = consumer.kept.ids.keys().cloned().collect();
    assert_eq!(arrived, expected);
    consumer
}

/// The ids of every event in the outbox.
async fn outbox_ids(reader: &ApiClient) -> HashSet<String> {
    read_all(reader, 1000)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// The outbox alarm threshold the tests configure.
const ALARM_EVENTS: i64 = 100;

fn kafka_settings(brokers: &str) -> Vec<String> {
    vec![
        format!("--kafka-brokers={brokers}"),
        format!("--outbox-alarm-events={ALARM_EVENTS}"),
        "--kafka-replication=1".to_string(),
        "--kafka-partitions=3".to_string(),
    ]
}

/// The service publishing to `brokers`, without fraud rules (the tests move money in volumes the
/// default velocity rule would hold for review).
async fn spawn_with_kafka(brokers: &str) -> (TestApp, tempfile::TempDir) {
    let settings = kafka_settings(brokers);
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::policies_without_fraud_rules(scratch.path());
    (TestApp::spawn_in(&policies, &settings).await, scratch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_event_arrives_once_in_order_per_key() {
    let broker = AnyBroker::start().await;
    eprintln!("broker: {}", broker.kind());
    let (app, _policies) = spawn_with_kafka(&broker.address()).await;
    let payments = app.payments();
    accounts(&payments, 5).await;
    for chunk in 0..4 {
        batch(&payments, 1000 + chunk * 250, 250, 5).await;
    }
    let reader = app.client(PrincipalKind::Service, "payouts");
    let consumer = everything_arrives(&broker.address(), &reader).await;
    assert!(consumer.kept.count() > 1000, "{} events", consumer.kept.count());
    // Transfers are keyed by their credit account; each of the five saw its 200 in order.
    let transfers = consumer
        .arrived
        .iter()
        .filter(|a| a.topic == "ledger.transfers.v1")
        .count();
    assert_eq!(transfers, 1000 + consumer.kept.duplicates);
    for n in 1..=5 {
        assert_eq!(consumer.kept.by_key[&id(n).to_string()].len(), 200);
    }
    // Checkpoints went to the witness topic.
    assert!(consumer.arrived.iter().any(|a| a.topic == "ledger.audit.checkpoint.v1"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_under_load_loses_nothing_and_transfers_go_on() {
    let broker = Broker::start();
    let (app, _policies) = spawn_with_kafka(&broker.address()).await;
    let payments = app.payments();
    accounts(&payments, 4).await;
    batch(&payments, 100, 100, 4).await;
    let reader = app.client(PrincipalKind::Service, "payouts");
    let before = delivered_all(&reader).await;

    // The broker stops answering; transfers keep committing meanwhile.
    broker.pause();
    let paused_at = Instant::now();
    let mut next = 1000;
    while paused_at.elapsed() < Duration::from_secs(4) {
        batch(&payments, next, 50, 4).await;
        next += 50;
    }
    let status = reader.get("/v1/events/status").await;
    assert!(
        status.body["written"].as_i64().unwrap() > before + 50,
        "transfers stopped during the outage: {}",
        status.text
    );
    assert!(status.body["lag"].as_i64().unwrap() > ALARM_EVENTS, "{}", status.text);
    // The backlog passed the alarm threshold; the relay's monitor says so (bounded wait: it polls).
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.get("/v1/events/status").await.body["relay"]["alarm"] != true {
        assert!(Instant::now() < deadline, "no alarm over a backlog above its threshold");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.resume();
    batch(&payments, next, 50, 4).await;
    everything_arrives(&broker.address(), &reader).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.get("/v1/events/status").await.body["relay"]["alarm"] != false {
        assert!(
            Instant::now() < deadline,
            "the alarm stayed up after the backlog drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_errors_are_retried_with_backoff_and_nothing_is_lost() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = MockCluster::new(1).unwrap();
    let (app, _policies) = spawn_with_kafka(&cluster.bootstrap_servers()).await;
    let payments = app.payments();
    accounts(&payments, 3).await;
    let reader = app.client(PrincipalKind::Service, "payouts");
    delivered_all(&reader).await;
    // The next produce requests are refused: delivery fails, and the relay sends again.
    let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4];
    cluster.request_errors(RDKafkaApiKey::Produce, &refused);
    batch(&payments, 100, 60, 3).await;
    batch(&payments, 200, 60, 3).await;
    everything_arrives(&cluster.bootstrap_servers(), &reader).await;
    let status = reader.get("/v1/events/status").await;
    assert!(
        status.body["relay"]["failures"].as_i64().unwrap() >= 1,
        "{}",
        status.text
    );
    assert_eq!(status.body["relay"]["leader"], true);
    app.stop().await;
    drop(cluster);
}

fn serve(data_dir: &Path, ops: u16, api: u16, brokers: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_finledger"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("FINLEDGER_POLICIES", helpers::policies_without_fraud_rules(data_dir))
        .env("FINLEDGER_DATA_DIR", data_dir)
        .env("FINLEDGER_OPS_LISTEN", format!("127.0.0.1:{ops}"))
        .env("FINLEDGER_API_LISTEN", format!("127.0.0.1:{api}"))
        .env("KAFKA_BROKERS", brokers)
        .env("FINLEDGER_KAFKA_REPLICATION", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting finledger serve")
}

/// A client of the service in `data_dir` (its dev PKI) as `name`, once it answers.
async fn dev_client(data_dir: &Path, api: u16, name: &str, child: &mut Child) -> ApiClient {
    let pki = data_dir.join("pki");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(child.try_wait().unwrap().is_none(), "finledger serve exited");
        if let (Ok(ca), Ok(cert), Ok(key)) = (
            std::fs::read_to_string(pki.join("ca.crt")),
            std::fs::read_to_string(pki.join(format!("{name}.crt"))),
            std::fs::read_to_string(pki.join(format!("{name}.key"))),
        ) {
            let client = ApiClient::new(api, client_config(&ca, Some((&cert, &key))), Protocol::Http2);
            let answer = client.send(hyper::Method::GET, "/v1/events/status", "application/json", Vec::new());
            if answer.await.is_ok() {
                return client;
            }
        }
        assert!(Instant::now() < deadline, "finledger serve did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills the service (SIGKILL) and waits for its PostgreSQL to follow it down (the parent-death
/// signal), so that the next run starts a fresh one on the same data.
async fn kill(mut service: Child, dir: &Path) {
    service.kill().unwrap();
    service.wait().unwrap();
    let pid_file = dir.join("pg/data/postmaster.pid");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pid_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the killed service's PostgreSQL did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads events on a blocking thread until `count` distinct ones have arrived.
async fn consume(mut consumer: EventReader, count: usize) -> EventReader {
    tokio::task::spawn_blocking(move || {
        consumer.read_until(Duration::from_secs(60), |kept| kept.count() >= count);
        consumer
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_killed_before_the_broker_acknowledges_sends_again_and_consumers_deduplicate() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (ops, api) = (helpers::free_port(), helpers::free_port());
    let mut service = serve(dir.path(), ops, api, &broker.address());
    let payments = dev_client(dir.path(), api, "payments", &mut service).await;
    let reader = dev_client(dir.path(), api, "payouts", &mut service).await;
    accounts(&payments, 3).await;
    delivered_all(&reader).await;

    // Committed and produced, but the broker is stopped: killed before any acknowledgement.
    broker.pause();
    batch(&payments, 100, 90, 3).await;
    let status = reader.get("/v1/events/status").await;
    let (written, delivered) = (
        status.body["written"].as_i64().unwrap(),
        status.body["delivered"].as_i64().unwrap(),
    );
    assert!(written > delivered, "{}", status.text);
    kill(service, dir.path()).await;
    broker.resume();
    let mut service = serve(dir.path(), ops, api, &broker.address());
    let payments = dev_client(dir.path(), api, "payments", &mut service).await;
    let reader = dev_client(dir.path(), api, "payouts", &mut service).await;
    assert!(delivered_all(&reader).await >= written);
    let consumer = consume(EventReader::new(&broker), outbox_ids(&reader).await.len()).await;

    // Acknowledged by the broker, but killed before the relay records it: the test holds the relay's
    // mark locked, so the relay publishes and then waits to move it.
    let database = finledger::local_postgres::LocalPostgres::start(&dir.path().join("pg")).unwrap();
    let mut holder = sqlx::PgConnection::connect_with(&database.connect_options("finledger"))
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; SELECT * FROM outbox_relay FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    batch(&payments, 300, 60, 3).await;
    let written = outbox_ids(&reader).await.len();
    let consumer = consume(consumer, written).await;
    let status = reader.get("/v1/events/status").await;
    assert!(status.body["lag"].as_i64().unwrap() >= 60, "{}", status.text);
    kill(service, dir.path()).await;
    drop(holder);
    let before = consumer.kept.duplicates;

    let mut service = serve(dir.path(), ops, api, &broker.address());
    let reader = dev_client(dir.path(), api, "payouts", &mut service).await;
    delivered_all(&reader).await;
    let expected = outbox_ids(&reader).await;
    let mut consumer = consume(consumer, expected.len()).await;
    // The re-sent events arrive after the originals; reading on until they have shows them dropped.
    let resent = 60;
    let consumer = tokio::task::spawn_blocking(move || {
        consumer.read_until(Duration::from_secs(60), |kept| kept.duplicates >= before + resent);
        consumer
    })
    .await
    .unwrap();
    let arrived: HashSet<String> = consumer.kept.ids.keys().cloned().collect();
    assert_eq!(arrived, expected);
    eprintln!(
        "{} events, {} duplicates dropped by the consumer",
        consumer.kept.count(),
        consumer.kept.duplicates
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(service.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(service.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_instances_one_relay_publishes_and_the_other_takes_over() {
    let broker = Broker::start();
    let (app, _policies) = spawn_with_kafka(&broker.address()).await;
    let second = app.start_another().await;
    let first_reader = app.client(PrincipalKind::Service, "payouts");
    let second_reader = app.client_at(second.api_address.port(), PrincipalKind::Service, "payouts");
    accounts(&app.payments(), 3).await;
    delivered_all(&first_reader).await;
    let leaders = |a: &Value, b: &Value| (a["relay"]["leader"] == true, b["relay"]["leader"] == true);
    let (first_leads, second_leads) = leaders(
        &first_reader.get("/v1/events/status").await.body,
        &second_reader.get("/v1/events/status").await.body,
    );
    assert!(
        first_leads != second_leads,
        "exactly one relay leads: {first_leads} {second_leads}"
    );

    // The leader's instance stops; the other's relay takes the lock and publishes what follows.
    let (payments, survivor) = if first_leads {
        let payments = app.client_at(second.api_address.port(), PrincipalKind::Service, "payments");
        let mut app = app;
        app.application.take().unwrap().stop().await;
        (payments, (second_reader, Some(second), app))
    } else {
        second.stop().await;
        (app.payments(), (first_reader, None, app))
    };
    let (reader, second, app) = survivor;
    batch(&payments, 100, 30, 3).await;
    everything_arrives(&broker.address(), &reader).await;
    assert_eq!(reader.get("/v1/events/status").await.body["relay"]["leader"], true);
    if let Some(second) = second {
        second.stop().await;
    }
    app.stop().await;
}
