//! The Apache Kafka cluster that `scripts/kafka.sh` runs for this checkout,
//! for tests that crash and restart its nodes. The script keeps the
//! cluster's pids and data; a test only asks it to `kill` or `restart` a
//! node, and asks the cluster itself (metadata) which node leads what.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

/// A running cluster started by `scripts/kafka.sh start`.
pub struct KafkaCluster {
    /// Its bootstrap address, as `scripts/kafka.sh start` printed it.
    pub bootstrap: String,
    script: PathBuf,
}

#[allow(dead_code)]
impl KafkaCluster {
    /// The cluster whose address the environment variable `var` holds. It
    /// must be this checkout's `scripts/kafka.sh` cluster (the test kills
    /// its nodes through the script), with at least `nodes` nodes; the
    /// error says what to run otherwise.
    pub fn from_env(var: &str, nodes: usize) -> Result<Self, String> {
        let start = if nodes > 1 {
            format!("{var}=$(scripts/kafka.sh start --nodes {nodes})")
        } else {
            format!("{var}=$(scripts/kafka.sh start)")
        };
        let bootstrap = std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("set {var} to a cluster of scripts/kafka.sh: {start}"))?;
        let cluster = Self {
            bootstrap,
            script: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh")),
        };
        let running = cluster.script(&["address"])?;
        if running.trim() != cluster.bootstrap {
            return Err(format!(
                "{var}={} is not the cluster scripts/kafka.sh runs for this checkout ({}): \
                 this test kills and restarts nodes through the script; {start}",
                cluster.bootstrap,
                running.trim()
            ));
        }
        if cluster.nodes() < nodes {
            return Err(format!(
                "{var}={} has {} node(s); this test needs {nodes}: {start}",
                cluster.bootstrap,
                cluster.nodes()
            ));
        }
        Ok(cluster)
    }

    /// How many nodes the cluster has (numbered 1 to this).
    pub fn nodes(&self) -> usize {
        self.bootstrap.split(',').count()
    }

    /// SIGKILLs node `node` and waits until it is gone. Blocks: call it off
    /// the async runtime.
    pub fn kill(&self, node: i32) {
        self.script(&["kill", &node.to_string()])
            .unwrap_or_else(|e| panic!("kill node {node}: {e}"));
    }

    /// Stops node `node` if it runs (SIGTERM: a controlled shutdown),
    /// starts it on its data again and waits until it serves clients and
    /// every partition is fully in sync. Blocks: call it off the async
    /// runtime.
    pub fn restart(&self, node: i32) {
        self.script(&["restart", &node.to_string()])
            .unwrap_or_else(|e| panic!("restart node {node}: {e}"));
    }

    /// The node leading `partition` of `topic` now, by the cluster's
    /// metadata. Blocks: call it off the async runtime.
    pub fn leader(&self, topic: &str, partition: i32) -> i32 {
        let metadata = self
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
        let topic_metadata = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .unwrap_or_else(|| panic!("no metadata for {topic}"));
        topic_metadata
            .partitions()
            .iter()
            .find(|p| p.id() == partition)
            .unwrap_or_else(|| panic!("{topic} has no partition {partition}"))
            .leader()
    }

    /// How many messages `topic` holds (0 if it does not exist). Blocks:
    /// call it off the async runtime.
    pub fn messages(&self, topic: &str) -> i64 {
        let client = self.client();
        let metadata = client
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return 0;
        };
        found
            .partitions()
            .iter()
            .map(|p| {
                let (low, high) = client
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("watermarks of {topic}/{}: {e}", p.id()));
                high - low
            })
            .sum()
    }

    fn client(&self) -> BaseConsumer {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            // Asking about a topic must not create it.
            .set("allow.auto.create.topics", "false")
            .create()
            .expect("metadata client")
    }

    fn script(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(&self.script)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "`scripts/kafka.sh {}` failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
