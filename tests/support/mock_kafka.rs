//! librdkafka's in-process mock cluster, kept on a thread of its own
//! (`MockCluster` is not `Send`).

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;

/// Faults a test can inject into the running mock cluster.
// Shared by several test binaries; not every one injects faults.
#[allow(dead_code)]
pub enum Fault {
    BrokerDown(i32),
    BrokerUp(i32),
}

/// A running mock cluster; stops when dropped.
pub struct MockKafka {
    pub bootstrap: String,
    commands: Option<mpsc::Sender<Fault>>,
    thread: Option<JoinHandle<()>>,
}

impl MockKafka {
    pub fn start(brokers: i32) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (commands, inbox) = mpsc::channel::<Fault>();
        let thread = std::thread::spawn(move || {
            let cluster = MockCluster::new(brokers).expect("mock cluster");
            ready_tx
                .send(cluster.bootstrap_servers())
                .expect("test alive");
            for fault in inbox {
                let outcome = match fault {
                    Fault::BrokerDown(id) => cluster.broker_down(id),
                    Fault::BrokerUp(id) => cluster.broker_up(id),
                };
                outcome.expect("mock cluster fault");
            }
        });
        Self {
            bootstrap: ready_rx.recv().expect("mock cluster started"),
            commands: Some(commands),
            thread: Some(thread),
        }
    }

    #[allow(dead_code)]
    pub fn inject(&self, fault: Fault) {
        self.commands
            .as_ref()
            .expect("running")
            .send(fault)
            .expect("mock thread alive");
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
