//! Stopping: the whole bus ([`Bus::shutdown`](crate::Bus::shutdown)) or one subscription
//! ([`Subscription::stop`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::future::join_all;

use super::{Bus, Subscription};
use crate::error::{Error, Result};

impl Bus {
    /// Stops gracefully, waiting at most the shutdown timeout:
    ///
    /// 1. new registrations are refused;
    /// 2. the groups this instance is the last member of are drained: what is
    ///    queued for them is handled (handlers may still publish and request);
    /// 3. the instance leaves its groups, so other members take over, and
    ///    waits for its in-flight handlers;
    /// 4. publishes and requests are then rejected with [`Error::Closed`],
    ///    and requests still waiting for a reply fail with it.
    ///
    /// Past the timeout it leaves anyway and returns [`Error::Timeout`].
    pub async fn shutdown(&self) -> Result<()> {
        let core = self.core();
        if core.draining.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let registrations = std::mem::take(&mut *core.registrations.lock().expect("poisoned"));
        let limit = core.settings.shutdown_timeout;
        let stop = async {
            core.drain_last_members(&registrations).await;
            join_all(registrations.iter().map(|reg| async {
                core.transport
                    .leave(&reg.topic, &reg.group, &reg.member)
                    .await;
                reg.member.close().await;
            }))
            .await;
        };
        let finished = tokio::time::timeout(limit, stop).await.is_ok();
        if !finished {
            for reg in &registrations {
                core.transport
                    .leave_now(&reg.topic, &reg.group, &reg.member);
            }
        }
        core.closed.store(true, Ordering::Release);
        core.pending.close_all();
        core.transport.close(&core.inbox).await;
        let synced = match core.event_log() {
            Some(log) => log.sync().await,
            None => Ok(()),
        };
        if finished {
            synced
        } else {
            Err(Error::Timeout {
                topic: "(shutdown)".to_owned(),
                after: limit,
            })
        }
    }
}

impl Subscription {
    /// Stops this subscription as [`Bus::shutdown`](crate::Bus::shutdown) stops every one: no new
    /// messages are taken, the handlers in flight finish, and on a transport
    /// that queues in this process (memory) what is queued for its group is
    /// handled first when it is the group's last member here; then it
    /// leaves the group, whose other members (here or elsewhere) take its
    /// share. The bus and its other subscriptions go on.
    ///
    /// Waits at most the bus's shutdown timeout, then leaves at once and
    /// returns [`Error::Timeout`]. Stopping a subscription that the bus
    /// already stopped (a shutdown, a dropped bus) does nothing.
    pub async fn stop(self) -> Result<()> {
        let core = &self.core;
        let registration = {
            let mut registrations = core.registrations.lock().expect("poisoned");
            let Some(at) = registrations
                .iter()
                .position(|reg| Arc::ptr_eq(&reg.member, &self.member))
            else {
                return Ok(());
            };
            registrations.swap_remove(at)
        };
        let limit = core.settings.shutdown_timeout;
        let stop = async {
            core.drain_last_members(std::slice::from_ref(&registration))
                .await;
            core.transport
                .leave(
                    &registration.topic,
                    &registration.group,
                    &registration.member,
                )
                .await;
            registration.member.close().await;
        };
        if tokio::time::timeout(limit, stop).await.is_ok() {
            return Ok(());
        }
        core.transport.leave_now(
            &registration.topic,
            &registration.group,
            &registration.member,
        );
        Err(Error::Timeout {
            topic: registration.topic.into_owned(),
            after: limit,
        })
    }
}
