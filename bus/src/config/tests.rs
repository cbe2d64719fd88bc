use super::load::env_var;
use super::schema::*;
use super::security::*;
use crate::error::Error;

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
        format!("{:?}", crate::transport::kafka::KafkaConfig::new("b:9092"))
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
