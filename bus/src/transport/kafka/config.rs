//! Settings of the Kafka transport.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fmt;
use std::time::Duration;

use rdkafka::bindings;
use rdkafka::client::Client;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, ClientContext};

use crate::error::{Error, Result};
use crate::secret::is_secret;

/// Settings of the Kafka transport.
///
/// ```
/// use std::time::Duration;
/// use topicbus::kafka::KafkaConfig;
///
/// let config = KafkaConfig::new("127.0.0.1:9092")
///     .delivery_timeout(Duration::from_secs(10))
///     .default_partitions(6)
///     .set("sasl.password", "hunter2");
/// assert!(!format!("{config:?}").contains("hunter2"));
/// ```
#[derive(Clone)]
pub struct KafkaConfig {
    pub(crate) brokers: String,
    pub(crate) properties: BTreeMap<String, String>,
    pub(crate) delivery_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) join_timeout: Duration,
    pub(crate) default_partitions: i32,
    pub(crate) replication_factor: i32,
    pub(crate) provision_topics: bool,
    pub(crate) max_message_bytes: usize,
    /// Set by the bus builder (`max_headers`).
    pub(crate) header_limits: crate::wire::HeaderLimits,
    pub(crate) reply_topic_prefix: String,
    pub(crate) go_envelope: bool,
    pub(crate) wire_profile: crate::WireProfile,
    pub(crate) statistics_interval: Duration,
}

