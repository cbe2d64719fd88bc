//! The W3C trace context a message carries in its `traceparent` header.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

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
pub(super) struct Hex<'a>(pub(super) &'a [u8]);

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
