//! What a bus configuration holds: [`BusConfig`] and its defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::parse::{brokers, duration, properties, topic_list};
use super::security::{SaslMechanism, SecurityProtocol};
use crate::error::{Error, Result};
use crate::reply::ReplyKey;
use crate::secret::is_secret;
use crate::transport::memory::MemoryConfig;
use crate::wire::WireProfile;

/// The environment prefix of [`BusConfig::from_env`].
pub const DEFAULT_ENV_PREFIX: &str = "TOPICBUS";

/// Every key of a `bus` block, in the order docs/configuration.md lists them.
pub(super) const KEYS: &[&str] = &[
    "type",
    "service",
    "kafka_brokers",
    "kafka_group",
    "event_log_enabled",
    "event_log_path",
    "event_log_flush_interval",
    "event_log_max_file_bytes",
    "request_timeout",
    "shutdown_timeout",
    "retries",
    "max_pending_requests",
    "fallback_to_memory",
    "memory_partitions",
    "memory_queue_capacity",
    "kafka_provision_topics",
    "kafka_partitions",
    "kafka_replication_factor",
    "kafka_delivery_timeout",
    "kafka_connect_timeout",
    "kafka_join_timeout",
    "kafka_go_envelope",
    "kafka_wire_profile",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_ca_location",
    "kafka_ssl_certificate_location",
    "kafka_ssl_key_location",
    "kafka_ssl_key_password",
    "kafka_properties",
    "allowed_reply_topics",
    "reply_key",
];

/// Which transport a [`BusConfig`] asks for (the Go service's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BusType {
    /// The in-process memory transport (the default).
    #[default]
    Memory,
    /// Kafka; needs the `kafka` feature.
    Kafka,
}

impl fmt::Display for BusType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BusType::Memory => "memory",
            BusType::Kafka => "kafka",
        })
    }
}

impl std::str::FromStr for BusType {
    type Err = String;

    /// `memory` or `kafka`, in any case.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(BusType::Memory),
            "kafka" => Ok(BusType::Kafka),
            _ => Err(format!("`{text}`: expected memory or kafka")),
        }
    }
}

