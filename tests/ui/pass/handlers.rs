//! `#[handler]` with and without `Context`, with options, docs and visibility.
use serde::{Deserialize, Serialize};
use std::fmt;
use topicbus::{handler, Bus, Context, Handler, Topic};

#[derive(Clone, Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.request", response = EmbedResponse)]
pub struct EmbedRequest {
    texts: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.response")]
pub struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Clone, Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created", codec = "bincode", key = chunk_id)]
struct ChunkCreated {
    chunk_id: String,
}

#[derive(Debug)]
pub struct MyError;

impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("my error")
    }
}

/// Answers embedding requests.
#[handler]
pub async fn embed(req: EmbedRequest) -> Result<EmbedResponse, MyError> {
    Ok(EmbedResponse {
        embeddings: req.texts.iter().map(|t| vec![t.len() as f32]).collect(),
    })
}

#[handler(
    group = "indexer",
    retries = 5,
    concurrency = 4,
    timeout = "2s",
    backoff = "100ms"
)]
async fn on_chunk(ev: ChunkCreated, ctx: topicbus::Context) -> Result<(), MyError> {
    let _ = (ev.chunk_id, ctx.attempt());
    Ok(())
}

#[handler(retries = 0)]
#[allow(clippy::needless_pass_by_value)]
async fn with_pattern(
    ChunkCreated { chunk_id }: ChunkCreated,
    _: Context,
) -> std::result::Result<(), String> {
    let _ = chunk_id;
    Ok(())
}

mod nested {
    use super::*;

    #[handler]
    pub(crate) async fn answer(_req: EmbedRequest) -> std::io::Result<EmbedResponse> {
        Ok(EmbedResponse { embeddings: vec![] })
    }
}

async fn register(bus: &Bus) -> topicbus::Result<()> {
    bus.serve(embed).await?;
    bus.serve(nested::answer).await?;
    bus.subscribe(on_chunk).await?;
    bus.subscribe(with_pattern).group("other").await?;
    Ok(())
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let reply = rt
        .block_on(embed::run(EmbedRequest {
            texts: vec!["hi".into()],
        }))
        .unwrap();
    assert_eq!(
        reply,
        EmbedResponse {
            embeddings: vec![vec![2.0]]
        }
    );

    assert_eq!(on_chunk.options().get_retries(), Some(5));
    assert_eq!(embed.options().get_retries(), None);
    assert_eq!(with_pattern.options().get_retries(), Some(0));
    assert!(on_chunk.name().ends_with("::on_chunk"));
    assert!(nested::answer.name().ends_with("::nested::answer"));
    assert_eq!(format!("{embed:?}"), "embed");

    let bus = Bus::memory();
    drop(register(&bus));
}
