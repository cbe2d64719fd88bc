//! Why a message could not be handled, and how that is written down.

use std::any::Any;

use crate::error::panic_message;
use crate::message::header;

/// Why a message could not be handled.
pub(crate) struct Failure {
    pub(super) kind: &'static str,
    pub(super) reason: String,
    /// Failures that retrying cannot fix (the payload itself is bad).
    pub(super) permanent: bool,
}

impl Failure {
    pub(super) fn permanent(kind: &'static str, reason: String) -> Self {
        Self {
            kind,
            reason,
            permanent: true,
        }
    }

    pub(super) fn transient(kind: &'static str, reason: String) -> Self {
        Self {
            kind,
            reason,
            permanent: false,
        }
    }
}

/// The headers of an error reply or a dead letter, the reason bounded: a
/// handler's error of any length must not make the reply too large to send.
pub(super) fn error_headers(kind: &'static str, reason: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            header::ERROR,
            crate::limit::bounded_reason(reason.to_owned()),
        ),
        (header::ERROR_KIND, kind.to_owned()),
    ]
}

/// The failure of a handler call that panicked.
pub(super) fn panicked(panic: &(dyn Any + Send)) -> Failure {
    Failure::transient(
        "panic",
        format!("handler panicked: {}", panic_message(panic)),
    )
}
