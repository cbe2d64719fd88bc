//! The producer's librdkafka context: client-level errors (a broker that
//! refuses the connection, a failed authentication) go to `tracing`, and the
//! last one is kept, so that a failed `connect` says what the brokers
//! answered instead of only that a metadata request failed.

use std::sync::{Arc, Mutex};

use rdkafka::config::RDKafkaLogLevel;
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
pub(crate) struct LastError(Arc<Mutex<Seen>>);

#[derive(Default)]
struct Seen {
    /// The last error that says why, or "all brokers are down" when
    /// nothing else was reported.
    error: Option<String>,
    /// Whether `error` is only "all brokers are down".
    consequence_only: bool,
    /// The last connection failure librdkafka logged: some (a broker that
    /// closes the connection before answering) are logged, not reported.
    failure: Option<String>,
}

impl LastError {
    /// The last error librdkafka reported, if any, with a hint at the
    /// usual cause where librdkafka's words leave it open.
    pub fn last_error(&self) -> Option<String> {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let reason = match (&seen.error, &seen.failure) {
            (Some(error), _) if !seen.consequence_only => error,
            (_, Some(failure)) => failure,
            (Some(error), None) => error,
            (None, None) => return None,
        };
        Some(match hint(reason) {
            Some(hint) => format!("{reason}; {hint}"),
            None => reason.clone(),
        })
    }
}

/// What usually causes a connection failure whose librdkafka message does
/// not say it.
fn hint(reason: &str) -> Option<&'static str> {
    let closed = reason.contains("closed by peer");
    if closed && reason.contains("state APIVERSION_QUERY") {
        Some(
            "the broker closed the connection before answering: does security.protocol \
             match the listener (a TLS or SASL listener needs ssl, sasl_ssl or sasl_plaintext)?",
        )
    } else if closed && reason.contains("state SSL_HANDSHAKE") {
        Some(
            "the broker closed the connection during the TLS handshake: a listener without \
             TLS (security.protocol plaintext or sasl_plaintext), or one that requires a \
             client certificate",
        )
    } else if reason.contains("certificate verify failed") {
        Some(
            "the broker's certificate was refused: not signed by a CA in ssl.ca.location \
             (or the system's), expired, or not naming the host of the broker address",
        )
    } else if reason.contains("alert bad certificate") || reason.contains("certificate required") {
        Some("the broker refused the client's certificate, or requires one and got none")
    } else {
        None
    }
}

impl ClientContext for Observer {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(fac, "librdkafka: {log_message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(fac, "librdkafka: {log_message}"),
            // Asked for to keep connection failures (below); routine
            // disconnects and reconnects are not news at `info`.
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {
                tracing::debug!(fac, "librdkafka: {log_message}")
            }
        }
        if fac == "FAIL" {
            let mut seen = self.last_error.0.lock().unwrap_or_else(|e| e.into_inner());
            seen.failure = Some(log_message.to_owned());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "librdkafka");
        // "All brokers are down" follows the error that says why.
        let consequence = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        let mut seen = self.last_error.0.lock().unwrap_or_else(|e| e.into_inner());
        if !consequence || seen.error.is_none() {
            seen.error = Some(reason.to_owned());
            seen.consequence_only = consequence;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(errors: &[(RDKafkaErrorCode, &str)], failure: Option<&str>) -> Option<String> {
        let observer = Observer::default();
        for (code, reason) in errors {
            observer.error(KafkaError::Global(*code), reason);
        }
        if let Some(failure) = failure {
            observer.log(RDKafkaLogLevel::Info, "FAIL", failure);
        }
        observer.last_error_handle().last_error()
    }

    #[test]
    fn a_logged_failure_says_more_than_all_brokers_down() {
        let closed = "b:1/bootstrap: Disconnected: connection closed by peer: receive 0 after \
                      POLLIN (after 0ms in state APIVERSION_QUERY)";
        let said = observed(
            &[(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down")],
            Some(closed),
        )
        .unwrap();
        assert!(said.starts_with(closed), "{said}");
        assert!(said.contains("security.protocol"), "{said}");
    }

    #[test]
    fn a_reported_error_wins_over_a_logged_failure() {
        let said = observed(
            &[
                (
                    RDKafkaErrorCode::Authentication,
                    "SASL authentication error: Authentication failed",
                ),
                (RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down"),
            ],
            Some("b:1/bootstrap: Disconnected (after 3ms in state UP)"),
        )
        .unwrap();
        assert_eq!(said, "SASL authentication error: Authentication failed");
    }

    #[test]
    fn a_refused_certificate_gets_its_usual_causes() {
        let said = observed(
            &[(
                RDKafkaErrorCode::BrokerTransportFailure,
                "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed",
            )],
            None,
        )
        .unwrap();
        assert!(
            said.contains("expired") && said.contains("ssl.ca.location"),
            "{said}"
        );
        assert_eq!(observed(&[], None), None);
    }
}
