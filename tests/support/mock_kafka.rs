//! librdkafka's in-process mock cluster, kept on a thread of its own
//! (`MockCluster` is not `Send`).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use topicbus::kafka::KafkaConfig;

/// `config` with the consumer settings every test uses: the mock cluster
/// answers a waiting fetch only when it ends, so the wait is short (Apache
/// Kafka answers as soon as data arrives and does not need this), and short
/// sessions notice a departed member quickly. Then any extra librdkafka
/// properties for investigating, e.g.
/// `TOPICBUS_TEST_KAFKA_SET=debug=cgrp,fetch,linger.ms=5` (logs with `RUST_LOG`).
#[allow(dead_code)]
pub fn test_settings(config: KafkaConfig) -> KafkaConfig {
    let mut config = config
        .set("fetch.wait.max.ms", "5")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    if let Ok(extra) = std::env::var("TOPICBUS_TEST_KAFKA_SET") {
        for (key, value) in extra_settings(&extra) {
            config = config.set(key, value);
        }
    }
    config
}

/// `key=value` pairs separated by commas; a part without `=` continues the
/// previous value, so that list-valued properties read naturally:
/// `debug=eos,msg,linger.ms=5` is `debug=eos,msg` and `linger.ms=5`.
fn extra_settings(text: &str) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = Vec::new();
    for part in text.split(',') {
        match (part.split_once('='), settings.last_mut()) {
            (Some((key, value)), _) => settings.push((key.to_owned(), value.to_owned())),
            (None, Some((_, value))) => {
                value.push(',');
                value.push_str(part);
            }
            (None, None) => panic!("TOPICBUS_TEST_KAFKA_SET: `{part}` is not key=value"),
        }
    }
    settings
}

/// Faults a test can inject into the running mock cluster.
// Shared by several test binaries; not every one injects every fault.
#[allow(dead_code)]
pub enum Fault {
    /// Disconnects the broker and refuses new connections.
    BrokerDown(i32),
    /// Accepts connections again.
    BrokerUp(i32),
    /// Down, then up again after the duration, timed on the mock's own
    /// thread so that the outage lasts as long as asked however busy the
    /// test's threads are.
    Outage(i32, Duration),
    /// Delays every response of the broker (-1: of every broker).
    RoundTrip(i32, Duration),
    /// The next requests of `api` fail, one error each, in order
    /// (`RD_KAFKA_RESP_ERR_NO_ERROR` lets one through;
    /// `RD_KAFKA_RESP_ERR__TRANSPORT` drops the connection).
    RequestErrors(RDKafkaApiKey, Vec<RDKafkaRespErr>),
    /// Forgets the errors still queued for `api`.
    ClearRequestErrors(RDKafkaApiKey),
    /// Creates a topic with this many partitions (the mock does not
    /// implement CreateTopics; auto-created topics get its default count).
    CreateTopic(String, i32),
}

/// A running mock cluster; stops when dropped.
pub struct MockKafka {
    pub bootstrap: String,
    commands: Option<mpsc::Sender<(Fault, mpsc::Sender<()>)>>,
    thread: Option<JoinHandle<()>>,
}

impl MockKafka {
    pub fn start(brokers: i32) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (commands, inbox) = mpsc::channel::<(Fault, mpsc::Sender<()>)>();
        let thread = std::thread::spawn(move || {
            let cluster = MockCluster::new(brokers).expect("mock cluster");
            ready_tx
                .send(cluster.bootstrap_servers())
                .expect("test alive");
            for (fault, done) in inbox {
                let outcome = match fault {
                    Fault::BrokerDown(id) => cluster.broker_down(id),
                    Fault::BrokerUp(id) => cluster.broker_up(id),
                    Fault::Outage(id, length) => cluster.broker_down(id).and_then(|()| {
                        std::thread::sleep(length);
                        cluster.broker_up(id)
                    }),
                    Fault::RoundTrip(id, delay) => cluster.broker_round_trip_time(id, delay),
                    Fault::RequestErrors(api, errors) => {
                        cluster.request_errors(api, &errors);
                        Ok(())
                    }
                    Fault::ClearRequestErrors(api) => {
                        cluster.clear_request_errors(api);
                        Ok(())
                    }
                    Fault::CreateTopic(name, partitions) => {
                        cluster.create_topic(&name, partitions, 1)
                    }
                };
                outcome.expect("mock cluster fault");
                let _ = done.send(());
            }
        });
        Self {
            bootstrap: ready_rx.recv().expect("mock cluster started"),
            commands: Some(commands),
            thread: Some(thread),
        }
    }

    /// Injects `fault` without waiting for the mock to apply it.
    #[allow(dead_code)]
    pub fn inject(&self, fault: Fault) {
        drop(self.send(fault));
    }

    /// Injects `fault` and returns once the mock applied it (for an
    /// [`Fault::Outage`]: once the broker is up again). Blocks the calling
    /// thread: call it off the async runtime.
    #[allow(dead_code)]
    pub fn apply(&self, fault: Fault) {
        self.send(fault)
            .recv()
            .expect("mock thread applied the fault");
    }

    fn send(&self, fault: Fault) -> mpsc::Receiver<()> {
        let (done, applied) = mpsc::channel();
        self.commands
            .as_ref()
            .expect("running")
            .send((fault, done))
            .expect("mock thread alive");
        applied
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
