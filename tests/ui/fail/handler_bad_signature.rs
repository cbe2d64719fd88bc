use serde::{Deserialize, Serialize};
use topicbus::{handler, Context, Topic};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
}

#[handler]
async fn no_payload() -> Result<(), std::io::Error> {
    Ok(())
}

#[handler]
async fn three_args(ev: ChunkCreated, ctx: Context, extra: u32) -> Result<(), std::io::Error> {
    let _ = (ev, ctx, extra);
    Ok(())
}

#[handler]
async fn no_return_type(ev: ChunkCreated) {
    let _ = ev;
}

#[handler]
async fn generic<T>(ev: ChunkCreated) -> Result<(), std::io::Error> {
    let _ = ev;
    Ok(())
}

#[handler]
async fn borrowed(ev: &ChunkCreated) -> Result<(), std::io::Error> {
    let _ = ev;
    Ok(())
}

struct Service;

impl Service {
    #[handler]
    async fn method(&self, ev: ChunkCreated) -> Result<(), std::io::Error> {
        let _ = ev;
        Ok(())
    }
}

#[handler]
struct NotAFunction;

fn main() {}
