//! Spans for publish, handle and request, and the W3C `traceparent` header
//! that carries a trace from a publisher to its handlers and back in replies.
//!
//! topicbus keeps its own trace context: a message carries a `traceparent`
//! header only when its publisher is traced (its span is enabled, or it
//! publishes from a handler whose message came with a trace). Ids are made
//! here when no OpenTelemetry context provides them (feature `otel`): a new
//! trace id when a traced publish or request has no trace to continue, a new
//! span id for each traced publish, request and handling. Untraced messages
//! pay for none of it: no header, no id, no span.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::str::FromStr;

use tracing::field::{display, Empty};
use tracing::{Instrument, Span};

use crate::message::{header, Headers, Meta};

/// A W3C trace context (<https://www.w3.org/TR/trace-context/>): the trace
/// id, the id of the span that sent the message, and the trace flags — what
/// the `traceparent` header holds.
///
/// A handler reads the context it runs in with
/// [`Context::trace`](crate::Context::trace); its trace id is the one of the
/// publisher or requester that sent the message.
///
/// ```
/// use topicbus::TraceContext;
///
/// let parent: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
/// assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(parent.span_id_hex(), "00f067aa0ba902b7");
/// assert!(parent.is_sampled());
/// assert_eq!(parent.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// # Ok::<(), topicbus::TraceParseError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParseError {
    reason: &'static str,
}

impl fmt::Display for TraceParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid traceparent: {}", self.reason)
    }
}

impl std::error::Error for TraceParseError {}

const SAMPLED: u8 = 0x01;

impl TraceContext {
    /// A context from its parts; fails when an id is all zeros (W3C: invalid).
    pub fn new(
        trace_id: [u8; 16],
        span_id: [u8; 8],
        sampled: bool,
    ) -> Result<Self, TraceParseError> {
        Self::checked(trace_id, span_id, if sampled { SAMPLED } else { 0 })
    }

