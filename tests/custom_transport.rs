//! A transport of its own, through the public contract (`topicbus::transport`):
//! a wrapper of the memory broker that counts what passes through it. The
//! bus refuses, with `Error::Config`, a start position the transport's
//! capabilities do not cover, before asking the transport; and the public
//! conformance kit holds on it (`custom::..`, `custom_codec::..`), the bus
//! reaching the broker only through `dyn Transport`, and on a variant that
//! sends every message and reply through its wire form (`custom_wire::..`:
//! `TransportMessage::headers` and `payload_bytes` out,
//! `TransportMessage::from_wire` back) as a network transport does.
//!
//! ```text
//! cargo test --test custom_transport
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::transport::{
    BoxFuture, Capabilities, GroupMember, ReplyInbox, SubscriptionSpec, Transport, TransportMessage,
};
use topicbus::{Bus, Error, RawMessage, Result, StartFrom};
use topicbus_conformance::{Harness, Network, Setup};

topicbus_conformance::suite! {
    custom [doc = "On a custom transport wrapping the memory broker."] => CustomHarness::plain(),
    custom_codec [doc = "On a custom transport wrapping the memory broker, every payload through its codec."]
        => CustomHarness::codec(),
    custom_wire [doc = "On a custom transport that rebuilds every message from its wire form."]
        => CustomHarness::wire(),
}

/// Buses on `Counting` transports that share one memory broker per
/// network. The capability flags are the memory broker's: `Counting`
/// passes everything on to it.
struct CustomHarness {
    force_codec: bool,
    wire: bool,
}

impl CustomHarness {
    fn plain() -> Self {
        Self {
            force_codec: false,
            wire: false,
        }
    }

    fn codec() -> Self {
        Self {
            force_codec: true,
            wire: false,
        }
    }

    fn wire() -> Self {
        Self {
            force_codec: false,
            wire: true,
        }
    }
}

impl Harness for CustomHarness {
    fn name(&self) -> &'static str {
        match (self.force_codec, self.wire) {
            (_, true) => "custom_wire",
            (true, false) => "custom_codec",
            (false, false) => "custom",
        }
    }

    fn keeps_history(&self) -> bool {
        // The broker retains `Setup::retain` messages per topic.
        true
    }

    fn publishers_wait_for_slow_consumers(&self) -> bool {
        true
    }

    fn has_offsets(&self) -> bool {
        false
    }

    fn network(&self, setup: Setup) -> futures::future::BoxFuture<'static, Box<dyn Network>> {
        let mut config = MemoryConfig::default().force_codec(self.force_codec);
        if let Some(n) = setup.partitions {
            config = config.partitions(n);
        }
        if let Some(n) = setup.queue_capacity {
            config = config.queue_capacity(n);
        }
        if let Some(n) = setup.retain {
            config = config.retain(n);
        }
        let network = CustomNet {
            broker: MemoryBroker::new(config),
            setup,
            wire: self.wire,
        };
        Box::pin(async move { Box::new(network) as Box<dyn Network> })
    }
}

struct CustomNet {
    broker: MemoryBroker,
    setup: Setup,
    wire: bool,
}

impl Network for CustomNet {
    fn bus(&self, service: &str) -> futures::future::BoxFuture<'_, Bus> {
        let builder = self.setup.builder(service).transport(if self.wire {
            Counting::wire(self.broker.clone())
        } else {
            Counting::new(self.broker.clone())
        });
        Box::pin(async move {
            builder
                .connect()
                .await
                .expect("a bus on the counting transport")
        })
    }
}

/// The memory broker behind a `dyn Transport`, counting publishes, joins
/// and replies, and reporting `capabilities` instead of the broker's own.
/// With `wire` set, it hands the broker each message and reply rebuilt
/// from its wire form, as a transport over a network would.
struct Counting {
    inner: MemoryBroker,
    capabilities: Capabilities,
    wire: bool,
    published: AtomicU64,
    joined: AtomicU64,
    replied: AtomicU64,
}

impl Counting {
    fn new(inner: MemoryBroker) -> Self {
        let capabilities = inner.capabilities();
        Self {
            inner,
            capabilities,
            wire: false,
            published: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            replied: AtomicU64::new(0),
        }
    }
}

impl Counting {
    fn wire(inner: MemoryBroker) -> Self {
        Self {
            capabilities: inner.capabilities().carries_values(false),
            wire: true,
            ..Self::new(inner)
        }
    }

