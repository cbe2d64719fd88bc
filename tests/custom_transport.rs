//! A transport of its own, through the public contract (`topicbus::transport`):
//! a wrapper of the memory broker that counts what passes through it. The
//! bus refuses, with `Error::Config`, a start position the transport's
//! capabilities do not cover, before asking the transport; and the public
//! conformance kit holds on it (`custom::..`, `custom_codec::..`), the bus
//! reaching the broker only through `dyn Transport`, and on a variant that
//! sends every message and reply through its wire form (`custom_wire::..`:
//! `TransportMessage::headers` and `payload_bytes` out,
//! `TransportMessage::from_wire_with` back, within the bus's header limits)
//! as a network transport does. The transport keeps its dead letters and
//! re-drives them with `TransportMessage::redriven`: a dead letter of a
//! failing handler goes back to the group that failed it, and one with a
//! forged `topicbus_redrives` is refused with `Error::Codec`. A bus's
//! `max_headers` reaches the transport, which drops the headers past it.
//!
//! ```text
//! cargo test --test custom_transport
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::transport::{
    BoxFuture, Capabilities, GroupMember, HeaderLimits, ReplyInbox, SubscriptionSpec, Transport,
    TransportMessage,
};
use topicbus::{header, Bus, Error, RawMessage, RedriveSummary, Result, StartFrom};
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
/// from its wire form, within the header limits its bus gave it (one
/// `Counting` per bus), as a transport over a network would. It keeps the
/// dead letters published through it and re-drives them itself.
struct Counting {
    inner: MemoryBroker,
    capabilities: Capabilities,
    wire: bool,
    published: AtomicU64,
    joined: AtomicU64,
    replied: AtomicU64,
    /// The bus's `max_headers`, from its reply inbox.
    limits: Mutex<HeaderLimits>,
    /// Every message published to a `*.dlq` topic and not re-driven.
    dead: Mutex<Vec<TransportMessage>>,
    /// Why `TransportMessage::redriven` refused the dead letters it skipped.
    refused: Mutex<Vec<Error>>,
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
            limits: Mutex::new(HeaderLimits::default()),
            dead: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
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
        let limits = *self.limits.lock().unwrap();
        let received = TransportMessage::from_wire_with(
            message.topic(),
            key,
            &headers,
            message.payload_bytes()?,
            limits,
        );
        assert!(!received.same(&message) && received.id() == message.id());
        Ok(received)
    }

    /// The dead letters of `dlq` kept now.
    fn dead_letters(&self, dlq: &str) -> Vec<TransportMessage> {
        let dead = self.dead.lock().unwrap();
        dead.iter().filter(|m| m.topic() == dlq).cloned().collect()
    }

    /// `Transport::redrive` as its documentation says: each dead letter of
    /// `topic` kept now is published again as `redriven` makes it, and
    /// forgotten once published; one it refuses is logged, counted and
    /// kept.
    async fn redrive_kept(&self, topic: &str) -> Result<RedriveSummary> {
        let dlq = format!("{topic}.dlq");
        let mut done = RedriveSummary::default();
        for dead in self.dead_letters(&dlq) {
            match dead.redriven(topic) {
                Ok(again) => {
                    self.publish(again).await?;
                    self.dead.lock().unwrap().retain(|m| !m.same(&dead));
                    done.moved += 1;
                }
                Err(error) => {
                    tracing::error!(topic = %dlq, id = %dead.id(), %error, "re-drive skipped a dead letter");
                    self.refused.lock().unwrap().push(error);
                    done.skipped += 1;
                }
            }
        }
        Ok(done)
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
            Ok(message) => {
                if message.topic().ends_with(".dlq") {
                    self.dead.lock().unwrap().push(message.clone());
                }
                self.inner.publish(message)
            }
            Err(e) => Box::pin(async { Err(e) }),
        }
    }

    fn join(&self, spec: SubscriptionSpec, member: GroupMember) -> BoxFuture<'_, Result<()>> {
        self.joined.fetch_add(1, Ordering::Relaxed);
        // The bus gives the same limits with each group and its inbox.
        assert_eq!(spec.header_limits(), *self.limits.lock().unwrap());
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
        *self.limits.lock().unwrap() = inbox.header_limits();
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

    fn redrive<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<RedriveSummary>> {
        Box::pin(self.redrive_kept(topic))
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

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(30);

async fn guard<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what}"))
}

