//! Bus settings from the environment, YAML or TOML files, or code.
//!
//! [`BusConfig`] holds every setting [`Bus::connect`](crate::Bus::connect)
//! needs to build a bus. Load it from environment variables with a prefix,
//! from a configuration file whose bus settings sit under a `bus` key, or
//! both (the environment overrides the file); or deserialize it with serde
//! as part of your own configuration.
//!
//! ```
//! use topicbus::{Bus, BusConfig, BusType};
//!
//! # async fn demo() -> topicbus::Result<()> {
//! // The Go service's variables: RICE_BUS_TYPE, RICE_KAFKA_BROKERS, ...
//! let config = BusConfig::loader()
//!     .env_prefix("RICE")
//!     .env_vars([("RICE_BUS_TYPE", "memory"), ("RICE_KAFKA_GROUP", "search")])
//!     .load()?;
//! assert_eq!(config.bus_type, BusType::Memory);
//! assert_eq!(config.service_name(), "search");
//! let bus = Bus::connect(config).await?;
//! bus.shutdown().await?;
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! Loading is layered with the [`config`](https://docs.rs/config) crate:
//! defaults, then each file in the order given, then the environment.
//! Every loaded configuration is validated; an error names the key as the
//! user wrote it (`RICE_BUS_TYPE`, or `bus.type` and the file) and the value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::config::{ConfigError, Source, Value, ValueKind};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::memory::{MemoryBroker, MemoryConfig};
use crate::{Bus, BusBuilder, EventLog, ReplyKey};

/// The environment prefix of [`BusConfig::from_env`].
pub const DEFAULT_ENV_PREFIX: &str = "TOPICBUS";

/// Every key of a `bus` block, in the order docs/configuration.md lists them.
const KEYS: &[&str] = &[
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

/// How the Kafka clients talk to the brokers (librdkafka's
/// `security.protocol`).
///
/// ```
/// use topicbus::SecurityProtocol;
///
/// assert_eq!("SASL_SSL".parse(), Ok(SecurityProtocol::SaslSsl));
/// assert_eq!(SecurityProtocol::SaslSsl.to_string(), "sasl_ssl");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityProtocol {
    /// No TLS, no authentication (Kafka's default).
    Plaintext,
    /// TLS; with a client certificate for mutual TLS. Needs the `kafka-tls`
    /// feature.
    Ssl,
    /// SASL authentication without TLS: the password or token crosses the
    /// network in the clear (PLAIN) or hashed (SCRAM).
    SaslPlaintext,
    /// SASL authentication over TLS, what managed clusters ask for. Needs
    /// the `kafka-tls` feature.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether the connection is encrypted.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        })
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;

    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`, in any case.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "plaintext" => Ok(SecurityProtocol::Plaintext),
            "ssl" => Ok(SecurityProtocol::Ssl),
            "sasl_plaintext" => Ok(SecurityProtocol::SaslPlaintext),
            "sasl_ssl" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!(
                "`{text}`: expected plaintext, ssl, sasl_plaintext or sasl_ssl"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for SecurityProtocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// How the Kafka clients authenticate over SASL (librdkafka's
/// `sasl.mechanism`).
///
/// ```
/// use topicbus::SaslMechanism;
///
/// assert_eq!("scram-sha-512".parse(), Ok(SaslMechanism::ScramSha512));
/// assert_eq!(SaslMechanism::ScramSha512.to_string(), "SCRAM-SHA-512");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// User name and password, sent as they are (use it over TLS only).
    Plain,
    /// SCRAM with SHA-256: the password never crosses the network. Needs
    /// the `kafka-tls` feature.
    ScramSha256,
    /// SCRAM with SHA-512. Needs the `kafka-tls` feature.
    ScramSha512,
    /// OAuth 2 bearer tokens; configured through `kafka_properties`
    /// (`sasl.oauthbearer.*`, docs/security-kafka.md). Needs the
    /// `kafka-tls` feature.
    OAuthBearer,
    /// Kerberos. Needs the `kafka-gssapi` feature.
    Gssapi,
}

impl SaslMechanism {
    /// Whether it authenticates with `kafka_sasl_username` and
    /// `kafka_sasl_password`.
    pub fn uses_password(self) -> bool {
        matches!(
            self,
            SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512
        )
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
            SaslMechanism::Gssapi => "GSSAPI",
        })
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;

    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` or
    /// `GSSAPI`, in any case (`_` for `-` too).
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.trim().to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            "OAUTHBEARER" => Ok(SaslMechanism::OAuthBearer),
            "GSSAPI" => Ok(SaslMechanism::Gssapi),
            _ => Err(format!(
                "`{text}`: expected PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for SaslMechanism {
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
    pub kafka_wire_profile: crate::WireProfile,
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
    /// [`BusBuilder::allowed_reply_topics`].
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
            kafka_wire_profile: crate::WireProfile::Full,
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
    /// Loads from the environment variables with the prefix `TOPICBUS`
    /// (`TOPICBUS_BUS_TYPE`, `TOPICBUS_KAFKA_BROKERS`, ...) and validates.
    pub fn from_env() -> Result<BusConfig> {
        Self::from_env_prefixed(DEFAULT_ENV_PREFIX)
    }

    /// Loads from the environment variables with `prefix` and validates.
    /// With `RICE`, the Go service's variables work unchanged:
    /// `RICE_BUS_TYPE`, `RICE_KAFKA_BROKERS`, `RICE_KAFKA_GROUP`,
    /// `RICE_EVENT_LOG_ENABLED`, `RICE_EVENT_LOG_PATH`.
    pub fn from_env_prefixed(prefix: &str) -> Result<BusConfig> {
        Self::loader().env_prefix(prefix).load()
    }

    /// Loads the `bus` block of a YAML or TOML file (by its extension), then
    /// the environment variables with `prefix` on top, and validates.
    pub fn load(path: impl AsRef<Path>, prefix: &str) -> Result<BusConfig> {
        Self::loader().file(path).env_prefix(prefix).load()
    }

    /// A loader for other combinations of sources.
    pub fn loader() -> ConfigLoader {
        ConfigLoader::default()
    }

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
    pub fn kafka_config(&self) -> crate::kafka::KafkaConfig {
        let mut config = crate::kafka::KafkaConfig::new(self.kafka_brokers.join(","))
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

    /// The librdkafka properties the named security keys set
    /// (`security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`, ...), for tools that build their
    /// own librdkafka clients with a service's settings.
    /// [`BusConfig::kafka_config`] includes them.
    ///
    /// ```
    /// use topicbus::{BusConfig, SecurityProtocol};
    ///
    /// let mut config = BusConfig::default();
    /// config.kafka_security_protocol = Some(SecurityProtocol::SaslSsl);
    /// assert_eq!(
    ///     config.kafka_security_properties(),
    ///     [("security.protocol", "sasl_ssl".to_owned())]
    /// );
    /// ```
    pub fn kafka_security_properties(&self) -> Vec<(&'static str, String)> {
        self.security_properties()
            .into_iter()
            .map(|(_, property, value)| (property, value))
            .collect()
    }

    /// The named security keys that are set, each with its librdkafka
    /// property and value.
    fn security_properties(&self) -> Vec<(&'static str, &'static str, String)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        [
            (
                "kafka_security_protocol",
                "security.protocol",
                self.kafka_security_protocol.map(|p| p.to_string()),
            ),
            (
                "kafka_sasl_mechanism",
                "sasl.mechanism",
                self.kafka_sasl_mechanism.map(|m| m.to_string()),
            ),
            (
                "kafka_sasl_username",
                "sasl.username",
                self.kafka_sasl_username.clone(),
            ),
            (
                "kafka_sasl_password",
                "sasl.password",
                self.kafka_sasl_password.clone(),
            ),
            (
                "kafka_ssl_ca_location",
                "ssl.ca.location",
                path(&self.kafka_ssl_ca_location),
            ),
            (
                "kafka_ssl_certificate_location",
                "ssl.certificate.location",
                path(&self.kafka_ssl_certificate_location),
            ),
            (
                "kafka_ssl_key_location",
                "ssl.key.location",
                path(&self.kafka_ssl_key_location),
            ),
            (
                "kafka_ssl_key_password",
                "ssl.key.password",
                self.kafka_ssl_key_password.clone(),
            ),
        ]
        .into_iter()
        .filter_map(|(key, property, value)| Some((key, property, value?)))
        .collect()
    }

    /// The first wrong security setting, as its key and what is wrong.
    fn check_security(&self) -> std::result::Result<(), (&'static str, String)> {
        // A named key and a raw property for the same setting: which one
        // wins would be a guess.
        for (key, property, _) in self.security_properties() {
            let aliases: &[&str] = match property {
                "sasl.mechanism" => &["sasl.mechanism", "sasl.mechanisms"],
                _ => &[property],
            };
            if let Some(raw) = aliases
                .iter()
                .find(|p| self.kafka_properties.contains_key(**p))
            {
                return Err((
                    "kafka_properties",
                    format!("`{raw}` is set here and by `{key}`: set it in one place"),
                ));
            }
        }
        let protocol = self.kafka_security_protocol.or_else(|| {
            self.kafka_properties
                .get("security.protocol")
                .and_then(|p| p.parse().ok())
        });
        if let Some(mechanism) = self.kafka_sasl_mechanism {
            if !protocol.is_some_and(SecurityProtocol::sasl) {
                return Err((
                    "kafka_sasl_mechanism",
                    format!(
                        "`{mechanism}` needs a SASL security protocol: set \
                         kafka_security_protocol to sasl_ssl (or sasl_plaintext)"
                    ),
                ));
            }
            if mechanism.uses_password() {
                if self.kafka_sasl_username.is_none() {
                    return Err((
                        "kafka_sasl_username",
                        format!("not set: SASL {mechanism} needs a user name"),
                    ));
                }
                if self.kafka_sasl_password.is_none() {
                    return Err((
                        "kafka_sasl_password",
                        format!("not set: SASL {mechanism} needs a password"),
                    ));
                }
            }
        } else if self
            .kafka_security_protocol
            .is_some_and(SecurityProtocol::sasl)
            && !self.kafka_properties.contains_key("sasl.mechanism")
            && !self.kafka_properties.contains_key("sasl.mechanisms")
        {
            // Only for the named key: raw properties are librdkafka's to
            // judge (its default mechanism is GSSAPI).
            return Err((
                "kafka_sasl_mechanism",
                "not set: the security protocol uses SASL, so a mechanism is needed \
                 (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI)"
                    .to_owned(),
            ));
        }
        let files = [
            ("kafka_ssl_ca_location", &self.kafka_ssl_ca_location),
            (
                "kafka_ssl_certificate_location",
                &self.kafka_ssl_certificate_location,
            ),
            ("kafka_ssl_key_location", &self.kafka_ssl_key_location),
        ];
        for (key, file) in files {
            let Some(file) = file else { continue };
            if !protocol.is_some_and(SecurityProtocol::tls) {
                return Err((
                    key,
                    "set, but the connection has no TLS: set kafka_security_protocol \
                     to ssl or sasl_ssl"
                        .to_owned(),
                ));
            }
            if !file.is_file() {
                return Err((key, format!("`{}`: no such file", file.display())));
            }
        }
        match (
            &self.kafka_ssl_certificate_location,
            &self.kafka_ssl_key_location,
        ) {
            (Some(_), None) => {
                return Err((
                    "kafka_ssl_key_location",
                    "not set: a client certificate needs its private key".to_owned(),
                ))
            }
            (None, Some(_)) => {
                return Err((
                    "kafka_ssl_certificate_location",
                    "not set: a private key needs its client certificate".to_owned(),
                ))
            }
            _ => {}
        }
        if self.kafka_ssl_key_password.is_some() && self.kafka_ssl_key_location.is_none() {
            return Err((
                "kafka_ssl_key_password",
                "set, but no kafka_ssl_key_location: there is no key to decrypt".to_owned(),
            ));
        }
        #[cfg(feature = "kafka")]
        if self.bus_type == BusType::Kafka {
            self.check_build(crate::kafka::builtin_features())?;
        }
        Ok(())
    }

    /// Fails if a librdkafka built with `builtin` (its `builtin.features`)
    /// lacks the security protocol or SASL mechanism, naming the feature
    /// that brings it.
    #[cfg(feature = "kafka")]
    fn check_build(&self, builtin: &str) -> std::result::Result<(), (&'static str, String)> {
        let protocol = self.kafka_security_protocol.map(|p| p.to_string());
        let mechanism = self.kafka_sasl_mechanism.map(|m| m.to_string());
        match crate::kafka::missing_in(builtin, protocol.as_deref(), mechanism.as_deref()) {
            Some((crate::kafka::Lacking::Protocol, why)) => Err(("kafka_security_protocol", why)),
            Some((crate::kafka::Lacking::Mechanism, why)) => Err(("kafka_sasl_mechanism", why)),
            None => Ok(()),
        }
    }

    /// The first wrong setting, as its key and what is wrong.
    fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.bus_type == BusType::Kafka {
            if cfg!(not(feature = "kafka")) {
                return Err(("type", NO_KAFKA.to_owned()));
            }
            if self.kafka_brokers.is_empty() {
                return Err((
                    "kafka_brokers",
                    "no broker given: the type is kafka, so at least one host:port is needed"
                        .to_owned(),
                ));
            }
        }
        if let Some(bad) = self.kafka_brokers.iter().find(|b| !valid_broker(b)) {
            return Err((
                "kafka_brokers",
                format!("`{bad}`: expected host:port (a comma-separated list of them)"),
            ));
        }
        if self.event_log_enabled
            && self
                .event_log_path
                .as_ref()
                .is_none_or(|path| path.as_os_str().is_empty())
        {
            return Err((
                "event_log_path",
                "not set: the event log is enabled, so it needs a file path".to_owned(),
            ));
        }
        let positive_durations = [
            ("request_timeout", self.request_timeout),
            ("kafka_delivery_timeout", self.kafka_delivery_timeout),
            ("kafka_connect_timeout", self.kafka_connect_timeout),
            ("kafka_join_timeout", self.kafka_join_timeout),
        ];
        for (key, value) in positive_durations {
            if value.is_zero() {
                return Err((key, "`0s`: must be longer than zero".to_owned()));
            }
        }
        let at_least_one = [
            ("max_pending_requests", self.max_pending_requests as i64),
            ("memory_partitions", self.memory_partitions as i64),
            ("memory_queue_capacity", self.memory_queue_capacity as i64),
            ("kafka_partitions", i64::from(self.kafka_partitions)),
            (
                "kafka_replication_factor",
                i64::from(self.kafka_replication_factor),
            ),
        ];
        for (key, value) in at_least_one {
            if value < 1 {
                return Err((key, format!("`{value}`: must be at least 1")));
            }
        }
        for entry in &self.allowed_reply_topics {
            crate::reply::topics::check_entry(entry)
                .map_err(|why| ("allowed_reply_topics", why))?;
        }
        self.check_security()
    }
}