impl KafkaConfig {
    /// Settings for the brokers `brokers` (comma-separated `host:port`).
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            properties: BTreeMap::new(),
            delivery_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            join_timeout: Duration::from_secs(60),
            default_partitions: 3,
            replication_factor: 1,
            provision_topics: true,
            max_message_bytes: 1_000_000,
            header_limits: crate::wire::HeaderLimits::default(),
            reply_topic_prefix: "topicbus.reply".to_owned(),
            go_envelope: false,
            wire_profile: crate::WireProfile::Full,
            statistics_interval: Duration::from_secs(5),
        }
    }

    /// Sets a librdkafka property on every client (producer, consumers,
    /// admin), overriding topicbus's defaults. Values of secret-looking keys
    /// (every `sasl.*` property, passwords, keys, tokens, credentials, JAAS
    /// config) never appear in `Debug` output, and no value librdkafka
    /// refuses appears in an error.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// How long a publish may take until the broker acknowledged it
    /// (`message.timeout.ms`, default 30 s); past it, the publish fails with
    /// [`Error::Unavailable`](crate::Error::Unavailable).
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// How long `connect` and a new subscription wait for the brokers
    /// (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a new subscription waits to be given its partitions by the
    /// group coordinator (default 60 s).
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Partitions of created topics that do not set `partitions = N`
    /// (default 3).
    pub fn default_partitions(mut self, partitions: i32) -> Self {
        self.default_partitions = partitions.max(1);
        self
    }

    /// Replication factor of created topics (default 1).
    pub fn replication_factor(mut self, factor: i32) -> Self {
        self.replication_factor = factor.max(1);
        self
    }

    /// Create missing topics when a handler subscribes (default on).
    pub fn provision_topics(mut self, on: bool) -> Self {
        self.provision_topics = on;
        self
    }

    /// Largest encoded payload a publish accepts (default 1 000 000 bytes,
    /// Kafka's default `message.max.bytes`); larger ones fail with
    /// [`Error::TooLarge`](crate::Error::TooLarge) before they are sent.
    pub fn max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = limit;
        self
    }

    /// Prefix of each instance's reply topic (default `topicbus.reply`).
    /// This instance's responders answer on topics under it (a `reply_to`
    /// of `{prefix}.` and more), on `{topic}.response`, and on those of
    /// [`BusBuilder::allowed_reply_topics`](crate::BusBuilder::allowed_reply_topics):
    /// give requesters and responders the same prefix.
    pub fn reply_topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.reply_topic_prefix = prefix.into();
        self
    }

    /// Speak the Go bus's JSON envelope: JSON payloads are written inside
    /// `{"id","type","source","timestamp","correlation_id","payload"}`, and
    /// enveloped values are unwrapped on reading. Plain values are still
    /// accepted, so Rust and Go nodes can share topics (default off).
    pub fn go_envelope(mut self, on: bool) -> Self {
        self.go_envelope = on;
        self
    }

    /// Which CloudEvents headers the producer writes (default
    /// [`WireProfile::Full`](crate::WireProfile::Full)). With
    /// [`WireProfile::Lean`](crate::WireProfile::Lean) a record carries
    /// only `ce_specversion`, `ce_id`, `ce_source` and `ce_type` (plus the
    /// routing, failure and application headers): its timestamp is the
    /// message's time, and readers decode it with the topic's codec.
    /// Readers take either profile whatever this says. docs/wire.md lists
    /// what a reader of lean records goes without.
    pub fn wire_profile(mut self, profile: crate::WireProfile) -> Self {
        self.wire_profile = profile;
        self
    }

    /// How often each consumer reports librdkafka's statistics, from which
    /// the consumer-lag gauge `topicbus_kafka_consumer_lag` is set
    /// (`statistics.interval.ms`, default 5 s; zero turns them off).
    pub fn statistics_interval(mut self, interval: Duration) -> Self {
        self.statistics_interval = interval;
        self
    }

    /// Checks every property with librdkafka without connecting (`connect`
    /// does the same): an unknown name or a refused value fails with
    /// [`Error::Config`] naming the property and librdkafka's reason,
    /// never the value.
    ///
    /// ```
    /// use topicbus::kafka::KafkaConfig;
    ///
    /// let error = KafkaConfig::new("127.0.0.1:9092")
    ///     .set("sasl.passwrod", "hunter2")
    ///     .validate()
    ///     .unwrap_err();
    /// assert!(error.to_string().contains("sasl.passwrod"));
    /// assert!(!error.to_string().contains("hunter2"));
    /// ```
    ///
    /// A security protocol or SASL mechanism this build of librdkafka lacks
    /// (TLS without the `kafka-tls` feature) fails with [`Error::Config`]
    /// naming the property and the feature to enable.
    pub fn validate(&self) -> Result<()> {
        self.check_features()?;
        self.client_config(&[])
            .create_native_config()
            .map(drop)
            .map_err(config_error)
    }

    /// Fails if `security.protocol` or `sasl.mechanism` asks for what this
    /// build of librdkafka lacks, naming the property and the feature.
    /// librdkafka's own refusal says "recompile librdkafka", which a user of
    /// topicbus does through a Cargo feature, and for SASL mechanisms comes
    /// only when the first client is created.
    pub(crate) fn check_features(&self) -> Result<()> {
        let property = |key: &str| self.properties.get(key).map(String::as_str);
        let mechanism_key = ["sasl.mechanism", "sasl.mechanisms"]
            .into_iter()
            .find(|key| self.properties.contains_key(*key))
            .unwrap_or("sasl.mechanism");
        match missing_feature(property("security.protocol"), property(mechanism_key)) {
            None => Ok(()),
            Some((Lacking::Protocol, message)) => Err(Error::Config {
                key: "security.protocol".to_owned(),
                message,
            }),
            Some((Lacking::Mechanism, message)) => Err(Error::Config {
                key: mechanism_key.to_owned(),
                message,
            }),
        }
    }

    /// Whether consumer groups rebalance cooperatively: with the
    /// `cooperative-sticky` assignor (librdkafka refuses to mix it with
    /// eager ones) or the KIP-848 group protocol.
    pub(crate) fn cooperative(&self) -> bool {
        let property = |key: &str| self.properties.get(key).map(String::as_str);
        property("partition.assignment.strategy").is_some_and(|s| s.contains("cooperative"))
            || property("group.protocol") == Some("consumer")
    }

    /// Whether the clients authenticate with SASL OAUTHBEARER.
    fn oauthbearer(&self) -> bool {
        ["sasl.mechanism", "sasl.mechanisms"].iter().any(|key| {
            self.properties
                .get(*key)
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("OAUTHBEARER"))
        })
    }

    /// The librdkafka configuration of a client: `defaults`, then the
    /// user's properties on top.
    pub(crate) fn client_config(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        // rust-rdkafka asks librdkafka for errors only unless a `log`
        // logger wants more; connection failures librdkafka logs but does
        // not report (a broker closing the connection before answering) are
        // at Info, and `connect` names them when no broker answers.
        if (config.log_level as i32) < (RDKafkaLogLevel::Info as i32) {
            config.set_log_level(RDKafkaLogLevel::Info);
        }
        if self.oauthbearer() {
            // A queue of its own for token refreshes (librdkafka's hidden
            // property behind `rd_kafka_conf_enable_sasl_queue`), which
            // `refresh_tokens_in_background` hands to librdkafka's thread.
            config.set("enable_sasl_queue", "true");
        }
        for (key, value) in defaults {
            config.set(*key, value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// Makes librdkafka refresh `client`'s OAUTHBEARER token on its own
/// background thread; call it on every client made from `config`.
///
/// librdkafka asks for a new token through the client's main queue, which
/// rust-rdkafka serves as events and, unless the client's context makes
/// tokens itself, drops. A token librdkafka makes
/// (`enable.sasl.oauthbearer.unsecure.jwt`) would then never be refreshed,
/// and the broker refuses the client once the token expires.
pub(crate) fn refresh_tokens_in_background<C: ClientContext>(
    config: &KafkaConfig,
    client: &Client<C>,
) -> Result<()> {
    if !config.oauthbearer() {
        return Ok(());
    }
    // SAFETY: the handle is the live client's; librdkafka returns null or
    // an error object this function owns and destroys once read.
    let message = unsafe {
        let error = bindings::rd_kafka_sasl_background_callbacks_enable(client.native_ptr());
        if error.is_null() {
            return Ok(());
        }
        let message = CStr::from_ptr(bindings::rd_kafka_error_string(error))
            .to_string_lossy()
            .into_owned();
        bindings::rd_kafka_error_destroy(error);
        message
    };
    Err(Error::Config {
        key: "sasl.mechanism".to_owned(),
        message: format!("OAUTHBEARER tokens cannot be refreshed: {message}"),
    })
}

/// Which of the security settings this build cannot serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lacking {
    /// The security protocol (TLS).
    Protocol,
    /// The SASL mechanism.
    Mechanism,
}

/// What this build of librdkafka lacks to serve `protocol` and `mechanism`
/// (as librdkafka spells them, in any case), and the message that says
/// which Cargo feature brings it.
fn missing_feature(protocol: Option<&str>, mechanism: Option<&str>) -> Option<(Lacking, String)> {
    missing_in(builtin_features(), protocol, mechanism)
}

/// librdkafka's `builtin.features` (`gzip,snappy,ssl,sasl,...`), read once.
pub(crate) fn builtin_features() -> &'static str {
    static FEATURES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FEATURES.get_or_init(|| {
        ClientConfig::new()
            .create_native_config()
            .and_then(|native| native.get("builtin.features"))
            .unwrap_or_default()
    })
}

/// [`missing_feature`] for a librdkafka built with `builtin`.
pub(crate) fn missing_in(
    builtin: &str,
    protocol: Option<&str>,
    mechanism: Option<&str>,
) -> Option<(Lacking, String)> {
    let has = |feature: &str| builtin.split(',').any(|f| f.trim() == feature);
    let protocol = protocol.map(|p| p.trim().to_ascii_lowercase());
    if let Some(protocol @ ("ssl" | "sasl_ssl")) = protocol.as_deref() {
        if !has("ssl") {
            return Some((
                Lacking::Protocol,
                format!(
                    "`{protocol}`: this build of topicbus has no TLS (librdkafka without \
                     OpenSSL): enable topicbus's `kafka-tls` feature, which needs libssl-dev \
                     (docs/security-kafka.md)"
                ),
            ));
        }
    }
    let mechanism = mechanism?.trim().to_ascii_uppercase();
    let (needs, feature) = match mechanism.as_str() {
        "SCRAM-SHA-256" | "SCRAM-SHA-512" => ("sasl_scram", "kafka-tls"),
        "OAUTHBEARER" => ("sasl_oauthbearer", "kafka-tls"),
        "PLAIN" => ("sasl_plain", "kafka-tls"),
        "GSSAPI" => ("sasl_gssapi", "kafka-gssapi"),
        // librdkafka refuses an unknown mechanism itself, naming it.
        _ => return None,
    };
    if has(needs) {
        return None;
    }
    let (library, install) = if feature == "kafka-gssapi" {
        ("Cyrus SASL", "libsasl2-dev")
    } else {
        ("OpenSSL", "libssl-dev")
    };
    Some((
        Lacking::Mechanism,
        format!(
            "`{mechanism}`: this build of topicbus lacks this SASL mechanism (librdkafka \
             without {library}): enable topicbus's `{feature}` feature, which needs \
             {install} (docs/security-kafka.md)"
        ),
    ))
}

/// A librdkafka client that could not be created: a property is wrong.
///
/// rdkafka's own message ends with the value, and librdkafka's reason may
/// quote it. A refused value may be a secret whose name is not recognised
/// as one (a misspelt `sasl.passwrod`), so no refused value is shown: the
/// error names the property and gives librdkafka's reason with the value
/// cut out.
pub(super) fn config_error(error: KafkaError) -> Error {
    match error {
        KafkaError::ClientConfig(_, reason, key, value) => Error::Config {
            message: format!(
                "librdkafka refused it: {}",
                without(&reason, &value).trim_end()
            ),
            key,
        },
        other => Error::Config {
            key: "kafka".to_owned(),
            message: other.to_string(),
        },
    }
}

/// `text` with each occurrence of `value` that is not part of a longer word
/// or number replaced by `<redacted>` (so that a refused `0` leaves the
/// `1..1000` of a range alone).
fn without(text: &str, value: &str) -> String {
    if value.is_empty() {
        return text.to_owned();
    }
    let joined = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices(value) {
        let end = at + value.len();
        if joined(text[..at].chars().next_back()) || joined(text[end..].chars().next()) {
            continue;
        }
        out.push_str(&text[copied..at]);
        out.push_str("<redacted>");
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("properties", &properties)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("join_timeout", &self.join_timeout)
            .field("default_partitions", &self.default_partitions)
            .field("replication_factor", &self.replication_factor)
            .field("provision_topics", &self.provision_topics)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("reply_topic_prefix", &self.reply_topic_prefix)
            .field("go_envelope", &self.go_envelope)
            .field("wire_profile", &self.wire_profile)
            .field("statistics_interval", &self.statistics_interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let config = KafkaConfig::new("b:9092")
            .set("sasl.password", "pw-1")
            .set("sasl.jaas.config", "pw-2")
            .set("ssl.key.password", "pw-3")
            .set("sasl.oauthbearer.token", "pw-4")
            .set("client.id", "visible");
        let shown = format!("{config:?}");
        for secret in ["pw-1", "pw-2", "pw-3", "pw-4"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("visible"));
    }

    #[test]
    fn what_a_build_lacks_names_the_feature_that_brings_it() {
        let plain = "gzip,snappy,sasl,regex,lz4,sasl_plain,plugins,http";
        let (lacking, message) = missing_in(plain, Some("SASL_SSL"), None).unwrap();
        assert_eq!(lacking, Lacking::Protocol);
        assert!(message.contains("`sasl_ssl`"), "{message}");
        assert!(message.contains("`kafka-tls`"), "{message}");
        let (lacking, message) =
            missing_in(plain, Some("sasl_plaintext"), Some("scram-sha-512")).unwrap();
        assert_eq!(lacking, Lacking::Mechanism);
        assert!(message.contains("`SCRAM-SHA-512`"), "{message}");
        assert!(message.contains("`kafka-tls`"), "{message}");
        assert_eq!(
            missing_in(plain, Some("sasl_plaintext"), Some("PLAIN")),
            None
        );
        assert_eq!(missing_in(plain, Some("plaintext"), None), None);

        let tls =
            "gzip,snappy,ssl,sasl,regex,lz4,sasl_plain,sasl_scram,plugins,sasl_oauthbearer,http";
        assert_eq!(missing_in(tls, Some("ssl"), None), None);
        assert_eq!(missing_in(tls, Some("sasl_ssl"), Some("OAUTHBEARER")), None);
        let (lacking, message) = missing_in(tls, Some("sasl_ssl"), Some("GSSAPI")).unwrap();
        assert_eq!(lacking, Lacking::Mechanism);
        assert!(message.contains("`GSSAPI`"), "{message}");
    }

    /// Each feature brings what it promises: the build's librdkafka has
    /// it, and a configuration asking for it passes the check.
    #[test]
    fn this_build_has_what_its_features_bring() {
        let builtin = builtin_features();
        let has = |f: &str| builtin.split(',').any(|b| b == f);
        assert_eq!(has("ssl"), cfg!(feature = "kafka-tls"), "{builtin}");
        assert_eq!(has("sasl_scram"), cfg!(feature = "kafka-tls"), "{builtin}");
        assert_eq!(
            has("sasl_oauthbearer"),
            cfg!(feature = "kafka-tls"),
            "{builtin}"
        );
        assert_eq!(
            has("sasl_gssapi"),
            cfg!(feature = "kafka-gssapi"),
            "{builtin}"
        );
        for (protocol, mechanism, feature) in [
            ("sasl_ssl", "SCRAM-SHA-512", cfg!(feature = "kafka-tls")),
            ("sasl_ssl", "OAUTHBEARER", cfg!(feature = "kafka-tls")),
            ("sasl_plaintext", "GSSAPI", cfg!(feature = "kafka-gssapi")),
        ] {
            let checked = KafkaConfig::new("127.0.0.1:9092")
                .set("security.protocol", protocol)
                .set("sasl.mechanisms", mechanism)
                .validate();
            match checked {
                Ok(()) => assert!(feature, "{mechanism} passed without its feature"),
                Err(Error::Config { key, message }) => {
                    assert!(!feature, "{mechanism} refused with its feature: {message}");
                    assert!(
                        key == "security.protocol" || key == "sasl.mechanisms",
                        "{key}"
                    );
                    assert!(message.contains("feature"), "{message}");
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_refused_value_is_cut_out_of_librdkafkas_reason() {
        assert_eq!(
            without(r#"Invalid value "pw 1" for "x": pw 1"#, "pw 1"),
            r#"Invalid value "<redacted>" for "x": <redacted>"#
        );
        assert_eq!(
            without("value 0 is outside allowed range 1..1000", "0"),
            "value <redacted> is outside allowed range 1..1000"
        );
        assert_eq!(without("no value here", ""), "no value here");
    }
}
