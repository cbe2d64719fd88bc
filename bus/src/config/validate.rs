//! Whether a [`BusConfig`] holds together, and what it asks of this build;
//! its security settings as librdkafka properties.

use super::schema::{BusConfig, BusType};
use std::path::PathBuf;

use super::security::SecurityProtocol;

impl BusConfig {
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
    pub(super) fn security_properties(&self) -> Vec<(&'static str, &'static str, String)> {
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
            self.check_build(crate::transport::kafka::builtin_features())?;
        }
        Ok(())
    }

    /// Fails if a librdkafka built with `builtin` (its `builtin.features`)
    /// lacks the security protocol or SASL mechanism, naming the feature
    /// that brings it.
    #[cfg(feature = "kafka")]
    pub(super) fn check_build(
        &self,
        builtin: &str,
    ) -> std::result::Result<(), (&'static str, String)> {
        let protocol = self.kafka_security_protocol.map(|p| p.to_string());
        let mechanism = self.kafka_sasl_mechanism.map(|m| m.to_string());
        match crate::transport::kafka::missing_in(
            builtin,
            protocol.as_deref(),
            mechanism.as_deref(),
        ) {
            Some((crate::transport::kafka::Lacking::Protocol, why)) => {
                Err(("kafka_security_protocol", why))
            }
            Some((crate::transport::kafka::Lacking::Mechanism, why)) => {
                Err(("kafka_sasl_mechanism", why))
            }
            None => Ok(()),
        }
    }

    /// The first wrong setting, as its key and what is wrong.
    pub(super) fn check(&self) -> std::result::Result<(), (&'static str, String)> {
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

/// Why the Kafka type is refused without the `kafka` feature.
pub(crate) const NO_KAFKA: &str =
    "`kafka`: this build of topicbus has no Kafka transport (enable the `kafka` feature)";

/// `host:port`, with a non-empty host and a port number.
fn valid_broker(broker: &str) -> bool {
    match broker.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}