impl Bus {
    /// Builds the bus `config` describes: validates it, opens the event log
    /// if enabled, then runs on memory or connects to Kafka.
    ///
    /// When Kafka is asked for and no broker answers within
    /// `kafka_connect_timeout`, this fails with [`Error::Unavailable`],
    /// unless `fallback_to_memory` is set: then it logs a warning and runs
    /// on the memory transport. A Kafka type in a build without the `kafka`
    /// feature is an [`Error::Config`].
    ///
    /// ```
    /// # async fn demo() -> topicbus::Result<()> {
    /// use topicbus::{Bus, BusConfig};
    ///
    /// // In a service: Bus::connect(BusConfig::from_env_prefixed("RICE")?)
    /// let bus = Bus::connect(BusConfig::default()).await?;
    /// println!("service {}", bus.service());
    /// bus.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn connect(config: BusConfig) -> Result<Bus> {
        config.validate()?;
        let mut builder = Bus::builder()
            .service(config.service_name())
            .request_timeout(config.request_timeout)
            .shutdown_timeout(config.shutdown_timeout)
            .retries(config.retries)
            .max_pending_requests(config.max_pending_requests)
            .allowed_reply_topics(config.allowed_reply_topics.iter().cloned());
        if let Some(key) = &config.reply_key {
            builder = builder.reply_key(key.clone());
        }
        if config.event_log_enabled {
            let path = config
                .event_log_path
                .as_deref()
                .expect("validated: an enabled event log has a path");
            let log = EventLog::builder(path)
                .flush_interval(config.event_log_flush_interval)
                .max_file_bytes(config.event_log_max_file_bytes)
                .open()?;
            builder = builder.event_log(log);
        }
        match config.bus_type {
            BusType::Memory => Ok(builder
                .memory(MemoryBroker::new(config.memory_config()))
                .build()),
            BusType::Kafka => connect_kafka(builder, &config).await,
        }
    }
}

