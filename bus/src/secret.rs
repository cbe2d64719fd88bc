//! Which setting names may hold a secret, so that no output shows their value.

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

#[cfg(test)]
mod tests {
    use super::*;

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
