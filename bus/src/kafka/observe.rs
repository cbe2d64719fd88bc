//! The producer's librdkafka context: client-level errors (a broker that
//! refuses the connection, a failed authentication) go to `tracing`, and the
//! last one is kept, so that a failed `connect` says what the brokers
//! answered instead of only that a metadata request failed.

use std::sync::{Arc, Mutex};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

/// Keeps the last client-level error librdkafka reported.
#[derive(Default)]
pub(crate) struct Observer {
    last_error: LastError,
}

impl Observer {
    /// A handle to the last error, readable after the context went into
    /// the client.
    pub fn last_error_handle(&self) -> LastError {
        self.last_error.clone()
    }
}

/// The last client-level error of one client.
#[derive(Clone, Default)]
pub(crate) struct LastError(Arc<Mutex<Option<String>>>);

impl LastError {
    /// The last error librdkafka reported, if any.
    pub fn last_error(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientContext for Observer {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "librdkafka");
        // "All brokers are down" follows the error that says why.
        let consequence = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        let mut last = self.last_error.0.lock().unwrap_or_else(|e| e.into_inner());
        if !consequence || last.is_none() {
            *last = Some(reason.to_owned());
        }
    }
}