#[cfg(feature = "kafka")]
async fn connect_kafka(builder: BusBuilder, config: &BusConfig) -> Result<Bus> {
    match builder.clone().kafka(config.kafka_config()).connect().await {
        Err(error @ Error::Unavailable { .. }) if config.fallback_to_memory => {
            tracing::warn!(
                %error,
                "Kafka is unreachable; running on the memory transport (fallback_to_memory)"
            );
            Ok(builder
                .memory(MemoryBroker::new(config.memory_config()))
                .build())
        }
        connected => connected,
    }
}

#[cfg(not(feature = "kafka"))]
async fn connect_kafka(_builder: BusBuilder, _config: &BusConfig) -> Result<Bus> {
    Err(Error::Config {
        key: "type".to_owned(),
        message: NO_KAFKA.to_owned(),
    })
}

/// Why the Kafka type is refused without the `kafka` feature.
const NO_KAFKA: &str =
    "`kafka`: this build of topicbus has no Kafka transport (enable the `kafka` feature)";

/// `host:port`, with a non-empty host and a port number.
fn valid_broker(broker: &str) -> bool {
    match broker.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
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

/// Whether a librdkafka property (`sasl.password`) or an environment
/// variable (`RICE_KAFKA_PROPERTIES__SASL_PASSWORD`) may hold a secret whose
/// value must never be shown: any name that speaks of SASL, a password or
/// passphrase (`pass`, `pwd`, misspellings included), a secret, a key, a
/// token, a credential, JAAS or a private item. Erring towards hiding costs
/// a value in `Debug` output; erring the other way leaks it.
pub(crate) fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "sasl",
        "pass",
        "pwd",
        "secret",
        "key",
        "token",
        "credential",
        "jaas",
        "private",
    ]
    .iter()
    .any(|needle| name.contains(needle))
}

