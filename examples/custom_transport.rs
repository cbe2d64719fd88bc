//! A transport of one's own: `Counting` implements the public transport
//! contract (`topicbus::transport::Transport`) by wrapping the memory
//! broker and counting the messages published on each topic and the
//! replies it carries. The quickstart's search-service scenario runs on
//! it: an embed service answers `ml.embed.request`, an indexer handles
//! `index.chunk.created` by asking the embed service for vectors, and a
//! chunk the indexer cannot handle ends in the dead-letter topic.
//!
//! ```text
//! cargo run --example custom_transport
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use topicbus::memory::MemoryBroker;
use topicbus::transport::{
    BoxFuture, Capabilities, GroupMember, ReplyInbox, SubscriptionSpec, Transport, TransportMessage,
};
use topicbus::{handler, header, Bus, Context, RawMessage, RedriveSummary, Topic};

/// The memory broker, counting what passes through it.
#[derive(Default)]
struct Counting {
    inner: MemoryBroker,
    published: Mutex<BTreeMap<String, u64>>,
    replies: AtomicU64,
}

impl Transport for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn capabilities(&self) -> Capabilities {
        // What the memory broker can do: values travel unencoded, and it
        // replays what it retains.
        self.inner.capabilities()
    }

    fn publish(&self, message: TransportMessage) -> BoxFuture<'_, topicbus::Result<()>> {
        *self
            .published
            .lock()
            .unwrap()
            .entry(message.topic().to_owned())
            .or_default() += 1;
        self.inner.publish(message)
    }

    fn join(
        &self,
        spec: SubscriptionSpec,
        member: GroupMember,
    ) -> BoxFuture<'_, topicbus::Result<()>> {
        println!("transport: {} joins {}", spec.group(), spec.topic());
        self.inner.join(spec, member)
    }

    fn leave<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        member: &'a GroupMember,
    ) -> BoxFuture<'a, ()> {
        self.inner.leave(topic, group, member)
    }

    fn leave_now(&self, topic: &str, group: &str, member: &GroupMember) {
        self.inner.leave_now(topic, group, member)
    }

    fn drain<'a>(&'a self, topic: &'a str, group: &'a str) -> BoxFuture<'a, bool> {
        self.inner.drain(topic, group)
    }

    fn local_members(&self, topic: &str, group: &str) -> Option<usize> {
        self.inner.local_members(topic, group)
    }

    fn has_consumers(&self, topic: &str) -> Option<bool> {
        self.inner.has_consumers(topic)
    }

    fn open_inbox(&self, name: &str, inbox: ReplyInbox) -> topicbus::Result<()> {
        self.inner.open_inbox(name, inbox)
    }

    fn reply(&self, reply_to: &str, reply: TransportMessage) -> topicbus::Result<()> {
        self.replies.fetch_add(1, Ordering::Relaxed);
        self.inner.reply(reply_to, reply)
    }

    fn close<'a>(&'a self, inbox: &'a str) -> BoxFuture<'a, ()> {
        self.inner.close(inbox)
    }

    fn close_now(&self, inbox: &str) {
        self.inner.close_now(inbox)
    }

    fn redrive<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, topicbus::Result<RedriveSummary>> {
        self.inner.redrive(topic)
    }
}

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
            vec![len, words, len / words.max(1.0), 1.0]
        })
        .collect();
    Ok(EmbedResponse { embeddings })
}

/// The indexer: embeds each new chunk through the embed service.
#[handler(retries = 2, backoff = "20ms", timeout = "5s")]
async fn index_chunk(chunk: ChunkCreated, ctx: Context) -> Result<(), IndexError> {
    if chunk.text.trim().is_empty() {
        return Err(IndexError::Empty(chunk.chunk_id));
    }
    let reply = ctx
        .bus()?
        .request(&EmbedRequest {
            texts: vec![chunk.text.clone()],
        })
        .await?;
    println!(
        "indexer: chunk {} -> embedding {:?}",
        chunk.chunk_id, reply.embeddings[0]
    );
    INDEXED.fetch_add(1, Ordering::SeqCst);
    PROGRESS.notify_one();
    Ok(())
}

static INDEXED: AtomicUsize = AtomicUsize::new(0);
static PROGRESS: Notify = Notify::const_new();

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An Arc, so that the counts can be read after the bus took it.
    let transport = Arc::new(Counting::default());
    let bus = Bus::builder()
        .service("search")
        .transport(Arc::clone(&transport))
        .connect()
        .await?;

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

    let chunks: Vec<ChunkCreated> = [
        "rust is a systems language",
        "kafka keeps an ordered log",
        "typed topics catch mistakes early",
    ]
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

    let published = transport.published.lock().unwrap().clone();
    for (topic, count) in &published {
        println!("transport: {count} published on {topic}");
    }
    let replies = transport.replies.load(Ordering::Relaxed);
    println!("transport: {replies} replies carried");
    // One direct request and one per indexed chunk, each answered; the
    // chunks and the empty one; its dead letter.
    let expected_requests = 1 + chunks.len() as u64;
    if published.get("ml.embed.request") != Some(&expected_requests)
        || published.get("index.chunk.created") != Some(&(chunks.len() as u64 + 1))
        || published.get("index.chunk.created.dlq") != Some(&1)
        || replies != expected_requests
    {
        return Err("the transport did not see the messages the scenario sent".into());
    }
    println!(
        "done: {} chunks indexed, 1 dead-lettered, bus shut down",
        INDEXED.load(Ordering::SeqCst)
    );
    Ok(())
}
