//! The Kafka harnesses of the conformance kit: librdkafka's in-process mock
//! cluster, and a real broker (Apache Kafka: scripts/kafka.sh) named by
//! `TOPICBUS_KAFKA_BROKERS`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use topicbus::Bus;
use topicbus_conformance::{Harness, Network, Setup};

/// The Kafka transport, on librdkafka's in-process mock cluster (a cluster
/// of its own per network, so cases share no groups or offsets) or on a real
/// broker (Apache Kafka: scripts/kafka.sh) named by `TOPICBUS_KAFKA_BROKERS`.
#[derive(Debug, Clone, Copy)]
pub struct Kafka {
    real_broker: bool,
}

impl Kafka {
    pub fn mock() -> Self {
        Self { real_broker: false }
    }

    pub fn broker() -> Self {
        Self { real_broker: true }
    }

    fn brokers() -> Option<String> {
        std::env::var("TOPICBUS_KAFKA_BROKERS")
            .ok()
            .filter(|b| !b.is_empty())
    }
}

impl Harness for Kafka {
    fn name(&self) -> &'static str {
        if self.real_broker {
            "kafka_broker"
        } else {
            "kafka_mock"
        }
    }

    fn unavailable(&self) -> Option<String> {
        (self.real_broker && Kafka::brokers().is_none())
            .then(|| "set TOPICBUS_KAFKA_BROKERS to a broker: $(scripts/kafka.sh start)".to_owned())
    }

    fn keeps_history(&self) -> bool {
        true
    }

    fn publishers_wait_for_slow_consumers(&self) -> bool {
        false
    }

    fn knows_responders(&self) -> bool {
        false
    }

    /// librdkafka's mock cluster answers ListOffsets by time with the end
    /// of every partition, so there a new group started at a time starts at
    /// the end. A real broker looks the offset up by each batch's time.
    fn finds_messages_by_time(&self) -> bool {
        self.real_broker
    }

    /// Apache Kafka accepts a member's commit while its group rebalances
    /// (the member's generation is still current); librdkafka's mock
    /// cluster refuses it.
    fn commits_survive_rebalances(&self) -> bool {
        self.real_broker
    }

    fn partitions_as_declared(&self) -> bool {
        self.real_broker
    }

    fn network(&self, setup: Setup) -> BoxFuture<'static, Box<dyn Network>> {
        let real_broker = self.real_broker;
        Box::pin(async move {
            let (brokers, cluster) = if real_broker {
                (Kafka::brokers().expect("checked by run_case"), None)
            } else {
                let cluster = crate::mock_kafka::MockKafka::start(1);
                (cluster.bootstrap.clone(), Some(cluster))
            };
            Box::new(KafkaNet {
                brokers,
                _cluster: cluster,
                setup,
                // A real broker creates topics on request; the mock cluster
                // does not implement CreateTopics but auto-creates them.
                provision: real_broker,
                scope: network_scope(),
            }) as Box<dyn Network>
        })
    }
}

struct KafkaNet {
    brokers: String,
    _cluster: Option<crate::mock_kafka::MockKafka>,
    setup: Setup,
    /// Create topics through the admin API (a real broker); the mock
    /// cluster auto-creates them instead.
    provision: bool,
    /// Unique to this network across runs: groups never carry offsets over.
    scope: String,
}

/// A name part unique to one network of this process and to this run.
fn network_scope() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{run:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Network for KafkaNet {
    fn bus(&self, service: &str) -> BoxFuture<'_, Bus> {
        let s = &self.setup;
        let mut config = crate::mock_kafka::test_settings(
            topicbus::kafka::KafkaConfig::new(self.brokers.clone())
                .provision_topics(self.provision),
        );
        if let Some(n) = s.partitions {
            config = config.default_partitions(i32::try_from(n).unwrap_or(i32::MAX));
        }
        let builder = s.builder(service).kafka(config);
        Box::pin(async move { builder.connect().await.expect("connect to Kafka") })
    }

    fn scope(&self, name: &str) -> String {
        format!("{name}.{}", self.scope)
    }
}