/// Environment variables as `Debug` shows them: secret-looking values
/// redacted.
fn shown_vars(vars: &::config::Map<String, String>) -> BTreeMap<&str, &str> {
    vars.iter()
        .map(|(name, value)| {
            let shown = if is_secret(name) { "<redacted>" } else { value };
            (name.as_str(), shown)
        })
        .collect()
}

/// Loads a [`BusConfig`] from files and the environment, in layers.
///
/// Layers, each overriding the ones before: the defaults, each file in the
/// order given (its `bus` block; the rest of the file is left to the
/// application), then the environment variables with the prefix.
///
/// Environment variables are `{PREFIX}_{KEY}` with the key in upper case
/// (`RICE_KAFKA_BROKERS`), except the type, which is `{PREFIX}_BUS_TYPE`
/// as in the Go service; Kafka properties are
/// `{PREFIX}_KAFKA_PROPERTIES__{NAME}`. Other variables with the prefix
/// are left alone (the application's own settings may share it); empty
/// variables count as unset. In a file, an unknown key in the `bus` block
/// is an error.
///
/// ```
/// use topicbus::{BusConfig, BusType};
///
/// let dir = std::env::temp_dir().join(format!("topicbus-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("rice.yaml");
/// std::fs::write(&path, "bus:\n  kafka_brokers: [\"k1:9092\"]\n  retries: 5\n").unwrap();
/// let config = BusConfig::loader()
///     .file(&path)
///     .env_prefix("RICE")
///     .env_vars([("RICE_KAFKA_BROKERS", "k2:9092,k3:9092")])
///     .load()?;
/// assert_eq!(config.bus_type, BusType::Memory);
/// assert_eq!(config.retries, 5);
/// assert_eq!(config.kafka_brokers, ["k2:9092", "k3:9092"]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), topicbus::Error>(())
/// ```
///
/// `Debug` output hides the values of variables whose names look secret
/// (as [`BusConfig`]'s hides secret Kafka properties).
#[derive(Clone, Default)]
#[must_use]
pub struct ConfigLoader {
    files: Vec<PathBuf>,
    env_prefix: Option<String>,
    env_vars: Option<::config::Map<String, String>>,
}

impl fmt::Debug for ConfigLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigLoader")
            .field("files", &self.files)
            .field("env_prefix", &self.env_prefix)
            .field("env_vars", &self.env_vars.as_ref().map(shown_vars))
            .finish()
    }
}

impl ConfigLoader {
    /// Adds a YAML (`.yaml`, `.yml`) or TOML (`.toml`) file; it must exist.
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.files.push(path.as_ref().to_path_buf());
        self
    }

    /// Reads the environment variables starting with `{prefix}_`.
    pub fn env_prefix(mut self, prefix: &str) -> Self {
        self.env_prefix = Some(prefix.trim_end_matches('_').to_owned());
        self
    }

    /// Reads these variables instead of the process environment (for tests
    /// and tools), with the prefix of [`ConfigLoader::env_prefix`] (default
    /// `TOPICBUS`).
    pub fn env_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env_vars = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Loads and validates.
    pub fn load(self) -> Result<BusConfig> {
        let origins = Origins::default();
        let mut builder = ::config::Config::builder();
        for path in &self.files {
            builder = builder.add_source(FileLayer {
                path: path.clone(),
                origins: origins.clone(),
            });
        }
        let env_prefix = match (self.env_prefix, &self.env_vars) {
            (None, Some(_)) => Some(DEFAULT_ENV_PREFIX.to_owned()),
            (prefix, _) => prefix,
        };
        if let Some(prefix) = &env_prefix {
            builder = builder.add_source(EnvLayer {
                prefix: prefix.clone(),
                vars: self.env_vars.clone(),
                origins: origins.clone(),
            });
        }
        let merged = builder.build();
        // The layers recorded where each key came from while `build` read them.
        let names = Names {
            prefix: env_prefix,
            from_files: !self.files.is_empty(),
            origins: origins.0.lock().expect("poisoned").clone(),
        };
        let merged = merged.map_err(|e| names.translate(e))?;
        let config = match merged.get::<Value>("bus") {
            Ok(value) => BusConfig::deserialize(value).map_err(|e| names.translate(e))?,
            Err(ConfigError::NotFound(_)) => BusConfig::default(),
            Err(other) => return Err(names.translate(other)),
        };
        config
            .check()
            .map_err(|(key, message)| names.error(key, message))?;
        Ok(config)
    }
}

