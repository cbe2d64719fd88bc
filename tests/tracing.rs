//! Tracing: topicbus's spans and the W3C `traceparent` header, seen through
//! a capturing `tracing` layer on the memory transport. A request, its
//! handler and the reply share one trace; a publish from a handler continues
//! the handler's trace; an incoming trace is continued even with topicbus's
//! spans disabled; untraced messages carry no header.
//!
//! Each test installs its subscriber for its own thread, and runs on a
//! current-thread runtime so that the bus's tasks run there too.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use topicbus::{header, Bus, Context, Headers, RawMessage, Topic, TraceContext};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(30);

/// A captured span: its name, fields and parent.
#[derive(Debug, Clone, Default)]
struct Captured {
    name: &'static str,
    fields: HashMap<String, String>,
    parent: Option<u64>,
}

impl Captured {
    fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("span {} has no field {name}: {self:?}", self.name))
    }
}

/// Keeps every span topicbus makes, by id.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<HashMap<u64, Captured>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let name = attrs.metadata().name();
        if !name.starts_with("topicbus.") {
            return;
        }
        let mut span = Captured {
            name,
            parent: ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.id().into_u64()),
            ..Captured::default()
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.0.lock().unwrap().insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: LayerContext<'_, S>) {
        if let Some(span) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
}

impl Capture {
    /// Installs the capture as this thread's subscriber.
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    fn spans(&self, name: &str, topic: &str) -> Vec<(u64, Captured)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| {
                s.name == name && s.fields.get("topic").map(String::as_str) == Some(topic)
            })
            .map(|(id, s)| (*id, s.clone()))
            .collect()
    }

    fn one(&self, name: &str, topic: &str) -> (u64, Captured) {
        let mut spans = self.spans(name, topic);
        assert_eq!(spans.len(), 1, "one {name} span on {topic}: {spans:?}");
        spans.remove(0)
    }
}

async fn guard<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what}"))
}

/// What a handler saw of its trace.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    correlation_id: Option<String>,
    traceparent: Option<String>,
    trace: Option<TraceContext>,
}

impl Seen {
    fn of(ctx: &Context) -> Self {
        Self {
            id: ctx.id().to_string(),
            correlation_id: ctx.correlation_id().map(ToString::to_string),
            traceparent: ctx
                .headers()
                .get_str(header::TRACEPARENT)
                .map(str::to_owned),
            trace: ctx.trace(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "trace.lookup", response = LookupResult)]
struct Lookup {
    word: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "trace.lookup.result")]
struct LookupResult {
    found: bool,
}

/// Serves `Lookup`, sending what each handler call saw to `seen`.
async fn serve_lookup(bus: &Bus) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    bus.group("trace.lookup.server")
        .serve(move |lookup: Lookup, ctx: Context| {
            let _ = tx.send(Seen::of(&ctx));
            async move {
                Ok::<_, Infallible>(LookupResult {
                    found: !lookup.word.is_empty(),
                })
            }
        })
        .await
        .expect("serve");
    rx
}

