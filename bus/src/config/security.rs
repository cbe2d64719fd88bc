//! The Kafka security settings: protocol and SASL mechanism.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

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