/// Where a key's value came from, to name it as the user wrote it.
#[derive(Debug, Clone)]
enum Origin {
    Env(String),
    File(PathBuf),
}

/// The origin of each key, filled in by the layers as they are read.
#[derive(Debug, Clone, Default)]
struct Origins(Arc<Mutex<HashMap<String, Origin>>>);

impl Origins {
    fn record(&self, key: &str, origin: Origin) {
        self.0
            .lock()
            .expect("poisoned")
            .insert(key.to_owned(), origin);
    }
}

/// Names keys in errors as the user wrote them.
struct Names {
    prefix: Option<String>,
    /// Whether files were read (a key no layer set is then named as in a
    /// file when there is no environment prefix).
    from_files: bool,
    origins: HashMap<String, Origin>,
}

impl Names {
    /// An error about `key` (of the `bus` block).
    fn error(&self, key: &str, message: impl fmt::Display) -> Error {
        match self.origins.get(key) {
            Some(Origin::Env(var)) => Error::Config {
                key: var.clone(),
                message: message.to_string(),
            },
            Some(Origin::File(path)) => Error::Config {
                key: format!("bus.{key}"),
                message: format!("{message} (in {})", path.display()),
            },
            None => Error::Config {
                key: match &self.prefix {
                    Some(prefix) => env_var(prefix, key),
                    None if self.from_files => format!("bus.{key}"),
                    None => key.to_owned(),
                },
                message: message.to_string(),
            },
        }
    }

    fn translate(&self, error: ConfigError) -> Error {
        match error {
            ConfigError::Foreign(cause) => match cause.downcast::<Reported>() {
                Ok(reported) => reported.0,
                Err(cause) => Error::Config {
                    key: "configuration file".to_owned(),
                    message: cause.to_string(),
                },
            },
            ConfigError::FileParse { uri, cause } => Error::Config {
                key: uri.unwrap_or_else(|| "configuration file".to_owned()),
                message: cause.to_string(),
            },
            ConfigError::Type {
                unexpected,
                expected,
                key,
                ..
            } => self.error(
                &top_key(key.as_deref()),
                format!("{unexpected}: expected {expected}"),
            ),
            ConfigError::At { error, key, .. } => {
                self.error(&top_key(key.as_deref()), error.to_string())
            }
            other => Error::Config {
                key: "bus".to_owned(),
                message: other.to_string(),
            },
        }
    }
}

/// The key of the `bus` block a config-rs key path (`kafka_brokers[1]`,
/// `kafka_properties.acks`) starts with.
fn top_key(path: Option<&str>) -> String {
    let path = path.unwrap_or("bus");
    let end = path.find(['.', '[']).unwrap_or(path.len());
    path[..end].to_owned()
}

/// The environment variable of `key` for `prefix`.
fn env_var(prefix: &str, key: &str) -> String {
    match key {
        "type" => format!("{prefix}_BUS_TYPE"),
        "kafka_properties" => format!("{prefix}_KAFKA_PROPERTIES__*"),
        key => format!("{prefix}_{}", key.to_ascii_uppercase()),
    }
}

/// An error already in topicbus's terms, carried through config-rs.
#[derive(Debug)]
struct Reported(Error);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Reported {}

fn reported(error: Error) -> ConfigError {
    ConfigError::Foreign(Box::new(Reported(error)))
}

/// The `bus` block of a file, as config-rs reads it, with the keys checked
/// and Kafka property names in their environment form (`sasl_username`),
/// so that a file and the environment set the same property.
#[derive(Debug, Clone)]
struct FileLayer {
    path: PathBuf,
    origins: Origins,
}

impl Source for FileLayer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> std::result::Result<::config::Map<String, Value>, ConfigError> {
        let file_error = |message: String| {
            reported(Error::Config {
                key: self.path.display().to_string(),
                message,
            })
        };
        if !self.path.is_file() {
            return Err(file_error("no such configuration file".to_owned()));
        }
        let mut root = ::config::File::from(self.path.as_path())
            .collect()
            .map_err(|error| match error {
                ConfigError::FileParse { cause, .. } => file_error(cause.to_string()),
                other => other,
            })?;
        let Some(block) = root.remove("bus") else {
            return Ok(::config::Map::new());
        };
        let origin = block.origin().map(str::to_owned);
        let block = block.into_table().map_err(|_| {
            file_error("`bus` must be a table of settings (the Go service's `bus:` block)".into())
        })?;
        let mut out = ::config::Map::new();
        for (key, value) in block {
            if !KEYS.contains(&key.as_str()) {
                return Err(reported(Error::Config {
                    key: format!("bus.{key}"),
                    message: format!(
                        "unknown key (in {}); the keys are: {}",
                        self.path.display(),
                        KEYS.join(", ")
                    ),
                }));
            }
            let value = if key == "kafka_properties" {
                match value.kind {
                    ValueKind::Table(properties) => {
                        let properties: ::config::Map<String, Value> = properties
                            .into_iter()
                            .map(|(name, value)| (name.replace('.', "_"), value))
                            .collect();
                        Value::new(origin.as_ref(), properties)
                    }
                    other => Value::new(origin.as_ref(), other),
                }
            } else {
                value
            };
            self.origins.record(&key, Origin::File(self.path.clone()));
            out.insert(format!("bus.{key}"), value);
        }
        Ok(out)
    }
}

/// The environment variables with a prefix, as config-rs reads them,
/// renamed to the keys of the `bus` block.
#[derive(Clone)]
struct EnvLayer {
    prefix: String,
    vars: Option<::config::Map<String, String>>,
    origins: Origins,
}

