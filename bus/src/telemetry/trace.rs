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

use std::future::Future;

use tracing::field::{display, Empty};
use tracing::{Instrument, Span};

use super::trace_context::{Hex, TraceContext};
use crate::message::{header, Headers, Meta};

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
    span.record("trace_id", display(Hex(&ctx.trace_id())));
    span.record("span_id", display(Hex(&ctx.span_id())));
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
