//! The relay: publishes the outbox to Kafka, in order, and marks events delivered only once the broker
//! has acknowledged them.
//!
//! One relay runs at a time across all service instances: each instance's relay asks for a
//! session-level advisory lock on a connection of its own and publishes only while it holds it (a
//! relay whose connection dies loses the lock with it, and another takes over). The leader reads
//! events after the delivered mark, produces them with an idempotent producer (acks=all) keyed by the
//! event's key, waits for every acknowledgement of the chunk, and moves the mark past the longest
//! acknowledged prefix. A failed chunk is sent again from its first unacknowledged event after an
//! exponential backoff with jitter; events after it that the broker did take arrive twice, and
//! consumers drop the second copy by its id (or by its key's sequence number).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

use crate::outbox::{EventType, StoredEvent, events_after, position};

/// The session-level advisory lock only the leading relay holds.
const RELAY_LOCK_KEY: i64 = 0x6669_6e72_656c_6179; // "finrelay"

#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Kafka bootstrap servers, comma-separated.
    pub brokers: String,
    /// Most events produced before waiting for their acknowledgements.
    pub chunk_events: usize,
    /// How often an idle relay looks for new events (and a standby relay for the lock).
    pub poll_interval: Duration,
    /// First and longest wait after a failure.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Undelivered events beyond which the relay raises its alarm.
    pub alarm_events: i64,
    /// Topics are created when missing, with this many partitions and replicas.
    pub partitions: i32,
    pub replication: i32,
    /// Further librdkafka producer settings (e.g. security), applied last.
    pub producer_settings: Vec<(String, String)>,
    /// Woken when this instance commits events: the relay publishes them without waiting for its
    /// next poll (events other instances commit are found by polling).
    pub events_committed: Arc<tokio::sync::Notify>,
}

