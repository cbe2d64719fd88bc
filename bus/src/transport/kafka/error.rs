//! librdkafka's errors as topicbus errors.

use crate::error::Error;

/// An error from librdkafka, as [`Error::Unavailable`].
pub(crate) fn unavailable(what: impl Into<String>, error: rdkafka::error::KafkaError) -> Error {
    Error::Unavailable {
        message: format!("{}: {error}", what.into()),
        source: Some(Box::new(error)),
    }
}
