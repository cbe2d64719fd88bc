//! Topic provisioning through the admin API.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::config::{config_error, refresh_tokens_in_background};
use super::{unavailable, KafkaConfig};
use crate::error::{Error, Result};

pub(super) fn client(config: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>> {
    let admin: AdminClient<DefaultClientContext> =
        config.client_config(&[]).create().map_err(config_error)?;
    refresh_tokens_in_background(config, admin.inner())?;
    Ok(admin)
}

/// Creates the `topics` (name, partitions) that do not exist yet.
///
/// A broker that does not implement CreateTopics (librdkafka's mock cluster)
/// auto-creates topics instead; that answer is accepted with a debug log.
/// Any other refusal is an error naming the topic and the broker's reason.
pub(super) async fn ensure(
    admin: &AdminClient<DefaultClientContext>,
    config: &KafkaConfig,
    topics: &[(String, i32)],
) -> Result<()> {
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            NewTopic::new(
                name,
                *partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(config.connect_timeout))
        .request_timeout(Some(config.connect_timeout));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| unavailable("could not create topics", e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, RDKafkaErrorCode::UnsupportedVersion))
            | Err((topic, RDKafkaErrorCode::InvalidRequest)) => {
                tracing::debug!(
                    topic,
                    "broker does not create topics on request; relying on auto-creation"
                );
            }
            Err((topic, code)) => {
                return Err(Error::Unavailable {
                    message: format!("the broker refused to create topic `{topic}`: {code}"),
                    source: None,
                })
            }
        }
    }
    Ok(())
}