    /// `message` as a receiver rebuilds it from the bytes and headers sent.
    fn send(&self, message: TransportMessage) -> Result<TransportMessage> {
        if !self.wire {
            return Ok(message);
        }
        assert!(
            !message.is_value(),
            "a value reached a transport that carries none"
        );
        let (key, headers) = (message.key().map(<[u8]>::to_vec), message.headers());
        let received =
            TransportMessage::from_wire(message.topic(), key, &headers, message.payload_bytes()?);
        assert!(!received.same(&message) && received.id() == message.id());
        Ok(received)
    }
}

impl Transport for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn publish(&self, message: TransportMessage) -> BoxFuture<'_, Result<()>> {
        self.published.fetch_add(1, Ordering::Relaxed);
        match self.send(message) {
            Ok(message) => self.inner.publish(message),
            Err(e) => Box::pin(async { Err(e) }),
        }
    }

    fn join(&self, spec: SubscriptionSpec, member: GroupMember) -> BoxFuture<'_, Result<()>> {
        self.joined.fetch_add(1, Ordering::Relaxed);
        self.inner.join(spec, member)
    }

    fn leave<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        member: &'a GroupMember,
    ) -> BoxFuture<'a, ()> {
        self.inner.leave(topic, group, member)
    }

    fn leave_now(&self, topic: &str, group: &str, member: &GroupMember) {
        self.inner.leave_now(topic, group, member)
    }

    fn drain<'a>(&'a self, topic: &'a str, group: &'a str) -> BoxFuture<'a, bool> {
        self.inner.drain(topic, group)
    }

    fn local_members(&self, topic: &str, group: &str) -> Option<usize> {
        self.inner.local_members(topic, group)
    }

    fn has_consumers(&self, topic: &str) -> Option<bool> {
        self.inner.has_consumers(topic)
    }

    fn open_inbox(&self, name: &str, inbox: ReplyInbox) -> Result<()> {
        self.inner.open_inbox(name, inbox)
    }

    fn reply(&self, reply_to: &str, reply: TransportMessage) -> Result<()> {
        self.replied.fetch_add(1, Ordering::Relaxed);
        self.inner.reply(reply_to, self.send(reply)?)
    }

    fn close<'a>(&'a self, inbox: &'a str) -> BoxFuture<'a, ()> {
        self.inner.close(inbox)
    }

    fn close_now(&self, inbox: &str) {
        self.inner.close_now(inbox)
    }

    fn redrive<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<topicbus::RedriveSummary>> {
        self.inner.redrive(topic)
    }

    fn max_message_bytes(&self) -> Option<usize> {
        self.inner.max_message_bytes()
    }
}

async fn subscribe_from(bus: &Bus, start: StartFrom) -> Result<()> {
    bus.group("replayers")
        .subscribe_raw("history", |_: RawMessage, _ctx| async {
            Ok::<_, std::convert::Infallible>(())
        })
        .start_from(start)
        .await
        .map(drop)
}

#[tokio::test]
async fn a_start_position_the_transport_cannot_honour_is_a_config_error() {
    let transport = Arc::new(Counting {
        capabilities: Capabilities::new().carries_values(true),
        ..Counting::new(MemoryBroker::default())
    });
    let bus = Bus::builder()
        .transport(Arc::clone(&transport))
        .connect()
        .await
        .unwrap();
    for start in [
        StartFrom::Offsets(vec![(0, 3)]),
        StartFrom::Earliest,
        StartFrom::Timestamp(std::time::SystemTime::UNIX_EPOCH),
    ] {
        match subscribe_from(&bus, start.clone()).await {
            Err(Error::Config { key, message }) => {
                assert_eq!(key, "start_from");
                assert!(
                    message.contains("`counting`") && message.contains(&format!("{start:?}")),
                    "{message}"
                );
            }
            other => panic!("{start:?}: expected Error::Config, got {other:?}"),
        }
    }
    // Refused before the transport was asked.
    assert_eq!(transport.joined.load(Ordering::Relaxed), 0);
    subscribe_from(&bus, StartFrom::Latest).await.unwrap();
    assert_eq!(transport.joined.load(Ordering::Relaxed), 1);
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_transport_that_replays_gets_the_group_from_the_start() {
    let broker = MemoryBroker::new(MemoryConfig::default().retain(10));
    let transport = Arc::new(Counting::new(broker));
    let bus = Bus::builder()
        .transport(Arc::clone(&transport))
        .connect()
        .await
        .unwrap();
    bus.publish_raw(RawMessage::new("history", b"kept".to_vec()))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    bus.group("replayers")
        .subscribe_raw("history", move |message: RawMessage, _ctx| {
            let tx = tx.clone();
            async move { tx.send(message.payload).map_err(|_| "receiver gone") }
        })
        .start_from(StartFrom::Earliest)
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap(), b"kept");
    assert_eq!(transport.published.load(Ordering::Relaxed), 1);
    bus.shutdown().await.unwrap();
}
