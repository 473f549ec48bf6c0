//! A real Kafka-protocol broker for the tests: tansu, started by the test on a free loopback port
//! with in-memory storage, and a consumer that reads every event topic as a payout system would.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use finledger::outbox::EventType;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers, Message};

use super::events::{Consumer, assert_valid};

/// The tansu binary: on PATH, or where `cargo install` puts it.
fn tansu() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|path| path.is_file())
    {
        return path;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .expect("HOME or CARGO_HOME");
    let path = home.join("bin").join("tansu");
    assert!(
        path.is_file(),
        "tansu is not installed (make test installs it): {}",
        path.display()
    );
    path
}

/// A running broker; killed when dropped.
pub struct Broker {
    child: Child,
    pub port: u16,
}

impl Broker {
    pub fn start() -> Broker {
        let port = super::free_port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args(["broker", "--storage-engine", "memory://tansu/", "--listener-url"])
            .arg(&listener)
            .arg("--advertised-listener-url")
            .arg(&listener)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        let broker = Broker { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker process where it stands (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGSTOP).expect("pausing tansu");
    }

    pub fn resume(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT).expect("resuming tansu");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One event as it arrived from Kafka.
#[derive(Clone, Debug)]
pub struct Arrived {
    pub topic: String,
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub payload: serde_json::Value,
}

impl Arrived {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A consumer group member reading every event topic from the beginning.
pub struct EventReader {
    consumer: BaseConsumer,
    pub arrived: Vec<Arrived>,
    pub kept: Consumer,
}

impl EventReader {
    pub fn new(broker: &Broker) -> EventReader {
        EventReader::new_at(&broker.address())
    }

    pub fn new_at(bootstrap_servers: &str) -> EventReader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap_servers)
            .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("broker.address.family", "v4")
            .create()
            .expect("a consumer");
        consumer.subscribe(&EventType::topics()).expect("subscribing");
        EventReader {
            consumer,
            arrived: Vec::new(),
            kept: Consumer::default(),
        }
    }

    /// Reads until `done` says the kept events suffice (bounded by `within`). Every event is checked
    /// on arrival: CloudEvents headers, schema, and its key's sequence (duplicates are counted and
    /// dropped, a gap fails).
    pub fn read_until(&mut self, within: Duration, done: impl Fn(&Consumer) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.kept) {
            assert!(
                Instant::now() < deadline,
                "events missing after {within:?}: {} kept",
                self.kept.count()
            );
            let Some(message) = self.consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = match message {
                Ok(message) => message,
                // Topics appear when the relay first publishes; until then the broker says so.
                Err(_) => continue,
            };
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| {
                            let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                            (h.key.to_string(), value.unwrap_or_default())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let arrived = Arrived {
                topic: message.topic().to_string(),
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                headers,
                payload: serde_json::from_slice(message.payload().unwrap_or_default()).expect("a JSON payload"),
            };
            let header = |name: &str| {
                arrived
                    .header(name)
                    .unwrap_or_else(|| panic!("no {name} header"))
                    .to_string()
            };
            assert_eq!(header("ce_specversion"), "1.0");
            assert_eq!(header("content-type"), "application/json");
            assert_eq!(header("ce_partitionkey"), arrived.key);
            assert_eq!(header("ce_source"), finledger::outbox::EVENT_SOURCE);
            assert!(chrono::DateTime::parse_from_rfc3339(&header("ce_time")).is_ok());
            assert!(!header("ce_subject").is_empty());
            let event_type = header("ce_type");
            assert_eq!(
                EventType::parse(&event_type).map(EventType::topic),
                Some(arrived.topic.as_str())
            );
            assert_valid(&event_type, &arrived.payload);
            let sequence: i64 = header("ce_sequence").parse().expect("a numeric sequence");
            self.kept.take(&header("ce_id"), &arrived.key, sequence, &event_type);
            self.arrived.push(arrived);
        }
    }
}

/// Whether a Docker daemon answers: at DOCKER_HOST, or on the default socket.
pub fn docker_reachable() -> bool {
    match std::env::var("DOCKER_HOST") {
        Ok(host) => match (host.strip_prefix("unix://"), host.strip_prefix("tcp://")) {
            (Some(path), _) => std::os::unix::net::UnixStream::connect(path).is_ok(),
            (_, Some(address)) => std::net::TcpStream::connect(address).is_ok(),
            _ => false,
        },
        Err(_) => std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok(),
    }
}

/// A broker for tests that need a working Kafka and no fault injection: Apache Kafka in a container
/// (testcontainers) where a Docker daemon is reachable and runs it, else a local tansu.
pub enum AnyBroker {
    Container(
        Box<testcontainers::ContainerAsync<testcontainers_modules::kafka::apache::Kafka>>,
        String,
    ),
    Local(Broker),
}

impl AnyBroker {
    pub async fn start() -> AnyBroker {
        use testcontainers::runners::AsyncRunner;
        use testcontainers_modules::kafka::apache::{KAFKA_PORT, Kafka};
        if !docker_reachable() {
            return AnyBroker::Local(Broker::start());
        }
        // A daemon that cannot pull or run the image (no registry access, say) leaves the local broker.
        let container = match Kafka::default().start().await {
            Ok(container) => container,
            Err(error) => {
                eprintln!("no Kafka container ({error}); using tansu");
                return AnyBroker::Local(Broker::start());
            }
        };
        let port = container
            .get_host_port_ipv4(KAFKA_PORT)
            .await
            .expect("the Kafka container's port");
        AnyBroker::Container(Box::new(container), format!("127.0.0.1:{port}"))
    }

    pub fn address(&self) -> String {
        match self {
            AnyBroker::Container(_, address) => address.clone(),
            AnyBroker::Local(broker) => broker.address(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AnyBroker::Container(..) => "Apache Kafka (testcontainers)",
            AnyBroker::Local(_) => "tansu, a local process",
        }
    }
}
