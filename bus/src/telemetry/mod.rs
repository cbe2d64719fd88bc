//! Metrics and tracing: what the bus tells about its messages.
//!
//! - Metrics: counters, histograms and gauges through the `metrics` facade
//!   (names in [`names`]).
//! - Tracing: a `tracing` span per publish, handling and request, and the
//!   W3C `traceparent` header that carries a trace across the bus
//!   ([`TraceContext`]); with the `otel` feature the ids come from
//!   OpenTelemetry.
//!
//! docs/operations.md ("Metrics", "Tracing") describes both.

pub(crate) mod metrics;
mod otel;
pub(crate) mod trace;
mod trace_context;

pub use self::metrics::names;
pub use self::trace_context::{TraceContext, TraceParseError};
