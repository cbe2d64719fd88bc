//! OpenTelemetry (feature `otel`): a traced topicbus span takes its ids from
//! its OpenTelemetry context (`tracing-opentelemetry`), and a message's
//! `traceparent` becomes the remote parent of the span that handles it.
//! Without the feature, or without an OpenTelemetry layer in the
//! subscriber, topicbus makes its own ids (see `trace`).

use tracing::Span;

use super::trace_context::TraceContext;

/// The ids of `span` from its OpenTelemetry context, after making `parent`
/// (a message's or handler's trace) its parent. `None` when the feature is
/// off or the subscriber has no OpenTelemetry layer.
#[cfg(feature = "otel")]
pub(crate) fn own_context(span: &Span, parent: Option<&TraceContext>) -> Option<TraceContext> {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if let Some(parent) = parent {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id()),
            SpanId::from_bytes(parent.span_id()),
            TraceFlags::new(parent.flags()),
            true,
            TraceState::default(),
        );
        // Fails only without an OpenTelemetry layer: the ids are made below.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    if !own.is_valid() {
        return None;
    }
    TraceContext::new(
        own.trace_id().to_bytes(),
        own.span_id().to_bytes(),
        own.trace_flags().is_sampled(),
    )
    .ok()
}

/// Without the `otel` feature topicbus makes its own ids.
#[cfg(not(feature = "otel"))]
pub(crate) fn own_context(_span: &Span, _parent: Option<&TraceContext>) -> Option<TraceContext> {
    None
}