impl RelayConfig {
    pub fn new(brokers: String, events_committed: Arc<tokio::sync::Notify>) -> RelayConfig {
        RelayConfig {
            brokers,
            events_committed,
            chunk_events: 10_000,
            poll_interval: Duration::from_millis(50),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            alarm_events: 1_000_000,
            partitions: 6,
            replication: 1,
            producer_settings: Vec::new(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            // librdkafka retries on its own within this time; past it, the relay backs off and resends.
            .set("message.timeout.ms", "30000")
            .set("partitioner", "murmur2_random");
        for (key, value) in &self.producer_settings {
            config.set(key, value);
        }
        config
    }
}

/// What the relay is doing, for the API's status endpoint and for alarms.
#[derive(Debug, Default)]
pub struct RelayStatus {
    leader: AtomicBool,
    written: AtomicI64,
    delivered: AtomicI64,
    failures: AtomicI64,
    alarm: AtomicBool,
}

#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RelayReport {
    /// This instance's relay publishes now (another instance's may otherwise).
    pub leader: bool,
    /// The last event written and the last one the broker acknowledged, as this relay last saw them.
    pub written: i64,
    pub delivered: i64,
    pub lag: i64,
    /// Failed produce attempts since start.
    pub failures: i64,
    /// The undelivered events exceed the configured threshold.
    pub alarm: bool,
}

impl RelayStatus {
    pub fn report(&self) -> RelayReport {
        let written = self.written.load(Ordering::Relaxed);
        let delivered = self.delivered.load(Ordering::Relaxed);
        RelayReport {
            leader: self.leader.load(Ordering::Relaxed),
            written,
            delivered,
            lag: written - delivered,
            failures: self.failures.load(Ordering::Relaxed),
            alarm: self.alarm.load(Ordering::Relaxed),
        }
    }
}

/// The relay task: leads when it can, until `stop` turns true. Beside it, a monitor follows the
/// outbox's position (on every instance, leading or not) and raises the alarm.
pub async fn run(
    options: PgConnectOptions,
    config: RelayConfig,
    status: Arc<RelayStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let monitor = tokio::spawn(monitor(options.clone(), config.clone(), status.clone(), stop.clone()));
    let mut failures = 0u32;
    while !*stop.borrow() {
        let delivered = status.delivered.load(Ordering::Relaxed);
        let outcome = lead(&options, &config, &status, &mut stop).await;
        status.leader.store(false, Ordering::Relaxed);
        let Err(error) = outcome else { continue };
        status.failures.fetch_add(1, Ordering::Relaxed);
        // Failures in a row back off further; one that follows progress starts over.
        let progressed = status.delivered.load(Ordering::Relaxed) > delivered;
        failures = if progressed { 1 } else { failures.saturating_add(1) };
        let wait = backoff(&config, failures);
        tracing::warn!(
            error = format!("{error:#}"),
            retry_in_ms = wait.as_millis() as u64,
            "outbox relay interrupted; publishing again from the first unacknowledged event"
        );
        if stopped_within(&mut stop, wait).await {
            break;
        }
    }
    let _ = monitor.await;
    tracing::info!("outbox relay stopped");
}

/// Reads the outbox's position every `poll_interval * 20`, for the status and the alarm: the relay
/// itself may be waiting on a broker that does not answer.
async fn monitor(
    options: PgConnectOptions,
    config: RelayConfig,
    status: Arc<RelayStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connection = None;
    loop {
        if connection.is_none() {
            connection = PgConnection::connect_with(&options).await.ok();
        }
        if let Some(open) = connection.as_mut() {
            match position(open).await {
                Ok(here) => {
                    status.written.store(here.written, Ordering::Relaxed);
                    status.delivered.store(here.delivered, Ordering::Relaxed);
                    raise_alarm(&config, &status, here.lag());
                }
                Err(_) => connection = None,
            }
        }
        if stopped_within(&mut stop, config.poll_interval * 20).await {
            return;
        }
    }
}

/// Holds the relay lock (waiting for it as a standby) and publishes until stopped or until a failure,
/// which ends leadership so that the caller backs off; the next round starts with a new producer (one
/// whose idempotence state a failure made fatal cannot go on).
async fn lead(
    options: &PgConnectOptions,
    config: &RelayConfig,
    status: &RelayStatus,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut connection = PgConnection::connect_with(options).await?;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut connection)
            .await?;
        if locked {
            break;
        }
        if stopped_within(stop, config.poll_interval * 20).await {
            return Ok(());
        }
    }
    status.leader.store(true, Ordering::Relaxed);
    tracing::info!("outbox relay leads");
    let producer: FutureProducer = config.client_config().create()?;
    // Events are read on a connection of their own, so that reading the next chunk overlaps with
    // waiting for the current one's acknowledgements.
    let mut reader = PgConnection::connect_with(options).await?;
    let mut prefetched: Option<Vec<StoredEvent>> = None;
    if let Err(error) = create_topics(config).await {
        // The topics may exist already, be created by the cluster's operators, or auto-created.
        tracing::warn!(error = format!("{error:#}"), "could not create the event topics");
    }
    loop {
        if *stop.borrow() {
            // Whatever is still queued in the producer is either acknowledged or sent again by the
            // next leader: the mark has not moved past it.
            return Ok(());
        }
        let here = position(&mut connection).await?;
        status.written.store(here.written, Ordering::Relaxed);
        status.delivered.store(here.delivered, Ordering::Relaxed);
        if here.lag() == 0 {
            tokio::select! {
                () = config.events_committed.notified() => {}
                stopped = stopped_within(stop, config.poll_interval) => if stopped {
                    return Ok(());
                },
            }
            continue;
        }
        // The chunk read while the previous one was being acknowledged, if it starts at the mark.
        let events = match prefetched.take() {
            Some(events) if events.first().is_some_and(|e| e.seq == here.delivered + 1) => events,
            _ => {
                let limit = config.chunk_events.min(here.lag() as usize) as i64;
                events_after(&mut reader, here.delivered, limit).await?
            }
        };
        let last = events.last().map_or(here.delivered, |e| e.seq);
        // While the broker acknowledges this chunk, the next one is read (it is produced only after
        // this one is acknowledged, so order holds through a failure).
        let chunk = config.chunk_events as i64;
        let ((acknowledged, error), next) =
            tokio::join!(publish(&producer, &events), events_after(&mut reader, last, chunk));
        prefetched = next.ok().filter(|next| !next.is_empty());
        if let Some(last) = acknowledged {
            let moved = sqlx::query(
                "UPDATE outbox_relay SET delivered_seq = $1, delivered_at = now() WHERE id = 1 AND delivered_seq = $2",
            )
            .bind(last)
            .bind(here.delivered)
            .execute(&mut connection)
            .await?;
            anyhow::ensure!(moved.rows_affected() == 1, "the delivered mark moved under this relay");
            status.delivered.store(last, Ordering::Relaxed);
        }
        if let Some(error) = error {
            return Err(anyhow::Error::new(error).context("an event was not acknowledged"));
        }
    }
}

