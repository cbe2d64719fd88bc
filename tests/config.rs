//! `BusConfig`: the Go service's environment variables and YAML block,
//! TOML, layering, validation errors that name key and value, redaction,
//! and `Bus::connect` (memory, and Kafka with and without the fallback).
//!
//! Environment variables are passed with `ConfigLoader::env_vars` (config-rs's
//! injected source), or to a child process, so no test changes the
//! environment of this process.

#[path = "support/temp_dir.rs"]
mod temp_dir;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::{Bus, BusConfig, BusType, Context, Error, ErrorKind, Topic};

use temp_dir::TempDir;

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "config.test.ping")]
struct Ping {
    n: u32,
}

fn rice(vars: &[(&str, &str)]) -> topicbus::Result<BusConfig> {
    BusConfig::loader()
        .env_prefix("RICE")
        .env_vars(vars.iter().map(|(k, v)| (*k, *v)))
        .load()
}

/// The key and message of a configuration error.
fn config_error(result: topicbus::Result<BusConfig>) -> (String, String) {
    match result {
        Err(Error::Config { key, message }) => (key, message),
        Err(other) => panic!("expected a config error, got {other:?}"),
        Ok(config) => panic!("expected a config error, got {config:?}"),
    }
}

#[test]
fn the_go_services_environment_variables_work_with_the_rice_prefix() {
    let config = rice(&[
        ("RICE_BUS_TYPE", "memory"),
        ("RICE_KAFKA_BROKERS", "k1:9092, k2:9092"),
        ("RICE_KAFKA_GROUP", "rice-search"),
        ("RICE_EVENT_LOG_ENABLED", "true"),
        ("RICE_EVENT_LOG_PATH", "/var/log/rice/events.jsonl"),
        // The application's own settings share the prefix: left alone.
        ("RICE_SERVER_PORT", "8080"),
        ("OTHER_BUS_TYPE", "kafak"),
    ])
    .expect("loads");
    assert_eq!(config.bus_type, BusType::Memory);
    assert_eq!(config.kafka_brokers, ["k1:9092", "k2:9092"]);
    assert_eq!(config.kafka_group.as_deref(), Some("rice-search"));
    assert_eq!(config.service_name(), "rice-search");
    assert!(config.event_log_enabled);
    assert_eq!(
        config.event_log_path.as_deref(),
        Some(std::path::Path::new("/var/log/rice/events.jsonl"))
    );
    // Unset keys keep their defaults.
    assert_eq!(config.request_timeout, Duration::from_secs(30));
    assert_eq!(config.retries, 3);
    assert!(!config.fallback_to_memory);
}