impl fmt::Debug for EnvLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvLayer")
            .field("prefix", &self.prefix)
            .field("vars", &self.vars.as_ref().map(shown_vars))
            .finish_non_exhaustive()
    }
}

impl Source for EnvLayer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> std::result::Result<::config::Map<String, Value>, ConfigError> {
        let vars = ::config::Environment::with_prefix(&self.prefix)
            .prefix_separator("_")
            .separator("__")
            .ignore_empty(true)
            .source(self.vars.clone())
            .collect()?;
        let mut out = ::config::Map::new();
        for (name, value) in vars {
            let (key, rest) = match name.split_once('.') {
                Some((key, rest)) => (key, Some(rest)),
                None => (name.as_str(), None),
            };
            let key = match key {
                "bus_type" => "type",
                // `{PREFIX}_TYPE` is not the Go service's name for it.
                "type" => continue,
                key => key,
            };
            let nested_ok = key == "kafka_properties";
            if !KEYS.contains(&key) || (rest.is_some() && !nested_ok) {
                continue;
            }
            self.origins
                .record(key, Origin::Env(env_var(&self.prefix, key)));
            let path = match rest {
                Some(rest) => format!("bus.{key}.{rest}"),
                None => format!("bus.{key}"),
            };
            out.insert(path, value);
        }
        Ok(out)
    }
}

/// A duration written like `30s`, `250ms` or `1m 30s`.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Duration, D::Error> {
    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as `30s`, `250ms` or `1m 30s`")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<Duration, E> {
            humantime::parse_duration(text.trim()).map_err(|error| {
                E::custom(format!(
                    "`{text}`: expected a duration such as `30s`, `250ms` or `1m 30s` ({error})"
                ))
            })
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Duration, E> {
            Err(E::custom(format!(
                "`{n}`: a duration needs a unit, such as `{n}s` or `{n}ms`"
            )))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Duration, E> {
            Err(E::custom(format!(
                "`{n}`: expected a duration such as `30s`, `250ms` or `1m 30s`"
            )))
        }

        fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<Duration, E> {
            Err(E::custom(format!(
                "`{n}`: expected a duration such as `30s`, `250ms` or `1m 30s`"
            )))
        }
    }

    deserializer.deserialize_any(DurationVisitor)
}

/// Brokers as a comma-separated string or a list (of strings that may
/// themselves be comma-separated).
fn brokers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<String>, D::Error> {
    comma_separated(
        deserializer,
        "host:port, comma-separated, or a list of them",
    )
}

/// Topic names or prefixes, as [`brokers`] are written.
fn topic_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<String>, D::Error> {
    comma_separated(
        deserializer,
        "topic names or prefixes ending in `*`, comma-separated, or a list of them",
    )
}