#[tokio::test]
async fn a_request_its_handler_and_the_reply_share_one_trace() {
    let (capture, _subscriber) = Capture::install();
    let bus = Bus::memory();
    let mut seen = serve_lookup(&bus).await;

    let reply = bus
        .request(&Lookup {
            word: "hello".into(),
        })
        .await
        .expect("reply");
    assert!(reply.found);
    let handler = guard("handler ran", seen.recv()).await.expect("seen");

    let (request_id, request) = capture.one("topicbus.request", Lookup::NAME);
    let trace_id = request.field("trace_id").to_owned();
    assert_eq!(trace_id.len(), 32, "a W3C trace id: {trace_id}");
    assert_eq!(request.field("message_id"), handler.id);
    assert_eq!(
        Some(request.field("correlation_id")),
        handler.correlation_id.as_deref()
    );

    // The request carried the request span's context; the handler continues
    // that trace in a span of its own.
    let sent = format!("00-{trace_id}-{}-01", request.field("span_id"));
    assert_eq!(handler.traceparent.as_deref(), Some(sent.as_str()));
    let handler_trace = handler.trace.expect("the handler is traced");
    assert_eq!(handler_trace.trace_id_hex(), trace_id);
    assert_ne!(handler_trace.span_id_hex(), request.field("span_id"));

    let (_, handle) = capture.one("topicbus.handle", Lookup::NAME);
    assert_eq!(handle.field("trace_id"), trace_id);
    assert_eq!(handle.field("span_id"), handler_trace.span_id_hex());
    assert_eq!(handle.field("message_id"), handler.id);
    assert_eq!(
        Some(handle.field("correlation_id")),
        handler.correlation_id.as_deref()
    );
    assert_eq!(handle.field("group"), "trace.lookup.server");
    assert_ne!(
        handle.parent,
        Some(request_id),
        "a new root on the consumer side"
    );
    bus.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_reply_carries_the_handlers_trace_back() {
    let (_capture, _subscriber) = Capture::install();
    let bus = Bus::memory();
    let mut seen = serve_lookup(&bus).await;
    // A request without `reply_to` is answered on `{topic}.response` (as the
    // Go bus did), where a raw subscriber sees the reply's headers.
    let (replies_tx, mut replies) = mpsc::unbounded_channel();
    bus.group("tracing.handler")
        .subscribe_raw(
            format!("{}.response", Lookup::NAME),
            move |reply: RawMessage, _| {
                let _ = replies_tx.send(reply);
                async { Ok::<(), Infallible>(()) }
            },
        )
        .await
        .expect("subscribe to replies");

    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut request = RawMessage::new(Lookup::NAME, br#"{"word":"hi"}"#.to_vec());
    request.headers.insert(header::CORRELATION_ID, "req-1");
    request.headers.insert(header::TRACEPARENT, caller);
    request
        .headers
        .insert(header::CONTENT_TYPE, "application/json");
    // No span is current: the caller's traceparent is the parent.
    bus.publish_raw(request).await.expect("publish request");

    let handler = guard("handler ran", seen.recv()).await.expect("seen");
    let handler_trace = handler.trace.expect("traced");
    assert_eq!(
        handler_trace.trace_id_hex(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    let reply = guard("reply", replies.recv()).await.expect("reply");
    assert_eq!(reply.headers.get_str(header::CORRELATION_ID), Some("req-1"));
    let reply_trace: TraceContext = reply
        .headers
        .get_str(header::TRACEPARENT)
        .expect("the reply carries a traceparent")
        .parse()
        .expect("valid");
    assert_eq!(
        reply_trace, handler_trace,
        "the handler's own span is the reply's parent"
    );
    bus.shutdown().await.expect("shutdown");
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "trace.chunk.created")]
struct ChunkCreated {
    id: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "trace.chunk.indexed")]
struct ChunkIndexed {
    id: u32,
}

/// Subscribes a handler that publishes `ChunkIndexed` for each
/// `ChunkCreated`, and one that reports what it saw of each `ChunkIndexed`.
async fn chain(bus: &Bus) -> mpsc::UnboundedReceiver<Seen> {
    bus.group("trace.indexer")
        .subscribe(|ev: ChunkCreated, ctx: Context| async move {
            ctx.bus()?.publish(&ChunkIndexed { id: ev.id }).await?;
            Ok::<(), topicbus::Error>(())
        })
        .await
        .expect("subscribe indexer");
    let (tx, rx) = mpsc::unbounded_channel();
    bus.group("trace.audit")
        .subscribe(move |_: ChunkIndexed, ctx: Context| {
            let _ = tx.send(Seen::of(&ctx));
            async { Ok::<(), Infallible>(()) }
        })
        .await
        .expect("subscribe audit");
    rx
}

#[tokio::test]
async fn a_publish_inside_a_handler_continues_the_handlers_trace() {
    let (capture, _subscriber) = Capture::install();
    let bus = Bus::memory();
    let mut seen = chain(&bus).await;
    bus.publish(&ChunkCreated { id: 7 }).await.expect("publish");
    let audit = guard("audit ran", seen.recv()).await.expect("seen");

    let (_, first) = capture.one("topicbus.publish", ChunkCreated::NAME);
    let trace_id = first.field("trace_id").to_owned();
    let (indexer_id, indexer) = capture.one("topicbus.handle", ChunkCreated::NAME);
    assert_eq!(indexer.field("trace_id"), trace_id);
    let (_, inner) = capture.one("topicbus.publish", ChunkIndexed::NAME);
    assert_eq!(inner.field("trace_id"), trace_id);
    assert_eq!(
        inner.parent,
        Some(indexer_id),
        "published inside the handler's span"
    );
    assert_eq!(
        audit.traceparent.as_deref(),
        Some(format!("00-{trace_id}-{}-01", inner.field("span_id")).as_str())
    );
    assert_eq!(audit.trace.expect("traced").trace_id_hex(), trace_id);
    assert!(!inner.field("message_id").is_empty());
    bus.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn with_spans_disabled_an_incoming_trace_is_still_continued() {
    // An application that logs warnings only: topicbus's spans are off.
    let subscriber = tracing_subscriber::registry().with(LevelFilter::WARN);
    let _subscriber = tracing::subscriber::set_default(subscriber);
    let bus = Bus::memory();
    let mut seen = chain(&bus).await;
    let parent: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .expect("valid");
    let mut headers = Headers::new();
    headers.insert(header::TRACEPARENT, parent.to_string());
    bus.publish_with(&ChunkCreated { id: 1 }, headers)
        .await
        .expect("publish");
    let audit = guard("audit ran", seen.recv()).await.expect("seen");
    let audit_trace = audit.trace.expect("continued");
    assert_eq!(audit_trace.trace_id(), parent.trace_id());
    let header: TraceContext = audit
        .traceparent
        .as_deref()
        .expect("the indexer's publish carried the trace")
        .parse()
        .expect("valid");
    assert_eq!(header.trace_id(), parent.trace_id());
    assert_ne!(
        header.span_id(),
        parent.span_id(),
        "each hop has its own span id"
    );

    // Untraced messages stay untraced: no header, no context.
    bus.publish(&ChunkCreated { id: 2 }).await.expect("publish");
    let audit = guard("audit ran", seen.recv()).await.expect("seen");
    assert_eq!(audit.traceparent, None);
    assert_eq!(audit.trace, None);
    bus.shutdown().await.expect("shutdown");
}

#[cfg(feature = "otel")]
mod otel {
    use std::future::IntoFuture;

    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::*;

    #[tokio::test]
    async fn with_opentelemetry_the_ids_come_from_the_callers_otel_context() {
        let provider = SdkTracerProvider::builder().build();
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("topicbus-test")))
            .with(capture.clone());
        let _subscriber = tracing::subscriber::set_default(subscriber);

        let bus = Bus::memory();
        let mut seen = serve_lookup(&bus).await;
        let root = tracing::info_span!("caller");
        let expected = root.context().span().span_context().trace_id();
        assert_ne!(expected, opentelemetry::trace::TraceId::INVALID);
        bus.request(&Lookup { word: "x".into() })
            .into_future()
            .instrument(root)
            .await
            .expect("reply");
        let handler = guard("handler ran", seen.recv()).await.expect("seen");
        let handler_trace = handler.trace.expect("traced");
        assert_eq!(handler_trace.trace_id(), expected.to_bytes());

        let (_, request) = capture.one("topicbus.request", Lookup::NAME);
        assert_eq!(request.field("trace_id"), format!("{expected}"));
        let (_, handle) = capture.one("topicbus.handle", Lookup::NAME);
        assert_eq!(handle.field("span_id"), handler_trace.span_id_hex());
        bus.shutdown().await.expect("shutdown");
    }
}
