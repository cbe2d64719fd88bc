//! The retry step: a failed first attempt is tried again with backoff;
//! what still fails is answered with the error or dead-lettered.

use std::time::Duration;

use super::failure::Failure;
use super::invoke::Invoke;
use super::HandlerMember;
use crate::message::Message;
use crate::transport::Position;

/// Retry and time limits of one registration, with the bus defaults filled in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub retries: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Option<Duration>,
    pub concurrency: usize,
}

impl Policy {
    /// Delay before retry number `retry` (1-based): doubling, capped.
    fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

impl<I: Invoke> HandlerMember<I> {
    /// Retries a failed first attempt with backoff, then answers the
    /// requester with the error or dead-letters the message.
    pub(super) async fn recover(
        &self,
        message: &Message,
        position: Position,
        mut failure: Failure,
        is_request: bool,
    ) {
        let mut attempt = 1;
        while !failure.permanent && attempt <= self.policy.retries {
            tracing::debug!(
                topic = %message.meta.topic,
                group = %self.group,
                attempt,
                reason = %failure.reason,
                "handler failed; retrying"
            );
            self.metrics.retried();
            tokio::time::sleep(self.policy.delay(attempt)).await;
            attempt += 1;
            match self.attempt(message, position, attempt).await {
                Ok(output) => {
                    self.metrics.handled();
                    if let (true, Some(output)) = (is_request, output) {
                        self.send_reply(message, Ok(output)).await;
                    }
                    return;
                }
                Err(next) => failure = next,
            }
        }
        if is_request {
            self.send_reply(message, Err(&failure)).await;
        }
        if !is_request || failure.permanent {
            self.dead_letter(message, &failure, attempt).await;
            self.metrics.dead_lettered();
        } else {
            self.metrics.error_replied();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = Policy {
            retries: 10,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            timeout: None,
            concurrency: 1,
        };
        assert_eq!(policy.delay(1), Duration::from_millis(100));
        assert_eq!(policy.delay(2), Duration::from_millis(200));
        assert_eq!(policy.delay(4), Duration::from_millis(800));
        assert_eq!(policy.delay(5), Duration::from_secs(1));
        assert_eq!(policy.delay(64), Duration::from_secs(1));
    }
}
