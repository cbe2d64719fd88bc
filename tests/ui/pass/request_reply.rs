//! `request` returns the declared response type, with or without a turbofish.
use serde::{Deserialize, Serialize};
use topicbus::{Bus, Request, Topic};

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.request", response = EmbedResponse)]
struct EmbedRequest {
    texts: Vec<String>,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.response")]
struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
}

/// A response need not be a topic itself.
#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "search.request", response = Vec<String>)]
struct SearchRequest {
    query: String,
}

async fn calls(bus: &Bus) -> topicbus::Result<()> {
    let req = EmbedRequest {
        texts: vec!["hi".into()],
    };
    let inferred: EmbedResponse = bus.request(&req).await?;
    let turbofish: EmbedResponse = bus.request::<EmbedRequest>(&req).await?;
    let hits: Vec<String> = bus.request(&SearchRequest { query: "q".into() }).await?;
    let _ = (inferred.embeddings, turbofish.embeddings, hits);
    Ok(())
}

fn response_of<R: Request>() -> &'static str {
    std::any::type_name::<R::Response>()
}

fn main() {
    assert!(response_of::<EmbedRequest>().ends_with("EmbedResponse"));
    assert!(response_of::<SearchRequest>().contains("Vec<alloc::string::String>"));
    // Only type-checked: a future that is never polled.
    let bus = Bus::memory();
    drop(calls(&bus));
}
