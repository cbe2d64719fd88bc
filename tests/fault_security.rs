//! Security basics on librdkafka's mock cluster (which speaks no SASL and
//! no TLS): SASL/SSL properties reach librdkafka; credentials the broker
//! cannot take and a protocol this build lacks fail with a clear error
//! within the connect timeout instead of hanging; secrets never show in
//! `Debug` output, errors or logs (topicbus's tracing and librdkafka's own
//! log lines, both captured here at the most verbose level).
#![cfg(feature = "kafka")]

#[path = "support/fault_net.rs"]
mod fault_net;
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::{Bus, ErrorKind, Topic};

use fault_net::{guard, kafka_config, tally, Net, Seen};

const SECRET: &str = "pw-9f3c1e7a-never-print-me";

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "fault.secure")]
struct Secure {
    n: u64,
}

/// Everything logged by this test binary: topicbus's tracing events and,
/// through the `log` bridge, librdkafka's log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        captured
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_secrets_stay_out_of_debug_errors_and_logs_kafka() {
    const N: u64 = 20;
    let logs = capture();
    let net = Net::kafka();
    let sasl = |config: topicbus::kafka::KafkaConfig| {
        config
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", "search")
            .set("sasl.password", SECRET)
            .set("debug", "broker,security,protocol")
            .connect_timeout(Duration::from_secs(3))
    };

    let config = sasl(kafka_config(net.brokers()).set("security.protocol", "sasl_plaintext"));
    let shown = format!("{config:?}");
    assert!(!shown.contains(SECRET), "Debug of KafkaConfig: {shown}");
    assert!(
        shown.contains("sasl.username"),
        "other properties are shown: {shown}"
    );

    // The mock cluster speaks no SASL: the handshake fails, and connect
    // says so within its timeout instead of hanging.
    let error = guard("connect with SASL", Bus::builder().kafka(config).connect())
        .await
        .expect_err("the mock cluster cannot authenticate anyone");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let text = format!("{error} / {error:?}");
    assert!(text.contains(net.brokers()), "names the brokers: {text}");
    assert!(
        text.contains("SASL"),
        "says what the broker answered: {text}"
    );
    assert!(!text.contains(SECRET), "error: {text}");
    println!("fault sasl_against_plaintext: {error}");

    // Without the kafka-tls feature: a config error naming the property
    // and the feature, at once. With it: the mock cluster speaks no TLS,
    // and connect says so within its timeout.
    let config = sasl(kafka_config(net.brokers()).set("security.protocol", "sasl_ssl"));
    let error = guard(
        "connect with SASL_SSL",
        Bus::builder().kafka(config).connect(),
    )
    .await
    .expect_err("no TLS in this build, or none on the mock cluster");
    if cfg!(feature = "kafka-tls") {
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        assert!(error.to_string().contains("SSL"), "{error}");
    } else {
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        assert!(error.to_string().contains("security.protocol"), "{error}");
        assert!(error.to_string().contains("kafka-tls"), "{error}");
    }
    assert!(!format!("{error} {error:?}").contains(SECRET), "{error:?}");
    println!("fault sasl_ssl: {error}");

    // Plaintext with a password set: librdkafka takes the property and
    // does not use it; the bus works, and still nothing shows the secret.
    let config = kafka_config(net.brokers())
        .set("sasl.password", SECRET)
        .set("debug", "broker,security,protocol");
    let bus = guard(
        "connect",
        Bus::builder().service("secure").kafka(config).connect(),
    )
    .await
    .expect("plaintext connect");
    assert!(!format!("{bus:?}").contains(SECRET));
    let handled = Seen::new();
    let sink = Arc::clone(&handled);
    bus.group("fault_security.secure")
        .subscribe(move |m: Secure| {
            sink.push(m.n);
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .expect("subscribe");
    let mut acknowledged = Vec::new();
    for n in 0..N {
        bus.publish(&Secure { n }).await.expect("publish");
        acknowledged.push(n);
    }
    handled.wait_for_all("every message", &acknowledged).await;
    guard("shutdown", bus.shutdown()).await.expect("shutdown");
    tally("secrets/kafka_mock", N, &acknowledged, &handled.snapshot());

    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("sasl") || logged.contains("SASL"),
        "librdkafka's log lines are captured (the check below means something)"
    );
    assert!(!logged.contains(SECRET), "a log line shows the secret");
}
