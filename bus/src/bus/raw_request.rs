//! Requests of bytes and headers, for tools and foreign payloads: the same
//! correlation and reply routing as typed requests, without a Rust type.

use std::borrow::Cow;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use super::Bus;
use crate::error::{Error, Result};
use crate::message::{Message, MessageId, RawMessage};
use crate::topic::validate_topic_name;
use crate::transport::BoxFuture;
use crate::wire;

impl Bus {
    /// Sends `request` (bytes and headers, to any topic) as a request and
    /// waits for the reply, which comes back as a [`RawMessage`] with all
    /// its headers (default timeout: the bus's request timeout; set another
    /// with `.timeout(..)`).
    ///
    /// The request gets a fresh correlation id and this instance's reply
    /// topic, like a typed request; `correlation_id` and `reply_to` headers
    /// in `request` are replaced. Its `ce_id` header, if any, is kept as the
    /// message id. A typed responder decodes the bytes with its topic's
    /// codec; what it cannot decode (or whose `content-type` names another
    /// codec) gets an error reply and is dead-lettered. An error reply fails
    /// with [`Error::Remote`], no reply in time with [`Error::Timeout`].
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use serde::{Deserialize, Serialize};
    /// use topicbus::{Bus, RawMessage, Topic};
    ///
    /// #[derive(Clone, Serialize, Deserialize, Topic)]
    /// #[topic(name = "math.square", response = Squared)]
    /// struct Square { n: i64 }
    ///
    /// #[derive(Clone, Serialize, Deserialize, Topic)]
    /// #[topic(name = "math.squared")]
    /// struct Squared { n: i64 }
    ///
    /// # async fn demo() -> topicbus::Result<()> {
    /// let bus = Bus::memory();
    /// bus.group("math")
    ///     .serve(|s: Square| async move { Ok::<_, Infallible>(Squared { n: s.n * s.n }) })
    ///     .await?;
    ///
    /// let mut request = RawMessage::new("math.square", br#"{"n":12}"#.to_vec());
    /// request.headers.insert("content-type", "application/json");
    /// let reply = bus.request_raw(request).await?;
    /// assert_eq!(reply.payload, br#"{"n":144}"#);
    /// assert!(reply.headers.get_str("correlation_id").is_some());
    /// # bus.shutdown().await?;
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn request_raw(&self, request: RawMessage) -> RawRequestCall<'_> {
        RawRequestCall {
            bus: self,
            request,
            timeout: None,
        }
    }
}

/// A raw request being set up; `.await` it for the reply. Made by
/// [`Bus::request_raw`].
#[must_use = "a request does nothing until it is awaited"]
pub struct RawRequestCall<'a> {
    bus: &'a Bus,
    request: RawMessage,
    timeout: Option<Duration>,
}

impl RawRequestCall<'_> {
    /// Waits at most `timeout` for the reply instead of the bus default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<'a> IntoFuture for RawRequestCall<'a> {
    type Output = Result<RawMessage>;
    type IntoFuture = BoxFuture<'a, Result<RawMessage>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let core = self.bus.core();
            core.check_open()?;
            let RawMessage {
                topic,
                key,
                payload,
                headers,
            } = self.request;
            validate_topic_name(&topic).map_err(|reason| Error::InvalidTopic {
                topic: topic.clone(),
                reason,
            })?;
            if core.transport.has_consumers(&topic) == Some(false) {
                return Err(Error::NoResponders { topic });
            }
            crate::limit::check_size(&topic, payload.len(), core.max_message_bytes)?;
            let limit = self.timeout.unwrap_or(core.settings.request_timeout);
            let has_id = headers.get(wire::ce::ID).is_some();
            let mut meta = wire::meta(
                Cow::Owned(topic.clone()),
                key,
                headers,
                &core.service,
                core.settings.header_limits,
            );
            let correlation = MessageId::new();
            if !has_id {
                meta.id = correlation.clone();
            }
            meta.correlation_id = Some(correlation.clone());
            meta.reply_to = Some(Arc::clone(&core.inbox));
            let message = Message::bytes(meta, payload.into());
            let reply = core.exchange(message, limit, |_| {}).await?;
            crate::reply::read::remote_error(&topic, &reply)?;
            let payload = reply
                .payload()
                .to_bytes()
                .map_err(|e| Error::codec(&topic, "reply", e))?;
            Ok(RawMessage {
                topic: reply.meta.topic.to_string(),
                key: reply.meta.key.clone(),
                payload: payload.to_vec(),
                headers: wire::headers(&reply.meta),
            })
        })
    }
}
