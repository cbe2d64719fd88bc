//! Derive and attribute macros for `topicbus`: `#[derive(Topic)]` and
//! `#[handler]`.
//!
//! Use them through `topicbus`, which re-exports both:
//! `use topicbus::{handler, Topic};`. The generated code names only
//! `::topicbus` paths, so this crate is not meant to be used on its own.
//!
//! Both macros report every mistake in one build, each on the user's own
//! tokens, and check at compile time what can be checked there: Kafka's
//! topic name rules, the key field, option names, durations, and that a
//! request handler returns the request's response type.
#![warn(missing_docs)]

mod duration;
mod errors;
mod handler;
mod options;
mod topic;
mod topic_name;

use proc_macro::TokenStream;

/// Binds a struct or enum to a topic: implements `topicbus::Topic`, and
/// `topicbus::Request` when the topic declares a response.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use topicbus::{Request, Topic};
///
/// #[derive(Clone, Serialize, Deserialize, Topic)]
/// #[topic(name = "ml.embed.request", response = EmbedResponse, key = chunk_id, partitions = 12)]
/// struct EmbedRequest {
///     chunk_id: String,
///     texts: Vec<String>,
/// }
///
/// #[derive(Serialize, Deserialize, Topic)]
/// #[topic(name = "ml.embed.response", codec = "postcard")]
/// struct EmbedResponse {
///     embeddings: Vec<Vec<f32>>,
/// }
///
/// let req = EmbedRequest { chunk_id: "c-1".into(), texts: vec![] };
/// assert_eq!(EmbedRequest::NAME, "ml.embed.request");
/// assert_eq!(EmbedRequest::PARTITIONS, Some(12));
/// assert_eq!(req.key().as_deref(), Some(&b"c-1"[..]));
/// fn answered_with<R: Request<Response = EmbedResponse>>() {}
/// answered_with::<EmbedRequest>();
/// ```
///
/// # Options of `#[topic(...)]`
///
/// | option | meaning |
/// |---|---|
/// | `name = "..."` | Required. The topic name, checked against Kafka's rules at compile time: 1 to 249 characters from `[A-Za-z0-9._-]`, and not `.` or `..`. |
/// | `response = Type` | Makes the topic a request, answered with `Type`: `bus.request(&req)` returns it and a handler serving the topic must return it. |
/// | `codec = "json"` | How the payload travels: `"json"` (the default), `"bincode"` or `"postcard"` (cargo features of `topicbus`, on by default), or the path to a type implementing `topicbus::codec::Codec`, as in `codec = my::Cbor`. |
/// | `key = field` | The field holding the partition key; messages with the same key are handled in publish order. Its type implements `topicbus::TopicKey`: strings, byte vectors, integers, UUIDs, or an `Option` of those. Structs with named fields only. |
/// | `partitions = N` | The number of partitions to create the topic with (at least 1). |
///
/// Options may be split over several `#[topic(...)]` attributes; each may be
/// given once. Generic types cannot be topics: a topic binds one concrete type
/// to one name. When the type is `Clone`, in-process delivery clones the
/// payload instead of encoding and decoding it.
#[proc_macro_derive(Topic, attributes(topic))]
pub fn derive_topic(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    topic::derive(&input).into()
}

/// Turns an `async fn` into a handler to pass to `bus.subscribe(...)` or
/// `bus.serve(...)`.
///
/// The function takes the payload (a `Topic` type) and optionally a
/// `topicbus::Context`, and returns `Result<(), E>` to handle an event or
/// `Result<Response, E>` to answer a request, where `E: Display`. A request
/// handler's `Response` is checked against the topic's `response = ...` at
/// compile time.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use topicbus::{handler, Context, Topic};
///
/// #[derive(Clone, Serialize, Deserialize, Topic)]
/// #[topic(name = "ml.embed.request", response = EmbedResponse)]
/// struct EmbedRequest { texts: Vec<String> }
///
/// #[derive(Clone, Serialize, Deserialize, Topic)]
/// #[topic(name = "ml.embed.response")]
/// struct EmbedResponse { embeddings: Vec<Vec<f32>> }
///
/// #[derive(Clone, Serialize, Deserialize, Topic)]
/// #[topic(name = "index.chunk.created", key = chunk_id)]
/// struct ChunkCreated { chunk_id: String }
///
/// /// Answers embedding requests.
/// #[handler(concurrency = 4, timeout = "2s")]
/// async fn embed(req: EmbedRequest) -> Result<EmbedResponse, std::io::Error> {
///     Ok(EmbedResponse { embeddings: req.texts.iter().map(|t| vec![t.len() as f32]).collect() })
/// }
///
/// #[handler(group = "indexer", retries = 5, backoff = "100ms")]
/// async fn on_chunk(ev: ChunkCreated, ctx: Context) -> Result<(), std::io::Error> {
///     println!("chunk {} (attempt {})", ev.chunk_id, ctx.attempt());
///     Ok(())
/// }
///
/// # async fn demo() -> topicbus::Result<()> {
/// let bus = topicbus::Bus::memory();
/// bus.serve(embed).await?;
/// bus.subscribe(on_chunk).await?;
/// // The body stays callable directly, for unit tests:
/// let reply = embed::run(EmbedRequest { texts: vec!["hi".into()] }).await.unwrap();
/// assert_eq!(reply.embeddings, vec![vec![2.0]]);
/// # Ok(()) }
/// ```
///
/// # Options of `#[handler(...)]`
///
/// | option | meaning |
/// |---|---|
/// | `group = "..."` | The consumer group (default: derived from the service and the handler's path). |
/// | `retries = N` | Retries after the first failure before the message is dead-lettered. |
/// | `concurrency = N` | How many messages are handled at once (at least 1). |
/// | `timeout = "2s"` | Time limit of one call; a call over it counts as a failure. |
/// | `backoff = "100ms"` | First retry delay; it doubles on each further retry. |
///
/// Durations are a whole number and a unit: `ms`, `s` or `m`. The
/// `subscribe`/`serve` builders override these options.
///
/// # What it generates
///
/// The function becomes a unit struct of the same name (`embed` above)
/// implementing `topicbus::Handler`, with the body kept as the associated
/// function `embed::run`. Doc comments go on the struct, `#[cfg(...)]` on
/// everything generated, other attributes (lints, `#[tracing::instrument]`)
/// on `run`. Since `embed` is then a unit struct, a `let embed = ...` in the
/// same scope is read as a pattern: pick another binding name.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(args.into(), item.into()).into()
}