    fn checked(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Result<Self, TraceParseError> {
        if trace_id == [0; 16] {
            return Err(TraceParseError {
                reason: "the trace id is all zeros",
            });
        }
        if span_id == [0; 8] {
            return Err(TraceParseError {
                reason: "the parent (span) id is all zeros",
            });
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Reads a `traceparent` header value: `{version}-{trace id}-{span
    /// id}-{flags}` in lowercase hex. Version `00` must be exactly that;
    /// later versions may append fields, which are ignored.
    pub fn parse(traceparent: &str) -> Result<Self, TraceParseError> {
        let fail = |reason| Err(TraceParseError { reason });
        let text = traceparent.trim();
        let bytes = text.as_bytes();
        if bytes.len() < 55 {
            return fail("shorter than `00-<32 hex>-<16 hex>-<2 hex>`");
        }
        let version = match hex_byte(&bytes[0..2]) {
            Some(v) => v,
            None => return fail("the version is not two lowercase hex digits"),
        };
        if version == 0xff {
            return fail("version ff is forbidden");
        }
        if version == 0 && bytes.len() != 55 {
            return fail("version 00 must be exactly 55 characters");
        }
        if version != 0 && bytes.len() > 55 && bytes[55] != b'-' {
            return fail("fields after the flags must start with `-`");
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return fail("the fields are not separated by `-`");
        }
        let mut trace_id = [0u8; 16];
        for (i, out) in trace_id.iter_mut().enumerate() {
            match hex_byte(&bytes[3 + 2 * i..5 + 2 * i]) {
                Some(b) => *out = b,
                None => return fail("the trace id is not 32 lowercase hex digits"),
            }
        }
        let mut span_id = [0u8; 8];
        for (i, out) in span_id.iter_mut().enumerate() {
            match hex_byte(&bytes[36 + 2 * i..38 + 2 * i]) {
                Some(b) => *out = b,
                None => return fail("the parent id is not 16 lowercase hex digits"),
            }
        }
        let Some(flags) = hex_byte(&bytes[53..55]) else {
            return fail("the flags are not two lowercase hex digits");
        };
        Self::checked(trace_id, span_id, flags)
    }

    /// The 16-byte trace id, shared by every span of the trace.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The 8-byte id of the span this context was taken from.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the trace is sampled (recorded by its originator).
    pub fn is_sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        Hex(&self.trace_id).to_string()
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        Hex(&self.span_id).to_string()
    }

    /// A new trace, sampled.
    pub(crate) fn root() -> Self {
        Self {
            trace_id: random_trace_id(),
            span_id: random_span_id(),
            flags: SAMPLED,
        }
    }

    /// A new span of the same trace, with the same flags.
    pub(crate) fn child(&self) -> Self {
        Self {
            span_id: random_span_id(),
            ..*self
        }
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            Hex(&self.trace_id),
            Hex(&self.span_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({self})")
    }
}

impl FromStr for TraceContext {
    type Err = TraceParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Bytes as lowercase hex, without allocating.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

/// A fast per-thread generator for ids (xorshift64*), seeded from the
/// operating system's randomness through `uuid`. Ids need to be unique, not
/// secret.
fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
            x = (a ^ b.rotate_left(32)) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

fn random_nonzero_u64() -> u64 {
    loop {
        let x = random_u64();
        if x != 0 {
            return x;
        }
    }
}

fn random_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&random_nonzero_u64().to_be_bytes());
    id[8..].copy_from_slice(&random_u64().to_be_bytes());
    id
}

fn random_span_id() -> [u8; 8] {
    random_nonzero_u64().to_be_bytes()
}

tokio::task_local! {
    /// The trace context of the handler running on this task.
    static CURRENT: TraceContext;
}

/// The trace context of the handler this task runs, if it is traced.
pub(crate) fn current() -> Option<TraceContext> {
    CURRENT.try_with(|ctx| *ctx).ok()
}

/// The span of one publish.
pub(crate) fn publish_span(topic: &str) -> Span {
    tracing::info_span!(
        target: "topicbus",
        "topicbus.publish",
        topic,
        message_id = Empty,
        correlation_id = Empty,
        trace_id = Empty,
        span_id = Empty,
        otel.kind = "producer",
    )
}

/// The span of one request, from publish to reply.
pub(crate) fn request_span(topic: &str) -> Span {
    tracing::info_span!(
        target: "topicbus",
        "topicbus.request",
        topic,
        message_id = Empty,
        correlation_id = Empty,
        trace_id = Empty,
        span_id = Empty,
        otel.kind = "client",
    )
}

/// Writes the trace context of an outgoing message into its `headers`: the
/// span `span` of its publish or request continues the handler's trace (when
/// called from a traced handler), else the trace of a `traceparent` the
/// caller put in `headers`, else starts one. When `span` is disabled only a
/// trace to continue is passed on, under a new span id.
pub(crate) fn inject(span: &Span, headers: &mut Headers) {
    let parent = current().or_else(|| {
        headers
            .get_str(header::TRACEPARENT)
            .and_then(|text| TraceContext::parse(text).ok())
    });
    let ctx = if span.is_disabled() {
        match parent {
            Some(parent) => parent.child(),
            None => return,
        }
    } else {
        let ctx = super::otel::own_context(span, parent.as_ref())
            .unwrap_or_else(|| parent.map_or_else(TraceContext::root, |p| p.child()));
        record_ids(span, &ctx);
        ctx
    };
    headers.insert(header::TRACEPARENT, ctx.to_string());
}

/// Records a built message's ids on its publish or request span.
pub(crate) fn record_message(span: &Span, meta: &Meta) {
    if span.is_disabled() {
        return;
    }
    span.record("message_id", display(&meta.id));
    if let Some(id) = &meta.correlation_id {
        span.record("correlation_id", display(id));
    }
}

/// A reply continues the trace of the handler that answers.
pub(crate) fn inject_reply(headers: &mut Headers) {
    if let Some(ctx) = current() {
        headers.insert(header::TRACEPARENT, ctx.to_string());
    }
}

fn record_ids(span: &Span, ctx: &TraceContext) {
    span.record("trace_id", display(Hex(&ctx.trace_id)));
    span.record("span_id", display(Hex(&ctx.span_id)));
}

/// The trace of one delivery to a handler: its span, and the context its
/// publishes, requests and reply continue.
pub(crate) struct Handling {
    span: Span,
    ctx: TraceContext,
}

impl Handling {
    /// The trace of handling the message `meta` in `group`, or `None` when
    /// it is untraced: its span is disabled and it came without a trace.
    pub fn start(meta: &Meta, group: &str, is_request: bool) -> Option<Self> {
        let incoming = meta
            .headers
            .get_str(header::TRACEPARENT)
            .and_then(|text| TraceContext::parse(text).ok());
        let span = tracing::info_span!(
            target: "topicbus",
            "topicbus.handle",
            topic = &*meta.topic,
            group,
            message_id = display(&meta.id),
            correlation_id = Empty,
            trace_id = Empty,
            span_id = Empty,
            otel.kind = if is_request { "server" } else { "consumer" },
        );
        if span.is_disabled() {
            return incoming.map(|parent| Self {
                span,
                ctx: parent.child(),
            });
        }
        // Before anything is recorded on the span: an OpenTelemetry parent
        // can be set only until the span starts.
        let ctx = super::otel::own_context(&span, incoming.as_ref())
            .unwrap_or_else(|| incoming.map_or_else(TraceContext::root, |p| p.child()));
        if let Some(id) = &meta.correlation_id {
            span.record("correlation_id", display(id));
        }
        record_ids(&span, &ctx);
        Some(Self { span, ctx })
    }

    /// Runs `handling` inside the span, with the trace context current.
    pub async fn run<F: Future>(self, handling: F) -> F::Output {
        CURRENT
            .scope(self.ctx, handling.instrument(self.span))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_a_traceparent() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(text).expect("valid");
        assert_eq!(ctx.to_string(), text);
        assert!(ctx.is_sampled());
        assert_eq!(ctx.span_id_hex(), "00f067aa0ba902b7");
    }

    #[test]
    fn refuses_malformed_traceparents_saying_why() {
        let cases = [
            ("", "shorter"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                "shorter",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "ff",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace id",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "all zeros",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "separated",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                "exactly 55",
            ),
        ];
        for (text, reason) in cases {
            let error = TraceContext::parse(text).expect_err(text).to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(
            TraceContext::parse(later).is_ok(),
            "later versions may add fields"
        );
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_a_new_span_id() {
        let root = TraceContext::root();
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        assert_ne!(TraceContext::root().trace_id(), root.trace_id());
    }
}
