//! librdkafka's in-process mock cluster, kept on a thread of its own
//! (`MockCluster` is not `Send`); the tool under test reaches it over TCP
//! at `bootstrap`. Adapted from the root package's `tests/support/mock_kafka.rs`.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;

/// A topic to create: name and partitions, and where to say it is done.
struct CreateTopic(String, i32, mpsc::Sender<()>);

/// A running mock cluster; stops when dropped.
pub struct MockKafka {
    pub bootstrap: String,
    commands: Option<mpsc::Sender<CreateTopic>>,
    thread: Option<JoinHandle<()>>,
}

impl MockKafka {
    pub fn start() -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (commands, inbox) = mpsc::channel::<CreateTopic>();
        let thread = std::thread::spawn(move || {
            let cluster = MockCluster::new(1).expect("mock cluster");
            ready_tx
                .send(cluster.bootstrap_servers())
                .expect("test alive");
            for CreateTopic(name, partitions, done) in inbox {
                cluster
                    .create_topic(&name, partitions, 1)
                    .expect("mock cluster creates the topic");
                let _ = done.send(());
            }
        });
        Self {
            bootstrap: ready_rx.recv().expect("mock cluster started"),
            commands: Some(commands),
            thread: Some(thread),
        }
    }

    /// Creates `topic` with `partitions` partitions; returns once it exists.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let (done, created) = mpsc::channel();
        self.commands
            .as_ref()
            .expect("running")
            .send(CreateTopic(topic.to_owned(), partitions, done))
            .expect("mock thread alive");
        created.recv().expect("topic created");
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
