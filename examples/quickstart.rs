//! The search-service scenario on one bus: an embed service answers
//! `ml.embed.request`, an indexer handles `index.chunk.created` by asking the
//! embed service for vectors, and a chunk the indexer cannot handle ends in
//! the dead-letter topic.
//!
//! Runs on the in-process memory transport by default. The bus is built from
//! the Go service's variables (`BusConfig::from_env_prefixed("RICE")`), so
//! the same program runs on Kafka:
//!
//! ```text
//! cargo run --example quickstart
//! RICE_BUS_TYPE=kafka RICE_KAFKA_BROKERS=127.0.0.1:19092 \
//!     cargo run --features kafka --example quickstart
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use topicbus::{handler, header, Bus, BusConfig, Context, RawMessage, Topic};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.request", response = EmbedResponse)]
struct EmbedRequest {
    texts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.response")]
struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created", codec = "postcard", key = chunk_id)]
struct ChunkCreated {
    chunk_id: String,
    text: String,
}

#[derive(Debug, thiserror::Error)]
enum IndexError {
    #[error("chunk {0} has no text")]
    Empty(String),
    #[error(transparent)]
    Bus(#[from] topicbus::Error),
}

/// The embed service: a toy model that maps each text to a 4-dim vector.
#[handler(concurrency = 4)]
async fn embed(req: EmbedRequest) -> Result<EmbedResponse, std::convert::Infallible> {
    let embeddings = req
        .texts
        .iter()
        .map(|text| {
            let len = text.len() as f32;
            let words = text.split_whitespace().count() as f32;
            let vowels = text.chars().filter(|c| "aeiou".contains(*c)).count() as f32;
            vec![len, words, vowels, len / words.max(1.0)]
        })
        .collect();
    Ok(EmbedResponse { embeddings })
}

/// The indexer: embeds each new chunk through the embed service.
#[handler(retries = 2, backoff = "20ms", timeout = "5s")]
async fn index_chunk(chunk: ChunkCreated, ctx: Context) -> Result<(), IndexError> {
    if chunk.text.trim().is_empty() {
        println!(
            "indexer: chunk {} is empty (attempt {}), failing",
            chunk.chunk_id,
            ctx.attempt()
        );
        return Err(IndexError::Empty(chunk.chunk_id));
    }
    let bus = ctx.bus()?;
    let reply = bus
        .request(&EmbedRequest {
            texts: vec![chunk.text.clone()],
        })
        .await?;
    println!(
        "indexer: chunk {} -> embedding {:?} (group {})",
        chunk.chunk_id,
        reply.embeddings[0],
        ctx.group()
    );
    INDEXED.fetch_add(1, Ordering::SeqCst);
    PROGRESS.notify_one();
    Ok(())
}

static INDEXED: AtomicUsize = AtomicUsize::new(0);
static PROGRESS: Notify = Notify::const_new();

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // RICE_BUS_TYPE, RICE_KAFKA_BROKERS, RICE_KAFKA_GROUP, ... as the Go
    // service read them; with none set, the memory transport.
    let mut config = BusConfig::from_env_prefixed("RICE")?;
    config
        .kafka_group
        .get_or_insert_with(|| "search".to_owned());
    // The mock cluster answers a waiting fetch only when its wait ends;
    // Apache Kafka does not need this.
    config
        .kafka_properties
        .entry("fetch.wait.max.ms".to_owned())
        .or_insert_with(|| "10".to_owned());
    let transport = config.bus_type;
    let bus = Bus::connect(config).await?;
    println!("bus: {transport} transport, service `{}`", bus.service());

    bus.serve(embed).await?;
    bus.subscribe(index_chunk).await?;

    let dead = Arc::new(Notify::new());
    let dead_seen = Arc::clone(&dead);
    bus.group("quickstart.dead-letters")
        .subscribe_raw("index.chunk.created.dlq", move |msg: RawMessage, _ctx| {
            let dead = Arc::clone(&dead_seen);
            async move {
                println!(
                    "dead letter: after {} attempts: {}",
                    msg.headers.get_str(header::ATTEMPTS).unwrap_or("?"),
                    msg.headers.get_str(header::ERROR).unwrap_or("?")
                );
                dead.notify_one();
                Ok::<_, std::convert::Infallible>(())
            }
        })
        .await?;

    let reply = bus
        .request(&EmbedRequest {
            texts: vec!["hello rust".into(), "typed messages".into()],
        })
        .await?;
    println!("search: direct embed request -> {:?}", reply.embeddings);

    let texts = [
        "rust is a systems language",
        "kafka keeps an ordered log",
        "typed topics catch mistakes early",
    ];
    let chunks: Vec<ChunkCreated> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| ChunkCreated {
            chunk_id: format!("chunk-{i}"),
            text: (*text).to_owned(),
        })
        .collect();
    bus.publish_batch(&chunks).await?;
    bus.publish(&ChunkCreated {
        chunk_id: "chunk-empty".into(),
        text: "   ".into(),
    })
    .await?;

    let all_indexed = async {
        while INDEXED.load(Ordering::SeqCst) < chunks.len() {
            PROGRESS.notified().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(all_indexed, dead.notified());
    })
    .await
    .map_err(|_| "the scenario did not finish within 10 s")?;

    bus.shutdown().await?;
    println!(
        "done: {} chunks indexed, 1 dead-lettered, bus shut down",
        INDEXED.load(Ordering::SeqCst)
    );
    Ok(())
}
