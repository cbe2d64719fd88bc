#![cfg(feature = "kafka")]

#[path = "support/mock_kafka.rs"]
mod mock_kafka;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, Topic};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "smoke.request", response = Pong)]
struct Ping {
    n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "smoke.response")]
struct Pong {
    n: u32,
}

fn config(bootstrap: &str) -> KafkaConfig {
    KafkaConfig::new(bootstrap)
        .set("fetch.wait.max.ms", "5")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .provision_topics(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_on_the_mock_cluster() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let kafka = mock_kafka::MockKafka::start(1);
    let bus = Bus::builder()
        .service("smoke")
        .kafka(config(&kafka.bootstrap))
        .connect()
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    bus.serve(|ping: Ping| async move { Ok::<_, String>(Pong { n: ping.n + 1 }) })
        .await
        .expect("serve");
    eprintln!("joined in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let pong = bus
        .request(&Ping { n: 41 })
        .timeout(Duration::from_secs(20))
        .await
        .expect("reply");
    eprintln!("first request in {:?}", started.elapsed());
    assert_eq!(pong, Pong { n: 42 });
    bus.shutdown().await.expect("shutdown");
}