#[test]
fn every_other_key_has_an_environment_variable() {
    let config = rice(&[
        ("RICE_SERVICE", "indexer"),
        ("RICE_REQUEST_TIMEOUT", "5s"),
        ("RICE_SHUTDOWN_TIMEOUT", "1m 30s"),
        ("RICE_RETRIES", "7"),
        ("RICE_MAX_PENDING_REQUESTS", "100"),
        ("RICE_FALLBACK_TO_MEMORY", "yes"),
        ("RICE_MEMORY_PARTITIONS", "4"),
        ("RICE_MEMORY_QUEUE_CAPACITY", "64"),
        ("RICE_EVENT_LOG_FLUSH_INTERVAL", "20ms"),
        ("RICE_EVENT_LOG_MAX_FILE_BYTES", "1048576"),
        ("RICE_KAFKA_PROVISION_TOPICS", "false"),
        ("RICE_KAFKA_PARTITIONS", "12"),
        ("RICE_KAFKA_REPLICATION_FACTOR", "3"),
        ("RICE_KAFKA_DELIVERY_TIMEOUT", "15s"),
        ("RICE_KAFKA_CONNECT_TIMEOUT", "2s"),
        ("RICE_KAFKA_JOIN_TIMEOUT", "20s"),
        ("RICE_KAFKA_GO_ENVELOPE", "1"),
        ("RICE_KAFKA_PROPERTIES__SECURITY_PROTOCOL", "SASL_SSL"),
        ("RICE_KAFKA_PROPERTIES__FETCH_WAIT_MAX_MS", "10"),
    ])
    .expect("loads");
    assert_eq!(config.service_name(), "indexer");
    assert_eq!(config.request_timeout, Duration::from_secs(5));
    assert_eq!(config.shutdown_timeout, Duration::from_secs(90));
    assert_eq!(config.retries, 7);
    assert_eq!(config.max_pending_requests, 100);
    assert!(config.fallback_to_memory);
    assert_eq!(config.memory_partitions, 4);
    assert_eq!(config.memory_queue_capacity, 64);
    assert_eq!(config.event_log_flush_interval, Duration::from_millis(20));
    assert_eq!(config.event_log_max_file_bytes, 1_048_576);
    assert!(!config.kafka_provision_topics);
    assert_eq!(config.kafka_partitions, 12);
    assert_eq!(config.kafka_replication_factor, 3);
    assert_eq!(config.kafka_delivery_timeout, Duration::from_secs(15));
    assert_eq!(config.kafka_connect_timeout, Duration::from_secs(2));
    assert_eq!(config.kafka_join_timeout, Duration::from_secs(20));
    assert!(config.kafka_go_envelope);
    let expected: BTreeMap<String, String> = [
        ("fetch.wait.max.ms", "10"),
        ("security.protocol", "SASL_SSL"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(config.kafka_properties, expected);
}

/// Run in a child process by `from_env_reads_the_process_environment`:
/// prints what `from_env_prefixed("RICE")` and `from_env()` loaded.
#[test]
#[ignore = "a child process of from_env_reads_the_process_environment"]
fn child_prints_config_from_env() {
    let rice = BusConfig::from_env_prefixed("RICE").expect("RICE_* loads");
    let topicbus = BusConfig::from_env().expect("TOPICBUS_* loads");
    println!(
        "CONFIG service={} partitions={} retries={} topicbus_retries={}",
        rice.service_name(),
        rice.memory_partitions,
        rice.retries,
        topicbus.retries
    );
}

#[test]
fn from_env_reads_the_process_environment() {
    let mut child = Command::new(std::env::current_exe().expect("test binary"));
    child.args([
        "--exact",
        "child_prints_config_from_env",
        "--ignored",
        "--nocapture",
    ]);
    for (name, _) in std::env::vars() {
        if name.starts_with("RICE_") || name.starts_with("TOPICBUS_") {
            child.env_remove(name);
        }
    }
    let mut child = child
        .env("RICE_KAFKA_GROUP", "rice-search")
        .env("RICE_MEMORY_PARTITIONS", "5")
        .env("TOPICBUS_RETRIES", "9")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .expect("child output");
    assert!(child.wait().expect("child exits").success(), "{out}");
    assert!(
        out.contains("CONFIG service=rice-search partitions=5 retries=3 topicbus_retries=9"),
        "{out}"
    );
}

const GO_YAML: &str = "\
server:
  port: 8080
ml:
  model: minilm
bus:
  type: kafka
  kafka_brokers:
    - kafka-1:9092
    - kafka-2:9092
  kafka_group: rice-search
  event_log_enabled: true
  event_log_path: /var/log/rice/events.jsonl
";

#[cfg(feature = "kafka")]
#[test]
fn the_go_services_yaml_block_loads_as_is() {
    let dir = TempDir::new("config-yaml");
    let path = dir.write("rice.yaml", GO_YAML);
    let config = BusConfig::loader().file(&path).load().expect("loads");
    assert_eq!(config.bus_type, BusType::Kafka);
    assert_eq!(config.kafka_brokers, ["kafka-1:9092", "kafka-2:9092"]);
    assert_eq!(config.kafka_group.as_deref(), Some("rice-search"));
    assert!(config.event_log_enabled);
    assert_eq!(
        config.event_log_path.as_deref(),
        Some(std::path::Path::new("/var/log/rice/events.jsonl"))
    );
}

#[cfg(not(feature = "kafka"))]
#[test]
fn a_kafka_bus_block_without_the_kafka_feature_names_the_key() {
    let dir = TempDir::new("config-yaml");
    let path = dir.write("rice.yaml", GO_YAML);
    let (key, message) = config_error(BusConfig::loader().file(&path).load());
    assert_eq!(key, "bus.type");
    assert!(
        message.contains("`kafka`") && message.contains("feature"),
        "{message}"
    );
}

/// An application's own configuration type, holding the bus block.
#[derive(Deserialize)]
struct AppConfig {
    bus: BusConfig,
    server: Server,
}

#[derive(Deserialize)]
struct Server {
    port: u16,
}

#[test]
fn bus_config_deserializes_with_serde_inside_an_application_config() {
    let json = r#"{
        "server": {"port": 8080},
        "bus": {"type": "kafka", "kafka_brokers": "kafka-1:9092,kafka-2:9092",
                "kafka_group": "rice-search", "event_log_enabled": false,
                "event_log_path": "events.jsonl", "request_timeout": "2s",
                "kafka_properties": {"sasl.mechanism": "PLAIN", "linger.ms": 5}}
    }"#;
    let app: AppConfig = serde_json::from_str(json).expect("deserializes");
    assert_eq!(app.server.port, 8080);
    assert_eq!(app.bus.bus_type, BusType::Kafka);
    assert_eq!(app.bus.kafka_brokers, ["kafka-1:9092", "kafka-2:9092"]);
    assert_eq!(app.bus.request_timeout, Duration::from_secs(2));
    assert_eq!(app.bus.kafka_properties["linger.ms"], "5");
    assert_eq!(app.bus.kafka_properties["sasl.mechanism"], "PLAIN");

    let typo = r#"{"server": {"port": 1}, "bus": {"kafka_broker": "k:9092"}}"#;
    let error = serde_json::from_str::<AppConfig>(typo)
        .err()
        .expect("an unknown key is refused");
    assert!(error.to_string().contains("kafka_broker"), "{error}");
}

#[test]
fn a_toml_bus_table_loads() {
    let dir = TempDir::new("config-toml");
    let path = dir.write(
        "rice.toml",
        r#"
[server]
port = 8080

[bus]
type = "memory"
service = "indexer"
request_timeout = "5s"
retries = 5
memory_partitions = 4

[bus.kafka_properties]
"client.id" = "indexer-1"
"#,
    );
    let config = BusConfig::loader().file(&path).load().expect("loads");
    assert_eq!(config.bus_type, BusType::Memory);
    assert_eq!(config.service_name(), "indexer");
    assert_eq!(config.request_timeout, Duration::from_secs(5));
    assert_eq!(config.retries, 5);
    assert_eq!(config.memory_partitions, 4);
    assert_eq!(config.kafka_properties["client.id"], "indexer-1");
}

#[test]
fn the_environment_overrides_the_file_key_by_key() {
    let dir = TempDir::new("config-layers");
    let path = dir.write(
        "rice.yaml",
        "\
bus:
  type: memory
  service: from-file
  kafka_brokers: [file-1:9092]
  retries: 5
  request_timeout: 3s
  kafka_properties:
    client.id: from-file
    acks: all
",
    );
    let config = BusConfig::loader()
        .file(&path)
        .env_prefix("RICE")
        .env_vars([
            ("RICE_KAFKA_BROKERS", "env-1:9092,env-2:9092"),
            ("RICE_RETRIES", "1"),
            ("RICE_KAFKA_PROPERTIES__CLIENT_ID", "from-env"),
        ])
        .load()
        .expect("loads");
    // From the environment.
    assert_eq!(config.kafka_brokers, ["env-1:9092", "env-2:9092"]);
    assert_eq!(config.retries, 1);
    assert_eq!(config.kafka_properties["client.id"], "from-env");
    // From the file, where the environment says nothing.
    assert_eq!(config.service_name(), "from-file");
    assert_eq!(config.request_timeout, Duration::from_secs(3));
    assert_eq!(config.kafka_properties["acks"], "all");
    // Defaults, where neither does.
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(config.kafka_properties.len(), 2);

    // `BusConfig::load` is the same two layers.
    let loaded = BusConfig::load(&path, "RICE_UNSET_PREFIX").expect("loads");
    assert_eq!(loaded.retries, 5);
}

#[test]
fn an_unknown_bus_type_names_the_variable_and_value() {
    let (key, message) = config_error(rice(&[("RICE_BUS_TYPE", "kafak")]));
    assert_eq!(key, "RICE_BUS_TYPE");
    assert!(
        message.contains("`kafak`") && message.contains("expected memory or kafka"),
        "{message}"
    );
}

#[cfg(feature = "kafka")]
#[test]
fn kafka_without_brokers_names_the_brokers_variable() {
    let (key, message) = config_error(rice(&[("RICE_BUS_TYPE", "kafka")]));
    assert_eq!(key, "RICE_KAFKA_BROKERS");
    assert!(message.contains("no broker"), "{message}");

    let (key, _) = config_error(rice(&[
        ("RICE_BUS_TYPE", "kafka"),
        ("RICE_KAFKA_BROKERS", " , "),
    ]));
    assert_eq!(key, "RICE_KAFKA_BROKERS");
}

#[test]
fn a_broker_without_a_port_names_the_variable_and_value() {
    let (key, message) = config_error(rice(&[("RICE_KAFKA_BROKERS", "k1:9092,kafka-2")]));
    assert_eq!(key, "RICE_KAFKA_BROKERS");
    assert!(message.contains("`kafka-2`"), "{message}");
}

#[test]
fn bad_durations_name_the_variable_and_value() {
    for (value, shown) in [("fast", "`fast`"), ("30", "`30`"), ("0s", "`0s`")] {
        let (key, message) = config_error(rice(&[("RICE_REQUEST_TIMEOUT", value)]));
        assert_eq!(key, "RICE_REQUEST_TIMEOUT", "{value}");
        assert!(message.contains(shown), "{value}: {message}");
    }
}

#[test]
fn bad_numbers_and_booleans_name_the_variable_and_value() {
    let cases = [
        ("RICE_RETRIES", "many", "many"),
        ("RICE_EVENT_LOG_ENABLED", "maybe", "maybe"),
        ("RICE_MEMORY_PARTITIONS", "0", "`0`"),
        ("RICE_MAX_PENDING_REQUESTS", "-1", "-1"),
    ];
    for (var, value, shown) in cases {
        let (key, message) = config_error(rice(&[(var, value)]));
        assert_eq!(key, var);
        assert!(message.contains(shown), "{var}={value}: {message}");
    }
}

#[test]
fn an_enabled_event_log_without_a_path_names_the_path_variable() {
    let (key, message) = config_error(rice(&[("RICE_EVENT_LOG_ENABLED", "true")]));
    assert_eq!(key, "RICE_EVENT_LOG_PATH");
    assert!(message.contains("enabled"), "{message}");
}

#[test]
fn file_errors_name_the_key_the_value_and_the_file() {
    let dir = TempDir::new("config-errors");
    let bad_type = dir.write("type.yaml", "bus:\n  type: kafak\n");
    let (key, message) = config_error(BusConfig::loader().file(&bad_type).load());
    assert_eq!(key, "bus.type");
    assert!(message.contains("`kafak`"), "{message}");
    assert!(message.contains("type.yaml"), "{message}");

    let typo = dir.write("typo.yaml", "bus:\n  kafka_broker: k:9092\n");
    let (key, message) = config_error(BusConfig::loader().file(&typo).load());
    assert_eq!(key, "bus.kafka_broker");
    assert!(message.contains("unknown key"), "{message}");

    let duration = dir.write("duration.toml", "[bus]\nshutdown_timeout = 30\n");
    let (key, message) = config_error(BusConfig::loader().file(&duration).load());
    assert_eq!(key, "bus.shutdown_timeout");
    assert!(message.contains("`30`"), "{message}");

    let missing = dir.path().join("missing.yaml");
    let (key, _) = config_error(BusConfig::loader().file(&missing).load());
    assert!(key.ends_with("missing.yaml"), "{key}");

    let broken = dir.write("broken.yaml", "bus: [unclosed\n");
    let (key, _) = config_error(BusConfig::loader().file(&broken).load());
    assert!(key.ends_with("broken.yaml"), "{key}");
}

#[cfg(feature = "kafka")]
#[test]
fn a_key_missing_from_a_file_is_named_as_in_the_file() {
    let dir = TempDir::new("config-missing-key");
    let path = dir.write("rice.yaml", "bus:\n  type: kafka\n");
    let (key, _) = config_error(BusConfig::loader().file(&path).load());
    assert_eq!(key, "bus.kafka_brokers");
}

#[test]
fn injected_variables_default_to_the_topicbus_prefix() {
    let config = BusConfig::loader()
        .env_vars([("TOPICBUS_RETRIES", "4"), ("RICE_RETRIES", "9")])
        .load()
        .expect("loads");
    assert_eq!(config.retries, 4);
}

#[test]
fn every_error_is_of_kind_config() {
    let error = rice(&[("RICE_BUS_TYPE", "kafak")]).expect_err("invalid");
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("RICE_BUS_TYPE"), "{error}");
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let dir = TempDir::new("config-secrets");
    let path = dir.write(
        "rice.yaml",
        "\
bus:
  kafka_properties:
    ssl.key.password: file-secret-1
    sasl.oauthbearer.client.secret: file-secret-2
    client.id: visible-client
",
    );
    let config = BusConfig::loader()
        .file(&path)
        .env_prefix("RICE")
        .env_vars([
            ("RICE_KAFKA_PROPERTIES__SASL_USERNAME", "env-secret-1"),
            ("RICE_KAFKA_PROPERTIES__SASL_PASSWORD", "env-secret-2"),
            ("RICE_KAFKA_PROPERTIES__SASL_JAAS_CONFIG", "env-secret-3"),
        ])
        .load()
        .expect("loads");
    assert_eq!(config.kafka_properties["sasl.password"], "env-secret-2");
    let shown = format!("{config:?}");
    for secret in [
        "file-secret-1",
        "file-secret-2",
        "env-secret-1",
        "env-secret-2",
        "env-secret-3",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    assert!(shown.contains("visible-client"), "{shown}");
    assert!(shown.contains("sasl.password"), "{shown}");
}

#[test]
fn a_loaders_debug_output_hides_the_values_of_secret_variables() {
    let loader = BusConfig::loader().env_prefix("RICE").env_vars([
        ("RICE_KAFKA_PROPERTIES__SASL_PASSWORD", "env-secret-1"),
        ("RICE_KAFKA_PROPERTIES__SSL_KEY_PASSWORD", "env-secret-2"),
        ("RICE_KAFKA_PROPERTIES__SASL_JAAS_CONFIG", "env-secret-3"),
        (
            "RICE_KAFKA_PROPERTIES__SASL_OAUTHBEARER_CLIENT_SECRET",
            "env-secret-4",
        ),
        ("RICE_API_TOKEN", "env-secret-5"),
        ("RICE_KAFKA_BROKERS", "visible-broker:9092"),
    ]);
    let shown = format!("{loader:?}");
    for secret in 1..=5 {
        let secret = format!("env-secret-{secret}");
        assert!(!shown.contains(&secret), "{secret} leaked: {shown}");
    }
    assert!(
        shown.contains("RICE_KAFKA_PROPERTIES__SASL_PASSWORD"),
        "{shown}"
    );
    assert!(shown.contains("visible-broker:9092"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_builds_a_memory_bus_from_the_config() {
    let config = rice(&[
        ("RICE_KAFKA_GROUP", "search"),
        ("RICE_MEMORY_PARTITIONS", "2"),
    ])
    .expect("loads");
    let bus = Bus::connect(config).await.expect("memory connects");
    assert_eq!(bus.service(), "search");
    assert_ping_round_trip(&bus).await;
    bus.shutdown().await.expect("shutdown");
}

/// A subscriber on `bus` receives a published `Ping`.
async fn assert_ping_round_trip(bus: &Bus) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    bus.group("config.ping")
        .subscribe(move |ping: Ping, ctx: Context| {
            let tx = tx.clone();
            async move {
                tx.send((ping.n, ctx.group().to_owned()))
                    .map_err(|e| e.to_string())
            }
        })
        .await
        .expect("subscribe");
    bus.publish(&Ping { n: 7 }).await.expect("publish");
    let (n, group) = tokio::time::timeout(HANG, rx.recv())
        .await
        .expect("hang guard")
        .expect("delivered");
    assert_eq!(n, 7);
    assert_eq!(group, "config.ping");
}

#[cfg(not(feature = "kafka"))]
#[tokio::test]
async fn connect_refuses_kafka_without_the_kafka_feature() {
    let mut config = BusConfig::default();
    config.bus_type = BusType::Kafka;
    config.kafka_brokers = vec!["127.0.0.1:9092".into()];
    match Bus::connect(config).await {
        Err(Error::Config { key, message }) => {
            assert_eq!(key, "type");
            assert!(message.contains("feature"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[cfg(feature = "kafka")]
mod kafka {
    use super::*;

    /// `host:port` where nothing listens: a port the OS just gave out and
    /// took back.
    fn closed_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        address.to_string()
    }

    fn unreachable_kafka(fallback: &str) -> BusConfig {
        rice(&[
            ("RICE_BUS_TYPE", "kafka"),
            ("RICE_KAFKA_BROKERS", &closed_port()),
            ("RICE_KAFKA_GROUP", "search"),
            ("RICE_KAFKA_CONNECT_TIMEOUT", "1s"),
            ("RICE_FALLBACK_TO_MEMORY", fallback),
        ])
        .expect("loads")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_kafka_fails_without_the_fallback() {
        let config = unreachable_kafka("false");
        let brokers = config.kafka_brokers[0].clone();
        let error = tokio::time::timeout(HANG, Bus::connect(config))
            .await
            .expect("hang guard")
            .expect_err("nothing listens there");
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        assert!(error.to_string().contains(&brokers), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_kafka_falls_back_to_memory_when_asked() {
        let config = unreachable_kafka("true");
        let bus = tokio::time::timeout(HANG, Bus::connect(config))
            .await
            .expect("hang guard")
            .expect("falls back to memory");
        assert_eq!(bus.service(), "search");
        assert_ping_round_trip(&bus).await;
        bus.shutdown().await.expect("shutdown");
    }

    /// librdkafka refuses each of these properties (misspelt names, values
    /// it does not take) in every build, with TLS or without; its error names
    /// the property, never the value.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_property_is_named_without_its_value() {
        for (property, value) in [
            ("ssl.key.pasword", "pw-secret-1"),
            ("ssl.keystore.passwd", "pw-secret-2"),
            ("sasl.passwrod", "pw-secret-3"),
            ("acks", "pw-secret-4"),
            ("linger.ms", "9999999999"),
        ] {
            let mut config = unreachable_kafka("true");
            config
                .kafka_properties
                .insert(property.into(), value.into());
            let error = tokio::time::timeout(HANG, Bus::connect(config))
                .await
                .expect("hang guard")
                .expect_err("librdkafka refuses it");
            let (shown, debug) = (error.to_string(), format!("{error:?}"));
            assert_eq!(error.kind(), ErrorKind::Config, "{shown}");
            assert!(shown.contains(property), "{shown}");
            assert!(!shown.contains(value), "{value} leaked: {shown}");
            assert!(!debug.contains(value), "{value} leaked: {debug}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_kafka_property_is_not_a_reason_to_fall_back() {
        let mut config = unreachable_kafka("true");
        config
            .kafka_properties
            .insert("acks".into(), "sometimes".into());
        let error = tokio::time::timeout(HANG, Bus::connect(config))
            .await
            .expect("hang guard")
            .expect_err("acks=sometimes is invalid");
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    }
}
