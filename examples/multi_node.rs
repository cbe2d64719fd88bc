//! The search-service scenario on N processes sharing a Kafka broker: every
//! node serves `ml.embed.request` and indexes `index.chunk.created` in the
//! service's consumer group; the coordinator (this process) publishes chunks,
//! sends embed requests, and shows how the work was split.
//!
//! ```text
//! BROKERS=$(scripts/kafka.sh start)
//! cargo run --features kafka --example multi_node -- "$BROKERS" 3
//! ```
//!
//! Each node is this program started again with `--node`; it prints one
//! line per message it handled, which the coordinator tallies. Every
//! process builds its bus with `BusConfig::from_env_prefixed("RICE")` (so
//! `RICE_KAFKA_PROPERTIES__*` and the other variables apply), on Kafka at
//! the brokers given.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use topicbus::{Bus, BusConfig, BusType, Context, Topic};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.request", response = EmbedResponse, partitions = 6)]
struct EmbedRequest {
    texts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.response")]
struct EmbedResponse {
    node: String,
    embeddings: Vec<Vec<f32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created", key = chunk_id, partitions = 6)]
struct ChunkCreated {
    chunk_id: String,
    text: String,
}

const CHUNKS: usize = 60;
const REQUESTS: usize = 30;

/// The bus of one process: the Go service's `RICE_*` variables, on Kafka at
/// `brokers`, as `service`.
async fn connect(brokers: &str, service: &str) -> Result<Bus, Box<dyn std::error::Error>> {
    let mut config = BusConfig::from_env_prefixed("RICE")?;
    config.bus_type = BusType::Kafka;
    config.kafka_brokers = vec![brokers.to_owned()];
    config.service = Some(service.to_owned());
    // Test brokers answer a waiting fetch only when its wait ends.
    for (key, value) in [
        ("fetch.wait.max.ms", "10"),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        config
            .kafka_properties
            .entry(key.to_owned())
            .or_insert_with(|| value.to_owned());
    }
    Ok(Bus::connect(config).await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, brokers, name] if flag == "--node" => node(brokers, name).await,
        [brokers, nodes] => coordinator(brokers, nodes.parse()?).await,
        [brokers] => coordinator(brokers, 3).await,
        _ => Err("usage: multi_node BROKERS [NODES]".into()),
    }
}

/// One node: answers embed requests and indexes chunks until stdin closes.
async fn node(brokers: &str, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let bus = connect(brokers, "search").await?;
    let me = name.to_owned();
    bus.group("search.embedder")
        .serve(move |req: EmbedRequest| {
            let me = me.clone();
            async move {
                println!("embed {}", req.texts.len());
                let embeddings = req.texts.iter().map(|t| vec![t.len() as f32]).collect();
                Ok::<_, std::convert::Infallible>(EmbedResponse {
                    node: me,
                    embeddings,
                })
            }
        })
        .await?;
    bus.group("search.indexer")
        .subscribe(|chunk: ChunkCreated, ctx: Context| async move {
            println!("chunk {} {}", chunk.chunk_id, ctx.group());
            Ok::<_, std::convert::Infallible>(())
        })
        .await?;
    println!("ready");
    // The coordinator closes our stdin when the run is over.
    tokio::task::spawn_blocking(|| std::io::stdin().lines().count()).await?;
    bus.shutdown().await?;
    Ok(())
}

async fn coordinator(brokers: &str, nodes: usize) -> Result<(), Box<dyn std::error::Error>> {
    let bus = connect(brokers, "frontend").await?;
    bus.ensure_topic::<EmbedRequest>().await?;
    bus.ensure_topic::<ChunkCreated>().await?;

    let exe = std::env::current_exe()?;
    let tally: Arc<Mutex<BTreeMap<String, (usize, usize)>>> = Arc::default();
    let mut children = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..nodes {
        let name = format!("node-{i}");
        let mut child = Command::new(&exe)
            .args(["--node", brokers, &name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let tally = Arc::clone(&tally);
        let ready = ready_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut tally = tally.lock().expect("tally");
                let entry = tally.entry(name.clone()).or_default();
                match line.split_whitespace().next() {
                    Some("ready") => drop(ready.send(name.clone())),
                    Some("chunk") => entry.0 += 1,
                    Some("embed") => entry.1 += 1,
                    _ => {}
                }
            }
        });
        children.push(child);
    }
    for _ in 0..nodes {
        let name = ready_rx
            .recv()
            .await
            .ok_or("a node exited before it was ready")?;
        println!("{name} joined the `search` groups");
    }

    let chunks: Vec<ChunkCreated> = (0..CHUNKS)
        .map(|i| ChunkCreated {
            chunk_id: format!("chunk-{i}"),
            text: format!("text of chunk {i}"),
        })
        .collect();
    bus.publish_batch(&chunks).await?;
    println!("published {CHUNKS} chunks");

    let mut answered_by: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..REQUESTS {
        let reply = bus
            .request(&EmbedRequest {
                texts: vec![format!("query {i}")],
            })
            .timeout(Duration::from_secs(30))
            .await?;
        *answered_by.entry(reply.node).or_default() += 1;
    }
    println!("{REQUESTS} requests answered: {answered_by:?}");

    tokio::time::timeout(Duration::from_secs(60), async {
        while tally
            .lock()
            .expect("tally")
            .values()
            .map(|t| t.0)
            .sum::<usize>()
            < CHUNKS
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .map_err(|_| "not every chunk was indexed within 60 s")?;
    for child in &mut children {
        drop(child.stdin.take());
    }
    for child in &mut children {
        child.wait()?;
    }
    for (node, (chunks, embeds)) in tally.lock().expect("tally").iter() {
        println!("{node}: indexed {chunks} chunks, answered {embeds} embed requests");
    }
    bus.shutdown().await?;
    Ok(())
}
