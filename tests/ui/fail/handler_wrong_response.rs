use serde::{Deserialize, Serialize};
use topicbus::{handler, Topic};

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

#[handler]
async fn embed(req: EmbedRequest) -> Result<String, std::io::Error> {
    Ok(req.texts.join(" "))
}

fn main() {}