impl<'de> Deserialize<'de> for BusType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// Everything needed to build a bus, with the Go service's key names.
///
/// Load it with [`BusConfig::from_env`], [`BusConfig::from_env_prefixed`],
/// [`BusConfig::load`] or [`BusConfig::loader`]; build it in code from
/// [`BusConfig::default`]; or deserialize it with serde. Then
/// [`Bus::connect`](crate::Bus::connect) builds the bus.
///
/// Each field documents its file key (under `bus:`) and its environment
/// variable for the prefix `RICE` (`TOPICBUS_...` for [`BusConfig::from_env`]).
/// Durations are written like `30s`, `250ms` or `1m 30s`.
///
/// `Debug` output shows every setting except the SASL password, the TLS
/// key's password, the values of secret Kafka properties (SASL settings,
/// passwords and passphrases, keys, tokens, secrets, credentials, JAAS
/// configuration) and the reply key.
///
/// ```
/// use std::time::Duration;
/// use topicbus::{BusConfig, BusType};
///
/// let mut config = BusConfig::default();
/// assert_eq!(config.bus_type, BusType::Memory);
/// config.service = Some("indexer".into());
/// config.request_timeout = Duration::from_secs(5);
/// config.kafka_properties.insert("sasl.password".into(), "hunter2".into());
/// config.validate()?;
/// assert!(!format!("{config:?}").contains("hunter2"));
/// # Ok::<(), topicbus::Error>(())
/// ```
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BusConfig {
    /// `type` / `{PREFIX}_BUS_TYPE`: `memory` (default) or `kafka`.
    #[serde(rename = "type")]
    pub bus_type: BusType,
    /// `service` / `{PREFIX}_SERVICE`: the service name, `ce_source` of what the
    /// bus publishes and the prefix of its default consumer groups. Default:
    /// `kafka_group`, else `topicbus`.
    pub service: Option<String>,
    /// `kafka_brokers` / `{PREFIX}_KAFKA_BROKERS`: `host:port` of the brokers; a
    /// comma-separated string or a list. Required when the type is `kafka`.
    #[serde(deserialize_with = "brokers")]
    pub kafka_brokers: Vec<String>,
    /// `kafka_group` / `{PREFIX}_KAFKA_GROUP`: the Go bus's consumer group. It is
    /// the service name when `service` is not set, so default groups become
    /// `{kafka_group}.{handler}`.
    pub kafka_group: Option<String>,
    /// `event_log_enabled` / `{PREFIX}_EVENT_LOG_ENABLED`: append every published
    /// and delivered message to the event log (default false).
    pub event_log_enabled: bool,
    /// `event_log_path` / `{PREFIX}_EVENT_LOG_PATH`: the event log file; required
    /// when the event log is enabled.
    pub event_log_path: Option<PathBuf>,
    /// `event_log_flush_interval` / `{PREFIX}_EVENT_LOG_FLUSH_INTERVAL`: longest
    /// time a recorded line waits before it is written to the file while
    /// messages keep coming (default 100 ms). See
    /// [`EventLog`](crate::EventLog).
    #[serde(deserialize_with = "duration")]
    pub event_log_flush_interval: Duration,
    /// `event_log_max_file_bytes` / `{PREFIX}_EVENT_LOG_MAX_FILE_BYTES`: size at
    /// which the event log file is renamed to `{path}.1` and a new one
    /// started (default 1 GiB). See [`EventLog`](crate::EventLog).
    pub event_log_max_file_bytes: u64,
    /// `request_timeout` / `{PREFIX}_REQUEST_TIMEOUT`: how long a request waits
    /// for its reply (default 30 s).
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// `shutdown_timeout` / `{PREFIX}_SHUTDOWN_TIMEOUT`: how long a graceful
    /// shutdown waits for in-flight handlers (default 30 s).
    #[serde(deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// `retries` / `{PREFIX}_RETRIES`: retries of a failing event handler before
    /// the message is dead-lettered (default 3).
    pub retries: u32,
    /// `max_pending_requests` / `{PREFIX}_MAX_PENDING_REQUESTS`: most requests
    /// waiting for a reply at once (default 65 536).
    pub max_pending_requests: usize,
    /// `fallback_to_memory` / `{PREFIX}_FALLBACK_TO_MEMORY`: when the type is
    /// `kafka` and no broker answers within the connect timeout, run on the
    /// memory transport instead, with a warning (default false: fail).
    pub fallback_to_memory: bool,
    /// `memory_partitions` / `{PREFIX}_MEMORY_PARTITIONS`: partitions of memory
    /// topics that do not set `partitions = N` (default 8).
    pub memory_partitions: usize,
    /// `memory_queue_capacity` / `{PREFIX}_MEMORY_QUEUE_CAPACITY`: messages each
    /// group queues per partition before publishers wait (default 1024).
    pub memory_queue_capacity: usize,
    /// `kafka_provision_topics` / `{PREFIX}_KAFKA_PROVISION_TOPICS`: create
    /// missing topics (default true).
    pub kafka_provision_topics: bool,
    /// `kafka_partitions` / `{PREFIX}_KAFKA_PARTITIONS`: partitions of created
    /// topics that do not set `partitions = N` (default 3).
    pub kafka_partitions: i32,
    /// `kafka_replication_factor` / `{PREFIX}_KAFKA_REPLICATION_FACTOR`:
    /// replication factor of created topics (default 1).
    pub kafka_replication_factor: i32,
    /// `kafka_delivery_timeout` / `{PREFIX}_KAFKA_DELIVERY_TIMEOUT`: how long a
    /// publish may wait for the broker's acknowledgement (default 30 s).
    #[serde(deserialize_with = "duration")]
    pub kafka_delivery_timeout: Duration,
    /// `kafka_connect_timeout` / `{PREFIX}_KAFKA_CONNECT_TIMEOUT`: how long
    /// connecting waits for a broker to answer (default 10 s).
    #[serde(deserialize_with = "duration")]
    pub kafka_connect_timeout: Duration,
    /// `kafka_join_timeout` / `{PREFIX}_KAFKA_JOIN_TIMEOUT`: how long a new
    /// subscription waits for its partitions (default 60 s).
    #[serde(deserialize_with = "duration")]
    pub kafka_join_timeout: Duration,
    /// `kafka_go_envelope` / `{PREFIX}_KAFKA_GO_ENVELOPE`: read and write the Go
    /// bus's JSON envelope (default false).
    pub kafka_go_envelope: bool,
    /// `kafka_wire_profile` / `{PREFIX}_KAFKA_WIRE_PROFILE`: `full`
    /// (default) or `lean`, the CloudEvents headers the producer writes
    /// (`KafkaConfig::wire_profile`).
    pub kafka_wire_profile: WireProfile,
    /// `kafka_properties` / `{PREFIX}_KAFKA_PROPERTIES__{NAME}`: librdkafka
    /// properties passed through to every client. In a file, a map of
    /// property names (`sasl.username: app`); in the environment, one
    /// variable per property with the name's dots written as `_`
    /// (`{PREFIX}_KAFKA_PROPERTIES__SASL_USERNAME=app`).
    #[serde(deserialize_with = "properties")]
    pub kafka_properties: BTreeMap<String, String>,
    /// `kafka_security_protocol` / `{PREFIX}_KAFKA_SECURITY_PROTOCOL`:
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`. TLS
    /// needs the `kafka-tls` feature. See docs/security-kafka.md.
    pub kafka_security_protocol: Option<SecurityProtocol>,
    /// `kafka_sasl_mechanism` / `{PREFIX}_KAFKA_SASL_MECHANISM`: `PLAIN`,
    /// `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` or `GSSAPI`;
    /// required with a SASL security protocol.
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// `kafka_sasl_username` / `{PREFIX}_KAFKA_SASL_USERNAME`: the SASL user
    /// (PLAIN and SCRAM).
    pub kafka_sasl_username: Option<String>,
    /// `kafka_sasl_password` / `{PREFIX}_KAFKA_SASL_PASSWORD`: the SASL
    /// password (PLAIN and SCRAM). Never shown in `Debug` output.
    pub kafka_sasl_password: Option<String>,
    /// `kafka_ssl_ca_location` / `{PREFIX}_KAFKA_SSL_CA_LOCATION`: a PEM file
    /// of the certificate authorities that sign the brokers' certificates
    /// (default: the system's trust store).
    pub kafka_ssl_ca_location: Option<PathBuf>,
    /// `kafka_ssl_certificate_location` /
    /// `{PREFIX}_KAFKA_SSL_CERTIFICATE_LOCATION`: the client's certificate
    /// (PEM) for mutual TLS; needs `kafka_ssl_key_location`.
    pub kafka_ssl_certificate_location: Option<PathBuf>,
    /// `kafka_ssl_key_location` / `{PREFIX}_KAFKA_SSL_KEY_LOCATION`: the
    /// client certificate's private key (PEM) for mutual TLS.
    pub kafka_ssl_key_location: Option<PathBuf>,
    /// `kafka_ssl_key_password` / `{PREFIX}_KAFKA_SSL_KEY_PASSWORD`: the
    /// password of an encrypted private key. Never shown in `Debug` output.
    pub kafka_ssl_key_password: Option<String>,
    /// `allowed_reply_topics` / `RICE_ALLOWED_REPLY_TOPICS`: topics the
    /// responders answer on besides topicbus requesters' reply topics (under
    /// `topicbus.reply.`) and `{topic}.response`; a comma-separated string or
    /// a list of topic names and prefixes followed by `*`
    /// (`my-client.replies,python.replies.*`). A request whose `reply_to`
    /// names another topic is dead-lettered (default: none). See
    /// [`BusBuilder::allowed_reply_topics`](crate::BusBuilder::allowed_reply_topics).
    #[serde(deserialize_with = "topic_list")]
    pub allowed_reply_topics: Vec<String>,
    /// `reply_key` / `RICE_REPLY_KEY`: the secret that authenticates
    /// replies, shared by the services (at least 32 bytes of text; default:
    /// none, replies are not authenticated). Never shown in `Debug` output.
    /// See [`ReplyKey`].
    pub reply_key: Option<ReplyKey>,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            bus_type: BusType::Memory,
            service: None,
            kafka_brokers: Vec::new(),
            kafka_group: None,
            event_log_enabled: false,
            event_log_path: None,
            event_log_flush_interval: Duration::from_millis(100),
            event_log_max_file_bytes: 1024 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            retries: 3,
            max_pending_requests: 65_536,
            fallback_to_memory: false,
            memory_partitions: 8,
            memory_queue_capacity: 1024,
            kafka_provision_topics: true,
            kafka_partitions: 3,
            kafka_replication_factor: 1,
            kafka_delivery_timeout: Duration::from_secs(30),
            kafka_connect_timeout: Duration::from_secs(10),
            kafka_join_timeout: Duration::from_secs(60),
            kafka_go_envelope: false,
            kafka_wire_profile: WireProfile::Full,
            kafka_properties: BTreeMap::new(),
            kafka_security_protocol: None,
            kafka_sasl_mechanism: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_ssl_ca_location: None,
            kafka_ssl_certificate_location: None,
            kafka_ssl_key_location: None,
            kafka_ssl_key_password: None,
            allowed_reply_topics: Vec::new(),
            reply_key: None,
        }
    }
}

impl BusConfig {
    /// The service name: `service`, else `kafka_group`, else `topicbus`.
    pub fn service_name(&self) -> &str {
        self.service
            .as_deref()
            .or(self.kafka_group.as_deref())
            .unwrap_or("topicbus")
    }

    /// Checks the settings; the error names the first wrong key (as in a
    /// file's `bus` block) and its value. The loaders call it.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|(key, message)| Error::Config {
            key: key.to_owned(),
            message,
        })
    }

    /// The memory transport's settings.
    pub fn memory_config(&self) -> MemoryConfig {
        MemoryConfig::default()
            .partitions(self.memory_partitions)
            .queue_capacity(self.memory_queue_capacity)
    }

    /// The Kafka transport's settings: the named security keys become
    /// their librdkafka properties (`security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, ...), next to `kafka_properties`.
    #[cfg(feature = "kafka")]
    pub fn kafka_config(&self) -> crate::transport::kafka::KafkaConfig {
        let mut config = crate::transport::kafka::KafkaConfig::new(self.kafka_brokers.join(","))
            .provision_topics(self.kafka_provision_topics)
            .default_partitions(self.kafka_partitions)
            .replication_factor(self.kafka_replication_factor)
            .delivery_timeout(self.kafka_delivery_timeout)
            .connect_timeout(self.kafka_connect_timeout)
            .join_timeout(self.kafka_join_timeout)
            .go_envelope(self.kafka_go_envelope)
            .wire_profile(self.kafka_wire_profile);
        for (_, property, value) in self.security_properties() {
            config = config.set(property, value);
        }
        for (key, value) in &self.kafka_properties {
            config = config.set(key, value);
        }
        config
    }
}

impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .kafka_properties
            .iter()
            .map(|(key, value)| {
                let shown = if is_secret(key) { "<redacted>" } else { value };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("BusConfig")
            .field("bus_type", &self.bus_type)
            .field("service", &self.service)
            .field("kafka_brokers", &self.kafka_brokers)
            .field("kafka_group", &self.kafka_group)
            .field("event_log_enabled", &self.event_log_enabled)
            .field("event_log_path", &self.event_log_path)
            .field("event_log_flush_interval", &self.event_log_flush_interval)
            .field("event_log_max_file_bytes", &self.event_log_max_file_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("retries", &self.retries)
            .field("max_pending_requests", &self.max_pending_requests)
            .field("fallback_to_memory", &self.fallback_to_memory)
            .field("memory_partitions", &self.memory_partitions)
            .field("memory_queue_capacity", &self.memory_queue_capacity)
            .field("kafka_provision_topics", &self.kafka_provision_topics)
            .field("kafka_partitions", &self.kafka_partitions)
            .field("kafka_replication_factor", &self.kafka_replication_factor)
            .field("kafka_delivery_timeout", &self.kafka_delivery_timeout)
            .field("kafka_connect_timeout", &self.kafka_connect_timeout)
            .field("kafka_join_timeout", &self.kafka_join_timeout)
            .field("kafka_go_envelope", &self.kafka_go_envelope)
            .field("kafka_wire_profile", &self.kafka_wire_profile)
            .field("kafka_properties", &properties)
            .field("kafka_security_protocol", &self.kafka_security_protocol)
            .field("kafka_sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("kafka_sasl_username", &self.kafka_sasl_username)
            .field("kafka_sasl_password", &redacted(&self.kafka_sasl_password))
            .field("kafka_ssl_ca_location", &self.kafka_ssl_ca_location)
            .field(
                "kafka_ssl_certificate_location",
                &self.kafka_ssl_certificate_location,
            )
            .field("kafka_ssl_key_location", &self.kafka_ssl_key_location)
            .field(
                "kafka_ssl_key_password",
                &redacted(&self.kafka_ssl_key_password),
            )
            .field("allowed_reply_topics", &self.allowed_reply_topics)
            .field("reply_key", &self.reply_key)
            .finish()
    }
}

/// A secret as `Debug` shows it: whether it is set, never its value.
fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}
