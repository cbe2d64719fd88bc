//! Where the CLI tests run: librdkafka's mock cluster, one per test (the
//! default), or the Apache Kafka broker named by `TOPICBUS_KAFKA_BROKERS`
//! (`scripts/kafka.sh start`), which other tests and earlier runs share.
//! So a test names its topics and groups with [`TestKafka::name`], unique
//! to the test and the run, and creates its topics itself: the project's
//! broker does not auto-create them.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use topicbus::kafka::KafkaConfig;

use super::mock_kafka::MockKafka;

/// How long creating a topic on a real broker may take (hang guard).
const CREATE: Duration = Duration::from_secs(60);

enum Broker {
    Mock(MockKafka),
    Kafka,
}

/// The cluster of one test.
pub struct TestKafka {
    broker: Broker,
    pub bootstrap: String,
    /// Makes this test's names its own.
    run: String,
}

impl TestKafka {
    /// The broker in `TOPICBUS_KAFKA_BROKERS` when it is set, else a new
    /// mock cluster.
    pub fn start() -> Self {
        let run = topicbus::MessageId::new().to_string();
        match std::env::var("TOPICBUS_KAFKA_BROKERS") {
            Ok(brokers) if !brokers.trim().is_empty() => Self {
                broker: Broker::Kafka,
                bootstrap: brokers.trim().to_owned(),
                run,
            },
            _ => {
                let mock = MockKafka::start();
                Self {
                    bootstrap: mock.bootstrap.clone(),
                    broker: Broker::Mock(mock),
                    run,
                }
            }
        }
    }

    /// `name` made unique to this test and run: `name.{uuid}`.
    pub fn name(&self, name: &str) -> String {
        format!("{name}.{}", self.run)
    }

    /// Creates `topic` with `partitions` partitions; returns once the
    /// brokers know it.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        match &self.broker {
            Broker::Mock(mock) => mock.create_topic(topic, partitions),
            Broker::Kafka => create_on_kafka(&self.bootstrap, topic, partitions),
        }
    }

    /// The tool's options for this cluster, before the command.
    pub fn tool_args(&self) -> Vec<&str> {
        let mut args = vec!["--brokers", self.bootstrap.as_str()];
        if let Broker::Mock(_) = self.broker {
            args.extend([
                // The mock cluster answers a waiting fetch only when it ends.
                "-X",
                "fetch.wait.max.ms=5",
                // The mock cluster does not implement CreateTopics.
                "--auto-create-topics",
            ]);
        }
        args
    }

    /// Settings of a topicbus instance of a test: on a real broker, topics
    /// are created through the admin API as in production; the mock
    /// cluster auto-creates them and needs short waits.
    pub fn config(&self) -> KafkaConfig {
        let config = KafkaConfig::new(self.bootstrap.clone());
        match self.broker {
            Broker::Mock(_) => config
                .provision_topics(false)
                .set("fetch.wait.max.ms", "5")
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500"),
            Broker::Kafka => config,
        }
    }
}

/// Creates `topic` through the admin API, then waits until the metadata
/// shows every partition with a leader (a tool started next finds it).
fn create_on_kafka(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("an admin client");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(CREATE));
    // The admin client's futures need no particular runtime; a thread of
    // its own lets sync and async tests call this alike.
    let results = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime")
                    .block_on(admin.create_topics([&new], &options))
            })
            .join()
            .expect("the creating thread")
    })
    .unwrap_or_else(|e| panic!("cannot create `{topic}` on `{brokers}`: {e}"));
    for result in results {
        result
            .unwrap_or_else(|(name, code)| panic!("cannot create `{name}` on `{brokers}`: {code}"));
    }
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a metadata client");
    let deadline = Instant::now() + CREATE;
    loop {
        let metadata = client
            .fetch_metadata(Some(topic), CREATE)
            .unwrap_or_else(|e| panic!("no metadata from `{brokers}`: {e}"));
        let ready = metadata.topics().iter().any(|t| {
            t.name() == topic
                && t.error().is_none()
                && t.partitions().len() == partitions as usize
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "hang guard: `{topic}` created but not in the metadata of `{brokers}`"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