/// Items of a comma-separated string or a list (of strings that may
/// themselves be comma-separated); `expecting` says what an item is.
fn comma_separated<'de, D: Deserializer<'de>>(
    deserializer: D,
    expecting: &'static str,
) -> std::result::Result<Vec<String>, D::Error> {
    struct ListVisitor(&'static str);

    fn split(text: &str, into: &mut Vec<String>) {
        into.extend(
            text.split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(str::to_owned),
        );
    }

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<Vec<String>, E> {
            let mut out = Vec::new();
            split(text, &mut out);
            Ok(out)
        }

        fn visit_unit<E: de::Error>(self) -> std::result::Result<Vec<String>, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                split(&item, &mut out);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(ListVisitor(expecting))
}

/// librdkafka properties: a map of names to scalar values. Nested maps
/// join their keys with `.`, and `_` in names becomes `.` (the environment
/// form of a name; no librdkafka property set by value has a `_`).
fn properties<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    /// A property value, or a nested map of them.
    enum Node {
        Leaf(String),
        Map(Vec<(String, Node)>),
    }

    struct NodeVisitor;

    impl<'de> Deserialize<'de> for Node {
        fn deserialize<D: Deserializer<'de>>(
            deserializer: D,
        ) -> std::result::Result<Self, D::Error> {
            deserializer.deserialize_any(NodeVisitor)
        }
    }

    impl<'de> Visitor<'de> for NodeVisitor {
        type Value = Node;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a librdkafka property value (text, number or boolean)")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<Node, E> {
            Ok(Node::Leaf(text.to_owned()))
        }

        fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<Node, E> {
            Ok(Node::Leaf(b.to_string()))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Node, E> {
            Ok(Node::Leaf(n.to_string()))
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Node, E> {
            Ok(Node::Leaf(n.to_string()))
        }

        fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<Node, E> {
            Ok(Node::Leaf(n.to_string()))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Node, A::Error> {
            let mut entries = Vec::new();
            while let Some((key, value)) = map.next_entry::<String, Node>()? {
                entries.push((key, value));
            }
            Ok(Node::Map(entries))
        }
    }

    fn flatten(prefix: &str, node: Node, out: &mut BTreeMap<String, String>) {
        match node {
            Node::Leaf(value) => {
                out.insert(prefix.replace('_', "."), value);
            }
            Node::Map(entries) => {
                for (key, value) in entries {
                    let name = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&name, value, out);
                }
            }
        }
    }

    let mut out = BTreeMap::new();
    match Node::deserialize(deserializer)? {
        Node::Leaf(_) => {
            return Err(de::Error::custom(
                "expected a map of librdkafka property names to values",
            ))
        }
        root => flatten("", root, &mut out),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_a_field() {
        let mut vars: Vec<(String, String)> = Vec::new();
        for key in KEYS {
            let value = match *key {
                "type" => "memory",
                "kafka_properties" => continue,
                "allowed_reply_topics" => "a.b, c.*",
                k if k.ends_with("timeout") || k.ends_with("interval") => "1s",
                k if k.ends_with("enabled")
                    || k.ends_with("topics")
                    || k.ends_with("envelope")
                    || k == "fallback_to_memory" =>
                {
                    "false"
                }
                "kafka_brokers" => "h:1",
                "kafka_security_protocol" => "SASL_SSL",
                "kafka_wire_profile" => "lean",
                "kafka_sasl_mechanism" => "scram-sha-512",
                k if k.starts_with("kafka_ssl") && k.ends_with("location") => {
                    concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")
                }
                k if k.starts_with("kafka_s") => "x",
                "reply_key" => "0123456789abcdef0123456789abcdef",
                "service" | "kafka_group" | "event_log_path" => "x",
                _ => "2",
            };
            vars.push((env_var("T", key), value.to_owned()));
        }
        vars.push(("T_KAFKA_PROPERTIES__CLIENT_ID".into(), "c".into()));
        let config = BusConfig::loader()
            .env_prefix("T")
            .env_vars(vars)
            .load()
            .expect("every key loads");
        assert_eq!(config.retries, 2);
        assert_eq!(config.kafka_properties["client.id"], "c");
        assert_eq!(config.allowed_reply_topics, ["a.b", "c.*"]);
        assert!(config.reply_key.is_some());
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn defaults_match_the_kafka_config_defaults() {
        let config = BusConfig {
            kafka_brokers: vec!["b:9092".into()],
            ..BusConfig::default()
        };
        assert_eq!(
            format!("{:?}", config.kafka_config()),
            format!("{:?}", crate::kafka::KafkaConfig::new("b:9092"))
        );
    }

    /// Loads `vars` (prefix `T`) and returns the error's key and message.
    fn refused(vars: &[(&str, &str)]) -> (String, String) {
        match BusConfig::loader()
            .env_prefix("T")
            .env_vars(vars.iter().copied())
            .load()
        {
            Err(Error::Config { key, message }) => (key, message),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    const A_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");

    #[test]
    fn security_keys_become_librdkafka_properties() {
        let config = BusConfig::loader()
            .env_prefix("T")
            .env_vars([
                ("T_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                ("T_KAFKA_SASL_MECHANISM", "scram_sha_256"),
                ("T_KAFKA_SASL_USERNAME", "alice"),
                ("T_KAFKA_SASL_PASSWORD", "pw-1"),
                ("T_KAFKA_SSL_CA_LOCATION", A_FILE),
            ])
            .load()
            .expect("loads");
        assert_eq!(
            config.kafka_security_protocol,
            Some(SecurityProtocol::SaslSsl)
        );
        assert_eq!(
            config.kafka_sasl_mechanism,
            Some(SaslMechanism::ScramSha256)
        );
        assert_eq!(
            config.kafka_security_properties(),
            [
                ("security.protocol", "sasl_ssl".to_owned()),
                ("sasl.mechanism", "SCRAM-SHA-256".to_owned()),
                ("sasl.username", "alice".to_owned()),
                ("sasl.password", "pw-1".to_owned()),
                ("ssl.ca.location", A_FILE.to_owned()),
            ]
        );
    }

    #[test]
    fn security_keys_load_from_yaml_and_toml() {
        let dir = std::env::temp_dir().join(format!("topicbus-security-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = dir.join("bus.yaml");
        std::fs::write(
            &yaml,
            format!(
                "bus:\n  kafka_security_protocol: ssl\n  kafka_ssl_ca_location: {A_FILE}\n  \
                 kafka_ssl_certificate_location: {A_FILE}\n  kafka_ssl_key_location: {A_FILE}\n  \
                 kafka_ssl_key_password: pw-2\n"
            ),
        )
        .unwrap();
        let toml = dir.join("bus.toml");
        std::fs::write(
            &toml,
            "[bus]\nkafka_security_protocol = \"sasl_plaintext\"\nkafka_sasl_mechanism = \"PLAIN\"\n\
             kafka_sasl_username = \"bob\"\nkafka_sasl_password = \"pw-3\"\n",
        )
        .unwrap();
        let from_yaml = BusConfig::loader().file(&yaml).load().expect("yaml loads");
        assert_eq!(
            from_yaml.kafka_security_protocol,
            Some(SecurityProtocol::Ssl)
        );
        assert_eq!(from_yaml.kafka_ssl_key_password.as_deref(), Some("pw-2"));
        let from_toml = BusConfig::loader().file(&toml).load().expect("toml loads");
        assert_eq!(from_toml.kafka_sasl_mechanism, Some(SaslMechanism::Plain));
        assert_eq!(from_toml.kafka_sasl_username.as_deref(), Some("bob"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn security_secrets_are_redacted() {
        let config = BusConfig::loader()
            .env_prefix("T")
            .env_vars([
                ("T_KAFKA_SECURITY_PROTOCOL", "ssl"),
                ("T_KAFKA_SSL_CERTIFICATE_LOCATION", A_FILE),
                ("T_KAFKA_SSL_KEY_LOCATION", A_FILE),
                ("T_KAFKA_SSL_KEY_PASSWORD", "pw-key"),
            ])
            .load()
            .expect("loads");
        let mut sasl = config.clone();
        sasl.kafka_security_protocol = Some(SecurityProtocol::SaslPlaintext);
        sasl.kafka_sasl_mechanism = Some(SaslMechanism::Plain);
        sasl.kafka_sasl_username = Some("alice".into());
        sasl.kafka_sasl_password = Some("pw-sasl".into());
        for shown in [format!("{config:?}"), format!("{sasl:?}")] {
            assert!(!shown.contains("pw-"), "a secret leaked: {shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        #[cfg(feature = "kafka")]
        {
            let shown = format!("{:?}", sasl.kafka_config());
            assert!(!shown.contains("pw-"), "a secret leaked: {shown}");
        }
        let loader = BusConfig::loader().env_prefix("T").env_vars([
            ("T_KAFKA_SASL_PASSWORD", "pw-env"),
            ("T_KAFKA_SSL_KEY_PASSWORD", "pw-env"),
        ]);
        assert!(!format!("{loader:?}").contains("pw-env"));
    }

    #[test]
    fn bad_security_values_name_the_key() {
        let (key, message) = refused(&[("T_KAFKA_SECURITY_PROTOCOL", "tls")]);
        assert_eq!(key, "T_KAFKA_SECURITY_PROTOCOL");
        assert!(
            message.contains("`tls`") && message.contains("sasl_ssl"),
            "{message}"
        );

        let (key, message) = refused(&[
            ("T_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("T_KAFKA_SASL_MECHANISM", "SCRAM-SHA-1"),
        ]);
        assert_eq!(key, "T_KAFKA_SASL_MECHANISM");
        assert!(message.contains("SCRAM-SHA-512"), "{message}");

        let (key, message) = refused(&[("T_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")]);
        assert_eq!(key, "T_KAFKA_SASL_MECHANISM");
        assert!(message.contains("not set"), "{message}");

        let (key, _) = refused(&[
            ("T_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("T_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("T_KAFKA_SASL_PASSWORD", "pw"),
        ]);
        assert_eq!(key, "T_KAFKA_SASL_USERNAME");

        let (key, message) = refused(&[("T_KAFKA_SASL_MECHANISM", "PLAIN")]);
        assert_eq!(key, "T_KAFKA_SASL_MECHANISM");
        assert!(message.contains("SASL security protocol"), "{message}");

        let (key, message) = refused(&[("T_KAFKA_SSL_CA_LOCATION", A_FILE)]);
        assert_eq!(key, "T_KAFKA_SSL_CA_LOCATION");
        assert!(message.contains("no TLS"), "{message}");

        let (key, message) = refused(&[
            ("T_KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("T_KAFKA_SSL_CA_LOCATION", "/no/such/ca.pem"),
        ]);
        assert_eq!(key, "T_KAFKA_SSL_CA_LOCATION");
        assert!(message.contains("/no/such/ca.pem") && message.contains("no such file"));

        let (key, _) = refused(&[
            ("T_KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("T_KAFKA_SSL_CERTIFICATE_LOCATION", A_FILE),
        ]);
        assert_eq!(key, "T_KAFKA_SSL_KEY_LOCATION");

        let (key, message) = refused(&[
            ("T_KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("T_KAFKA_PROPERTIES__SECURITY_PROTOCOL", "ssl"),
        ]);
        assert_eq!(key, "T_KAFKA_PROPERTIES__*");
        assert!(message.contains("`security.protocol`"), "{message}");
    }

    /// A build without `kafka-tls` (librdkafka's `builtin.features` without
    /// `ssl`) refuses TLS and SCRAM, naming the key and the feature.
    #[cfg(feature = "kafka")]
    #[test]
    fn a_mechanism_a_build_lacks_names_the_key_and_the_feature() {
        let without_tls = "gzip,snappy,sasl,regex,lz4,sasl_plain,plugins";
        let mut config = BusConfig {
            bus_type: BusType::Kafka,
            kafka_brokers: vec!["b:9092".into()],
            kafka_security_protocol: Some(SecurityProtocol::SaslSsl),
            kafka_sasl_mechanism: Some(SaslMechanism::ScramSha512),
            ..BusConfig::default()
        };
        let (key, message) = config.check_build(without_tls).unwrap_err();
        assert_eq!(key, "kafka_security_protocol");
        assert!(message.contains("`kafka-tls`"), "{message}");
        config.kafka_security_protocol = Some(SecurityProtocol::SaslPlaintext);
        let (key, message) = config.check_build(without_tls).unwrap_err();
        assert_eq!(key, "kafka_sasl_mechanism");
        assert!(message.contains("`SCRAM-SHA-512`") && message.contains("`kafka-tls`"));
        config.kafka_sasl_mechanism = Some(SaslMechanism::Gssapi);
        let (key, message) = config.check_build(without_tls).unwrap_err();
        assert_eq!(key, "kafka_sasl_mechanism");
        assert!(message.contains("`kafka-gssapi`"), "{message}");
        config.kafka_sasl_mechanism = Some(SaslMechanism::Plain);
        assert_eq!(config.check_build(without_tls), Ok(()));
    }

    /// This build refuses what it lacks when the configuration is loaded
    /// (what it has depends on the features it was built with).
    #[cfg(feature = "kafka")]
    #[test]
    fn loading_refuses_what_this_build_lacks() {
        let vars = [
            ("T_BUS_TYPE", "kafka"),
            ("T_KAFKA_BROKERS", "b:9092"),
            ("T_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("T_KAFKA_SASL_MECHANISM", "GSSAPI"),
        ];
        let loaded = BusConfig::loader().env_prefix("T").env_vars(vars).load();
        match (cfg!(feature = "kafka-gssapi"), loaded) {
            (true, Ok(_)) => {}
            (false, Err(Error::Config { key, message })) => {
                assert_eq!(key, "T_KAFKA_SASL_MECHANISM");
                assert!(message.contains("`kafka-gssapi`"), "{message}");
            }
            (with_gssapi, other) => panic!("kafka-gssapi: {with_gssapi}, loaded: {other:?}"),
        }
    }

    #[test]
    fn secrets_are_recognised() {
        for key in [
            "sasl.password",
            "sasl.jaas.config",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.passwrod",
            "ssl.key.pem",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "RICE_KAFKA_PROPERTIES__SASL_PASSWORD",
            "RICE_KAFKA_PROPERTIES__SSL_KEYSTORE_PASSWORD",
            "RICE_API_TOKEN",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in [
            "client.id",
            "bootstrap.servers",
            "acks",
            "RICE_KAFKA_BROKERS",
            "RICE_EVENT_LOG_PATH",
        ] {
            assert!(!is_secret(key), "{key}");
        }
    }
}
