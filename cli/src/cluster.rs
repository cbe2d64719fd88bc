//! The connection to the Kafka cluster: brokers, pass-through properties,
//! the time limit, and the clients built from them.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, BusConfig, BusType, MessageId};

use crate::Failure;

/// The service name the tool publishes and requests as (`ce_source`).
pub const SERVICE: &str = "topicbus-cli";

/// Where and how to reach the cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub brokers: String,
    properties: Vec<(String, String)>,
    pub timeout: Duration,
    /// Rely on the broker's auto-creation for the reply topic.
    auto_create_topics: bool,
}

impl Cluster {
    /// `brokers` from the command line or `TOPICBUS_BROKERS`, else
    /// `RICE_KAFKA_BROKERS` (the Go service's variable).
    pub fn new(
        brokers: Option<String>,
        properties: Vec<(String, String)>,
        timeout: Duration,
        auto_create_topics: bool,
    ) -> Result<Self, Failure> {
        let brokers = brokers
            .or_else(|| std::env::var("RICE_KAFKA_BROKERS").ok())
            .map(|b| b.trim().to_owned())
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                Failure(
                    "no Kafka brokers given: pass --brokers HOST:PORT or set TOPICBUS_BROKERS \
                     (RICE_KAFKA_BROKERS works too)"
                        .to_owned(),
                )
            })?;
        // The security settings come from the variables a service reads
        // (TOPICBUS_KAFKA_SECURITY_PROTOCOL, TOPICBUS_KAFKA_SASL_*,
        // TOPICBUS_KAFKA_SSL_*), checked as the library checks them;
        // `--property` settings come after them and win.
        let properties = security_properties(&brokers)?
            .into_iter()
            .chain(properties)
            .collect::<Vec<_>>();
        // Every client is built from these properties: refuse a bad one
        // before anything is sent, in the library's words, which never show
        // a refused value.
        properties
            .iter()
            .fold(KafkaConfig::new(brokers.clone()), |config, (key, value)| {
                config.set(key, value)
            })
            .validate()?;
        Ok(Self {
            brokers,
            properties,
            timeout,
            auto_create_topics,
        })
    }

    /// A consumer in a throwaway group that never commits; reads only the
    /// partitions it is assigned. With `eof`, it reports reaching the end of
    /// a partition.
    pub fn consumer(&self, eof: bool) -> Result<BaseConsumer, Failure> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("{SERVICE}.{}", MessageId::new()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", if eof { "true" } else { "false" });
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config.create().map_err(config_error)
    }

    /// A topicbus instance on the cluster, with every limit set to the
    /// tool's timeout.
    pub async fn bus(&self) -> Result<Bus, Failure> {
        let mut kafka = KafkaConfig::new(self.brokers.clone())
            .connect_timeout(self.timeout)
            .delivery_timeout(self.timeout)
            .provision_topics(!self.auto_create_topics);
        for (key, value) in &self.properties {
            kafka = kafka.set(key, value);
        }
        Ok(Bus::builder()
            .service(SERVICE)
            .request_timeout(self.timeout)
            .shutdown_timeout(self.timeout)
            .kafka(kafka)
            .connect()
            .await?)
    }

    /// The partitions of `topic`; fails naming the brokers when none
    /// answers, and naming the topic when it does not exist. Blocks.
    pub fn partitions(&self, consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, Failure> {
        let metadata = consumer
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|error| self.unreachable(error))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        let Some(found) = found else {
            return Err(self.missing(topic));
        };
        match found.error().map(RDKafkaErrorCode::from) {
            None if !found.partitions().is_empty() => {
                Ok(found.partitions().iter().map(|p| p.id()).collect())
            }
            None
            | Some(RDKafkaErrorCode::UnknownTopicOrPartition)
            | Some(RDKafkaErrorCode::UnknownTopic) => Err(self.missing(topic)),
            Some(code) => Err(Failure(format!(
                "cannot read topic `{topic}` on `{}`: {code}",
                self.brokers
            ))),
        }
    }

    /// The low and high watermark of a partition. Blocks.
    pub fn watermarks(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        partition: i32,
    ) -> Result<(i64, i64), Failure> {
        consumer
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(|error| {
                Failure(format!(
                    "cannot read the offsets of `{topic}` partition {partition} on `{}`: {error}",
                    self.brokers
                ))
            })
    }

    /// Fails unless `topic` exists (on a thread of its own: librdkafka blocks).
    pub async fn require_topic(&self, topic: &str) -> Result<(), Failure> {
        let cluster = self.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer = cluster.consumer(false)?;
            cluster.partitions(&consumer, &topic).map(drop)
        })
        .await
        .map_err(|e| Failure(format!("the metadata look-up failed: {e}")))?
    }

    fn unreachable(&self, error: KafkaError) -> Failure {
        Failure(format!(
            "cannot reach the Kafka brokers `{}` within {}: {error}",
            self.brokers,
            humantime::format_duration(self.timeout)
        ))
    }

    fn missing(&self, topic: &str) -> Failure {
        Failure(format!(
            "topic `{topic}` does not exist on `{}`",
            self.brokers
        ))
    }
}

/// The librdkafka properties of the named security settings in the
/// environment, with the prefix `TOPICBUS` (docs/security-kafka.md).
fn security_properties(brokers: &str) -> Result<Vec<(String, String)>, Failure> {
    let mut config = BusConfig::loader().env_prefix("TOPICBUS").load()?;
    // Checked as for a service on Kafka: a mechanism this build lacks is
    // refused here, naming the variable and the feature.
    config.bus_type = BusType::Kafka;
    config.kafka_brokers = brokers
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect();
    config.validate()?;
    Ok(config
        .kafka_security_properties()
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect())
}

/// A client librdkafka refused to create. The user's properties passed
/// [`KafkaConfig::validate`]; a property refused here is one the tool sets,
/// named without librdkafka's text, which would quote its value.
fn config_error(error: KafkaError) -> Failure {
    match error {
        KafkaError::ClientConfig(_, _, key, _) => {
            Failure(format!("librdkafka refused the property `{key}`"))
        }
        other => Failure(format!("cannot create the Kafka client: {other}")),
    }
}