/// A bus on `transport` that dead-letters at the first failure.
async fn bus_on(transport: &Arc<Counting>) -> Bus {
    Bus::builder()
        .service("contract")
        .retries(0)
        .transport(Arc::clone(transport))
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dead_letter_redriven_through_the_public_helper_goes_back_to_the_group_that_failed() {
    let transport = Arc::new(Counting::wire(MemoryBroker::default()));
    let bus = bus_on(&transport).await;
    let fixed = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for group in ["billing", "audit"] {
        let (tx, fixed) = (tx.clone(), Arc::clone(&fixed));
        bus.group(group)
            .subscribe_raw("orders", move |message: RawMessage, _ctx| {
                let (tx, fixed) = (tx.clone(), Arc::clone(&fixed));
                async move {
                    if group == "billing" && !fixed.load(Ordering::SeqCst) {
                        return Err("out of stock".to_owned());
                    }
                    let redrives = message.headers.get_str(header::REDRIVES).map(str::to_owned);
                    tx.send((group, message.payload, redrives))
                        .map_err(|_| "receiver gone".to_owned())
                }
            })
            .await
            .unwrap();
    }
    bus.publish_raw(RawMessage::new("orders", b"order 7".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        guard("audit", rx.recv()).await.unwrap(),
        ("audit", b"order 7".to_vec(), None)
    );
    // The bus dead-letters billing's failure through the transport.
    guard("the dead letter", async {
        while transport.dead_letters("orders.dlq").is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let dead = transport.dead_letters("orders.dlq");
    let headers = dead[0].headers();
    assert_eq!(headers.get_str(header::GROUP), Some("billing"));
    assert!(headers
        .get_str(header::ERROR)
        .unwrap()
        .contains("out of stock"));

    fixed.store(true, Ordering::SeqCst);
    let done = guard("re-drive", bus.redrive("orders")).await.unwrap();
    assert_eq!((done.moved, done.skipped), (1, 0));
    assert_eq!(
        guard("billing", rx.recv()).await.unwrap(),
        ("billing", b"order 7".to_vec(), Some("1".to_owned()))
    );
    assert!(transport.dead_letters("orders.dlq").is_empty());
    assert!(transport.refused.lock().unwrap().is_empty());
    // Shutdown drains audit's queue: it acknowledged the re-driven message
    // without its handler, which handled the original once.
    bus.shutdown().await.unwrap();
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn a_forged_redrive_count_is_refused_by_the_public_helper_and_the_dead_letter_stays() {
    let transport = Arc::new(Counting::wire(MemoryBroker::default()));
    let bus = bus_on(&transport).await;
    let mut forged = RawMessage::new("orders.dlq", b"order 8".to_vec());
    forged.headers.insert(header::GROUP, "billing");
    forged.headers.insert(header::REDRIVES, "1000000");
    bus.publish_raw(forged).await.unwrap();

    let done = guard("re-drive", bus.redrive("orders")).await.unwrap();
    assert_eq!((done.moved, done.skipped), (0, 1));
    match &transport.refused.lock().unwrap()[..] {
        [Error::Codec { topic, source, .. }] => {
            assert_eq!(topic, "orders.dlq");
            let why = source.to_string();
            assert!(
                why.contains("cannot be re-driven")
                    && why.contains(
                        r#"`topicbus_redrives` header, "1000000", is not a count below 1000000"#
                    ),
                "{why}"
            );
        }
        other => panic!("expected one Error::Codec, got {other:?}"),
    }
    // It stays, and the next re-drive skips it again.
    assert_eq!(transport.dead_letters("orders.dlq").len(), 1);
    let again = guard("re-drive", bus.redrive("orders")).await.unwrap();
    assert_eq!((again.moved, again.skipped), (0, 1));
    bus.shutdown().await.unwrap();
}

/// The headers a raw handler of `bus` gets for a message published with
/// four application headers, `h0` to `h3`.
async fn received_headers(bus: &Bus) -> topicbus::Headers {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    bus.group("readers")
        .subscribe_raw("headers", move |message: RawMessage, _ctx| {
            let tx = tx.clone();
            async move { tx.send(message.headers).map_err(|_| "receiver gone") }
        })
        .await
        .unwrap();
    let mut message = RawMessage::new("headers", b"{}".to_vec());
    for n in 0..4 {
        message.headers.insert(format!("h{n}"), "x");
    }
    bus.publish_raw(message).await.unwrap();
    guard("the message", rx.recv()).await.unwrap()
}

#[tokio::test]
async fn a_transport_rebuilding_messages_from_the_wire_applies_the_bus_header_limits() {
    // The publish keeps the four (fewer than 7); on the wire ce_specversion,
    // ce_id, ce_source, ce_type and ce_time come first, so the transport,
    // rebuilding the message within 7 headers, keeps two of the four.
    let transport = Arc::new(Counting::wire(MemoryBroker::default()));
    let bus = Bus::builder()
        .max_headers(7, 64 * 1024)
        .transport(Arc::clone(&transport))
        .connect()
        .await
        .unwrap();
    let headers = received_headers(&bus).await;
    assert_eq!(
        *transport.limits.lock().unwrap(),
        HeaderLimits::new(7, 64 * 1024)
    );
    assert_eq!(
        (headers.get_str("h0"), headers.get_str("h1")),
        (Some("x"), Some("x"))
    );
    assert_eq!((headers.get("h2"), headers.get("h3")), (None, None));
    assert_eq!(headers.get_str(header::HEADERS_DROPPED), Some("2"));
    bus.shutdown().await.unwrap();

    // Within the default limits, every header arrives.
    let transport = Arc::new(Counting::wire(MemoryBroker::default()));
    let bus = Bus::builder()
        .transport(Arc::clone(&transport))
        .connect()
        .await
        .unwrap();
    let headers = received_headers(&bus).await;
    assert!((0..4).all(|n| headers.get_str(&format!("h{n}")) == Some("x")));
    assert_eq!(headers.get(header::HEADERS_DROPPED), None);
    bus.shutdown().await.unwrap();
}