/// Produces `events` in order and waits for their acknowledgements. Returns the sequence number of the
/// last event of the acknowledged prefix, and the first failure.
async fn publish(producer: &FutureProducer, events: &[StoredEvent]) -> (Option<i64>, Option<KafkaError>) {
    let mut waiting: VecDeque<(i64, DeliveryFuture)> = VecDeque::with_capacity(events.len());
    let mut acks = Acknowledged::default();
    'events: for event in events {
        let headers = event
            .headers()
            .into_iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                })
            });
        let topic = EventType::parse(&event.event_type).map_or("ledger.unknown.v1", EventType::topic);
        let mut record = FutureRecord::to(topic)
            .key(event.key.as_bytes())
            .payload(event.payload.as_bytes())
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    waiting.push_back((event.seq, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // The local queue is full: wait for the oldest message in it.
                    record = returned;
                    match waiting.pop_front() {
                        Some((seq, delivery)) => acks.settle(seq, delivery.await),
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((error, _)) => {
                    acks.failure.get_or_insert(error);
                    break 'events;
                }
            }
        }
    }
    for (seq, delivery) in waiting {
        acks.settle(seq, delivery.await);
    }
    (acks.prefix, acks.failure)
}

/// Acknowledgements in production order: the last event of the unbroken prefix, and the first failure.
#[derive(Default)]
struct Acknowledged {
    prefix: Option<i64>,
    failure: Option<KafkaError>,
}

impl Acknowledged {
    fn settle<Canceled>(&mut self, seq: i64, delivery: Result<OwnedDeliveryResult, Canceled>) {
        match delivery {
            Ok(Ok(_)) if self.failure.is_none() => self.prefix = Some(seq),
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => {
                self.failure.get_or_insert(error);
            }
            Err(_) => {
                self.failure.get_or_insert(KafkaError::Canceled);
            }
        }
    }
}

/// Creates the event topics that do not exist yet.
async fn create_topics(config: &RelayConfig) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &config.brokers).create()?;
    let topics = EventType::topics();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|name| NewTopic::new(name, config.partitions, TopicReplication::Fixed(config.replication)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

fn raise_alarm(config: &RelayConfig, status: &RelayStatus, lag: i64) {
    let alarm = lag > config.alarm_events;
    let was = status.alarm.swap(alarm, Ordering::Relaxed);
    if alarm && !was {
        tracing::error!(
            lag,
            threshold = config.alarm_events,
            "outbox backlog above its alarm threshold"
        );
    } else if was && !alarm {
        tracing::info!(lag, "outbox backlog back under its alarm threshold");
    }
}

/// The wait after the `failures`-th failure in a row: doubling from the minimum up to the maximum,
/// then a random part of it taken off (up to half), so that relays do not retry in step.
fn backoff(config: &RelayConfig, failures: u32) -> Duration {
    let doubled = config
        .backoff_min
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(config.backoff_max);
    let jitter = jitter_fraction();
    doubled.mul_f64(1.0 - jitter / 2.0)
}

/// A random fraction in [0, 1).
fn jitter_fraction() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() >> 75) as u64; // 53 random bits
    bits as f64 / (1u64 << 53) as f64
}

/// Sleeps `wait` unless `stop` turns true first; says whether it did.
async fn stopped_within(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum_less_up_to_half_at_random() {
        let config = RelayConfig::new("127.0.0.1:9".to_string(), Arc::default());
        let mut seen = std::collections::HashSet::new();
        for failures in 1..=12u32 {
            let full = (config.backoff_min * 2u32.pow(failures - 1)).min(config.backoff_max);
            for _ in 0..50 {
                let wait = backoff(&config, failures);
                assert!(wait <= full && wait >= full / 2, "{failures}: {wait:?} of {full:?}");
                seen.insert(wait);
            }
        }
        assert!(seen.len() > 100, "the waits are not spread: {} distinct", seen.len());
        assert!(backoff(&config, u32::MAX) <= config.backoff_max);
    }
}
