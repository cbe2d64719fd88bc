//! Hostile parties on the request/reply path, through the public API, on
//! the memory transport and on librdkafka's mock cluster:
//!
//! - a responder answers only on reply topics: under the reply topic
//!   prefix, `{topic}.response`, and `allowed_reply_topics` (builder and
//!   `BusConfig`); any other `reply_to` is dead-lettered;
//! - with a [`ReplyKey`], a forged reply racing the genuine one is dropped
//!   and counted, also one a keyed responder was tricked into sending for a
//!   request of its own; without keys the first reply wins, as before;
//! - a reply that is too large, has unreadable headers, names another
//!   codec or panics while decoding fails its request with an error.
//!
//! The hostile party ("mallory") reads the request topic in a consumer
//! group of its own and answers with the request's `correlation_id` on its
//! `reply_to`: on Kafka by producing to the reply topic with rdkafka, on the
//! memory transport (where only a responder reaches an inbox) through a
//! responder of its own that it sends requests to under the stolen
//! correlation id and `reply_to`.

#[cfg(feature = "kafka")]
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::{
    header, Bus, BusBuilder, BusConfig, Context, Error, ErrorKind, RawMessage, ReplyKey, Topic,
};

/// A hang guard only: no test asserts how fast anything is.
const HANG: Duration = Duration::from_secs(30);

const KEY: &str = "test-reply-key-shared-by-every-service-0001";

async fn guard<T>(what: &str, future: impl IntoFuture<Output = T>) -> T {
    match tokio::time::timeout(HANG, future.into_future()).await {
        Ok(value) => value,
        Err(_) => panic!("hang guard: {what} did not finish within {HANG:?}"),
    }
}

/// Polls `condition` (a counter) until it holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    guard(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// What handlers and watchers saw.
#[derive(Clone)]
struct Seen<T>(Arc<Mutex<Vec<T>>>);

impl<T> Default for Seen<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T: Clone> Seen<T> {
    fn push(&self, item: T) {
        self.0.lock().unwrap().push(item);
    }

    fn snapshot(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize, what: &str) -> Vec<T> {
        eventually(what, || self.0.lock().unwrap().len() >= n).await;
        self.snapshot()
    }
}

// ------------------------------------------------------------------ topics

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.ask", response = Answer)]
struct Ask {
    mode: String,
}

/// A response whose decoding panics on the text `boom`, as a `Deserialize`
/// with a bug would.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct Answer {
    text: String,
}

impl<'de> Deserialize<'de> for Answer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Plain {
            text: String,
        }
        let plain = Plain::deserialize(deserializer)?;
        if plain.text == "boom" {
            panic!("deliberate panic decoding a reply (expected by the test)");
        }
        Ok(Answer { text: plain.text })
    }
}

/// Mallory's own responder on memory: answers with the text it is sent.
#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.echo", response = Answer)]
struct Echo {
    text: String,
}

/// [`Echo`] in postcard: its replies name another codec than `hostile.ask`'s.
#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.echo_postcard", codec = "postcard", response = Answer)]
struct EchoPostcard {
    text: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.vault", response = Answer)]
struct Vault {
    n: i64,
}

/// Another topic of the vault's responder.
#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "hostile.safe", response = Answer)]
struct Safe {
    n: i64,
}

// --------------------------------------------------------------- networks

/// One broker the buses of a test share.
enum Net {
    Memory(MemoryBroker),
    #[cfg(feature = "kafka")]
    Kafka(mock_kafka::MockKafka),
}

impl Net {
    /// Typed values travel as they are.
    fn memory() -> Net {
        Net::Memory(MemoryBroker::default())
    }

    /// Every payload travels encoded, as on a network.
    fn memory_codec() -> Net {
        Net::Memory(MemoryBroker::new(MemoryConfig::default().force_codec(true)))
    }

    #[cfg(feature = "kafka")]
    fn kafka() -> Net {
        Net::Kafka(mock_kafka::MockKafka::start(1))
    }

    async fn bus(&self, service: &str, settings: impl FnOnce(BusBuilder) -> BusBuilder) -> Bus {
        let builder = settings(Bus::builder().service(service));
        match self {
            Net::Memory(broker) => builder.memory(broker.clone()).build(),
            #[cfg(feature = "kafka")]
            Net::Kafka(kafka) => {
                let config = mock_kafka::test_settings(
                    topicbus::kafka::KafkaConfig::new(kafka.bootstrap.clone())
                        .provision_topics(false),
                );
                guard("connect", builder.kafka(config).connect())
                    .await
                    .expect("connect to the mock cluster")
            }
        }
    }
}

/// Records every message of `topic`, read by `bus` in a group of its own
/// (named after `run`).
async fn watch(bus: &Bus, topic: &str, run: &str) -> Seen<RawMessage> {
    let seen = Seen::default();
    let sink = seen.clone();
    bus.group(format!("watch.{run}.{topic}"))
        .subscribe_raw(topic, move |raw: RawMessage, _ctx: Context| {
            sink.push(raw);
            futures::future::ready(Ok::<(), Infallible>(()))
        })
        .await
        .unwrap_or_else(|e| panic!("watch `{topic}`: {e}"));
    seen
}

/// A request as another client writes it, with a stolen or chosen
/// correlation id and `reply_to`.
fn raw_request(topic: &str, json: String, correlation_id: &str, reply_to: &str) -> RawMessage {
    let mut request = RawMessage::new(topic, json.into_bytes());
    request.headers.insert("content-type", "application/json");
    request.headers.insert("correlation_id", correlation_id);
    request.headers.insert("reply_to", reply_to);
    request
}

/// The correlation id and `reply_to` of a request mallory read.
fn stolen(request: &RawMessage) -> (String, String) {
    let text = |name| {
        request
            .headers
            .get_str(name)
            .unwrap_or_else(|| panic!("a request carries `{name}`: {:?}", request.headers))
            .to_owned()
    };
    (text("correlation_id"), text("reply_to"))
}

/// Mallory's memory accomplice: a responder without a key that answers
/// [`Echo`] and [`EchoPostcard`] with the text it is sent.
async fn accomplice(mallory: &Bus) {
    mallory
        .group("mallory.echo")
        .serve(|echo: Echo| async move { Ok::<_, Infallible>(Answer { text: echo.text }) })
        .await
        .expect("serve echo");
    mallory
        .group("mallory.echo_postcard")
        .serve(|echo: EchoPostcard| async move { Ok::<_, Infallible>(Answer { text: echo.text }) })
        .await
        .expect("serve echo in postcard");
}

// ------------------------------------------------- item 4: reply topics

/// Reply topics a responder answers on because the configuration allows
/// them (exactly, or by a prefix followed by `*`), set with the builder or
/// in `BusConfig` from the environment; any other `reply_to` is
/// dead-lettered, not handled, and nothing is published there.
///
/// On Kafka the answers are on those topics. The memory transport hands
/// replies to the inboxes of instances only (no other client reads there):
/// it drops an answer to any other topic, allowed or not, as before.
async fn allowed_reply_topics_are_answered_and_others_dead_lettered(net: Net) {
    let allowed = ["hostile.replies.exact", "hostile.replies.any.*"];
    let mut env = vec![
        (
            "HOSTILE_ALLOWED_REPLY_TOPICS".to_owned(),
            "hostile.replies.exact, hostile.replies.any.*".to_owned(),
        ),
        ("HOSTILE_SERVICE".to_owned(), "vault".to_owned()),
    ];
    #[cfg(feature = "kafka")]
    if let Net::Kafka(kafka) = &net {
        for (name, value) in [
            ("BUS_TYPE", "kafka"),
            ("KAFKA_BROKERS", kafka.bootstrap.as_str()),
            ("KAFKA_PROVISION_TOPICS", "false"),
            ("KAFKA_PROPERTIES__FETCH_WAIT_MAX_MS", "5"),
            ("KAFKA_PROPERTIES__SESSION_TIMEOUT_MS", "6000"),
            ("KAFKA_PROPERTIES__HEARTBEAT_INTERVAL_MS", "500"),
        ] {
            env.push((format!("HOSTILE_{name}"), value.to_owned()));
        }
    }
    let from_config = BusConfig::loader()
        .env_prefix("HOSTILE")
        .env_vars(env)
        .load()
        .expect("config");
    assert_eq!(from_config.allowed_reply_topics, allowed);
    let on_kafka = !matches!(net, Net::Memory(_));
    for configured_by in ["builder", "config"] {
        // With `BusConfig`, one bus plays every part (on memory, on a
        // private broker of its own).
        let (responder, watcher, client) = match configured_by {
            "builder" => (
                net.bus("vault", |b| b.allowed_reply_topics(allowed)).await,
                net.bus("watcher", |b| b).await,
                net.bus("client", |b| b).await,
            ),
            _ => {
                let bus = guard("connect", Bus::connect(from_config.clone()))
                    .await
                    .expect("connect");
                (bus.clone(), bus.clone(), bus)
            }
        };
        let handled = Seen::default();
        let sink = handled.clone();
        responder
            .group(format!("vault.{configured_by}"))
            .serve(move |vault: Vault| {
                sink.push(vault.n);
                futures::future::ready(Ok::<_, Infallible>(Answer {
                    text: format!("answer {}", vault.n),
                }))
            })
            .await
            .expect("serve");
        let cases = [
            (1, "hostile.replies.exact", true),
            (2, "hostile.replies.any.a1", true),
            (3, "hostile.replies.exact.extra", false),
            (4, "hostile.replies.any", false),
            (5, "hostile.repliesx", false),
        ];
        let mut watched = Vec::new();
        for (_, topic, _) in cases {
            watched.push(watch(&watcher, topic, configured_by).await);
        }
        let dead = watch(&watcher, "hostile.vault.dlq", configured_by).await;
        for (n, topic, _) in cases {
            let request = raw_request(
                Vault::NAME,
                format!(r#"{{"n":{n}}}"#),
                &format!("00000000-0000-4000-8000-00000000000{n}"),
                topic,
            );
            client.publish_raw(request).await.expect("publish");
        }
        let answer = guard("a typed request", client.request(&Vault { n: 6 }))
            .await
            .expect("a request of a topicbus requester is answered");
        assert_eq!(answer.text, "answer 6");

        let dead = dead.wait_for(3, "three dead letters").await;
        for (n, topic, answered) in cases {
            let payload = format!(r#"{{"n":{n}}}"#).into_bytes();
            let letter = dead.iter().find(|d| d.payload == payload);
            if answered {
                assert!(letter.is_none(), "{configured_by}: {topic} dead-lettered");
                if on_kafka {
                    let replies = watched[n as usize - 1].wait_for(1, topic).await;
                    assert_eq!(replies.len(), 1, "{configured_by}: {topic}");
                    assert_eq!(
                        replies[0].payload,
                        format!(r#"{{"text":"answer {n}"}}"#).into_bytes()
                    );
                }
            } else {
                let letter =
                    letter.unwrap_or_else(|| panic!("{configured_by}: {topic} not dead-lettered"));
                assert_eq!(letter.headers.get_str(header::ERROR_KIND), Some("header"));
                let reason = letter.headers.get_str(header::ERROR).unwrap_or_default();
                assert!(
                    reason.contains(&format!("`{topic}`"))
                        && reason.contains("`hostile.replies.any.*`"),
                    "{reason}"
                );
            }
        }
        // On memory nothing shows that an allowed request was answered (the
        // answer is dropped): wait until it was handled. A refused one is
        // dead-lettered instead of handled, and all three were.
        let mut handled = handled.wait_for(3, "the allowed requests handled").await;
        handled.sort_unstable();
        assert_eq!(
            handled,
            [1, 2, 6],
            "{configured_by}: refused requests are not handled (so not answered)"
        );
        for (n, topic, answered) in cases {
            if !answered {
                assert!(
                    watched[n as usize - 1].snapshot().is_empty(),
                    "{configured_by}: nothing is published to {topic}"
                );
            }
        }
        for bus in [client, watcher, responder] {
            guard("shutdown", bus.shutdown()).await.expect("shutdown");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_reply_topics_are_answered_and_others_dead_lettered_memory() {
    allowed_reply_topics_are_answered_and_others_dead_lettered(Net::memory()).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_reply_topics_are_answered_and_others_dead_lettered_kafka() {
    allowed_reply_topics_are_answered_and_others_dead_lettered(Net::kafka()).await;
}

/// `allowed_reply_topics` and `reply_key` in `BusConfig`: a bad entry or a
/// short key is a config error naming the variable, the key never shows in
/// errors or `Debug` output.
#[test]
fn reply_settings_are_validated_and_the_key_stays_secret() {
    let load = |vars: &[(&str, &str)]| {
        BusConfig::loader()
            .env_prefix("RICE")
            .env_vars(vars.iter().copied())
            .load()
    };
    for (value, says) in [("*", "every request"), ("a b", "`a b`"), ("ok,", "")] {
        match load(&[("RICE_ALLOWED_REPLY_TOPICS", value)]) {
            Err(Error::Config { key, message }) => {
                assert_eq!(key, "RICE_ALLOWED_REPLY_TOPICS");
                assert!(message.contains(says), "{message}");
            }
            Ok(config) if value == "ok," => assert_eq!(config.allowed_reply_topics, ["ok"]),
            other => panic!("{value}: {other:?}"),
        }
    }
    let short = "not-32-bytes-long-secret";
    match load(&[("RICE_REPLY_KEY", short)]) {
        Err(error @ Error::Config { .. }) => {
            let text = format!("{error} {error:?}");
            assert!(text.contains("RICE_REPLY_KEY"), "{text}");
            assert!(text.contains("at least 32 bytes"), "{text}");
            assert!(!text.contains(short), "{text}");
        }
        other => panic!("a short key: {other:?}"),
    }
    let loader = BusConfig::loader().env_vars([("RICE_REPLY_KEY", KEY)]);
    assert!(!format!("{loader:?}").contains(KEY), "{loader:?}");
    let config = load(&[("RICE_REPLY_KEY", KEY)]).expect("a key of 43 bytes");
    assert!(config.reply_key.is_some());
    let shown = format!("{config:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(
        shown.contains("reply_key: Some(ReplyKey(<redacted>))"),
        "{shown}"
    );
    let bus = Bus::builder()
        .reply_key(ReplyKey::new(KEY).unwrap())
        .build();
    assert!(!format!("{bus:?}").contains(KEY));
}

// ------------------------------------------ item 5: forged replies

/// How mallory forges a reply to a request of the client it read.
#[derive(Clone, Copy, Debug)]
enum Forgery {
    /// Without the key: a reply of its own, unsigned.
    Unsigned,
    /// With the genuine responder: a request of its own (`Safe { n: 99 }`,
    /// on another topic of the responder, so that it does not wait behind
    /// the client's request in its partition) under the stolen correlation
    /// id and `reply_to`, which the keyed responder answers with a valid MAC
    /// for that other request. (That a MAC for another payload of the same
    /// topic fails too is proven by the unit tests of the MAC.)
    Deputy,
}

/// Mallory reads `hostile.vault` and forges a reply to the client's request
/// `n == 1`, then counts it in `forged`.
async fn forge_replies(net: &Net, mallory: &Bus, forgery: Forgery, forged: Seen<()>) {
    let sender = mallory.clone();
    #[cfg(feature = "kafka")]
    let producer = match net {
        Net::Kafka(kafka) => Some(raw_producer(&kafka.bootstrap)),
        Net::Memory(_) => None,
    };
    #[cfg(not(feature = "kafka"))]
    let _ = net;
    mallory
        .group("mallory.read-vault")
        .subscribe_raw(Vault::NAME, move |request: RawMessage, _ctx: Context| {
            let sender = sender.clone();
            #[cfg(feature = "kafka")]
            let producer = producer.clone();
            let forged = forged.clone();
            async move {
                if request.payload != br#"{"n":1}"# {
                    return Ok::<(), Error>(());
                }
                let (correlation_id, reply_to) = stolen(&request);
                match forgery {
                    Forgery::Deputy => {
                        let own = raw_request(
                            Safe::NAME,
                            r#"{"n":99}"#.to_owned(),
                            &correlation_id,
                            &reply_to,
                        );
                        sender.publish_raw(own).await?;
                    }
                    #[cfg(feature = "kafka")]
                    Forgery::Unsigned if producer.is_some() => {
                        let producer = producer.as_ref().expect("checked");
                        produce_reply(
                            producer,
                            &reply_to,
                            br#"{"text":"forged"}"#,
                            &[
                                ("correlation_id", &correlation_id),
                                ("content-type", "application/json"),
                            ],
                        )
                        .await;
                    }
                    Forgery::Unsigned => {
                        let echo = raw_request(
                            Echo::NAME,
                            r#"{"text":"forged"}"#.to_owned(),
                            &correlation_id,
                            &reply_to,
                        );
                        sender.publish_raw(echo).await?;
                    }
                }
                forged.push(());
                Ok(())
            }
        })
        .await
        .expect("mallory reads the request topic");
}

/// The client asks `Vault { n: 1 }` while mallory forges a reply; the
/// genuine responder answers only once the client has dealt with the forged
/// one (rejected it, or taken it: then the request is no longer pending),
/// so the forged reply always comes first. Returns the client's outcome and
/// stats. Also asks `Vault { n: 0 }`, which the responder fails: an error
/// reply is authenticated too.
async fn race(net: Net, forgery: Forgery, keyed: bool) -> (String, topicbus::BusStats) {
    let key = || ReplyKey::new(KEY).expect("key");
    let with_key = |b: BusBuilder| if keyed { b.reply_key(key()) } else { b };
    let client = net.bus("client", with_key).await;
    let responder = net.bus("vault", with_key).await;
    let watched = client.clone();
    responder
        .group("vault")
        .serve(move |vault: Vault| {
            let client = watched.clone();
            async move {
                if vault.n == 1 {
                    eventually("the client dealt with the forged reply", || {
                        let stats = client.stats();
                        stats.rejected_replies == 1 || stats.pending_requests == 0
                    })
                    .await;
                }
                if vault.n == 0 {
                    return Err("zero is not in the vault".to_owned());
                }
                Ok(Answer {
                    text: format!("genuine {}", vault.n),
                })
            }
        })
        .await
        .expect("serve");
    responder
        .group("safe")
        .serve(|safe: Safe| async move {
            Ok::<_, Infallible>(Answer {
                text: format!("genuine {}", safe.n),
            })
        })
        .await
        .expect("serve");
    let mallory = net.bus("mallory", |b| b).await;
    accomplice(&mallory).await;
    let forged = Seen::default();
    forge_replies(&net, &mallory, forgery, forged.clone()).await;

    match guard("a failing request", client.request(&Vault { n: 0 })).await {
        Err(Error::Remote { message, .. }) => assert!(message.contains("zero"), "{message}"),
        other => panic!("expected the responder's error, got {other:?}"),
    }
    let answer = guard("the raced request", client.request(&Vault { n: 1 }))
        .await
        .expect("an answer");
    // Mallory counts its forgery once its publish returned, which may be
    // after the client was answered.
    let forged = forged.wait_for(1, "mallory's forgery").await;
    assert_eq!(forged.len(), 1, "mallory forged one reply");
    // The genuine reply (or, with a key, nothing more) still arrives.
    if !keyed {
        eventually("the genuine reply arrives late", || {
            client.stats().late_replies == 1
        })
        .await;
    }
    let stats = client.stats();
    for bus in [client, responder, mallory] {
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }
    (answer.text, stats)
}

async fn forged_replies_are_dropped_with_a_key(net: impl Fn() -> Net) {
    for forgery in [Forgery::Unsigned, Forgery::Deputy] {
        let (answer, stats) = race(net(), forgery, true).await;
        assert_eq!(
            answer, "genuine 1",
            "{forgery:?}: the forged reply was taken"
        );
        assert_eq!(
            (
                stats.rejected_replies,
                stats.late_replies,
                stats.pending_requests
            ),
            (1, 0, 0),
            "{forgery:?}: dropped and counted"
        );
        println!("{forgery:?}: forged reply dropped, genuine reply taken");
    }
}

async fn without_keys_the_first_reply_wins(net: impl Fn() -> Net) {
    for (forgery, forged) in [
        (Forgery::Unsigned, "forged"),
        (Forgery::Deputy, "genuine 99"),
    ] {
        let (answer, stats) = race(net(), forgery, false).await;
        assert_eq!(answer, forged, "{forgery:?}: replies are not authenticated");
        assert_eq!(
            (stats.rejected_replies, stats.late_replies),
            (0, 1),
            "{forgery:?}: the genuine reply came late"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replies_are_dropped_and_counted_with_a_reply_key_memory() {
    forged_replies_are_dropped_with_a_key(Net::memory).await;
    forged_replies_are_dropped_with_a_key(Net::memory_codec).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replies_are_dropped_and_counted_with_a_reply_key_kafka() {
    forged_replies_are_dropped_with_a_key(Net::kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reply_keys_the_first_reply_wins_memory() {
    without_keys_the_first_reply_wins(Net::memory).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reply_keys_the_first_reply_wins_kafka() {
    without_keys_the_first_reply_wins(Net::kafka).await;
}

/// A keyed requester takes no reply from a responder without the key (it
/// drops and counts each); a requester without a key takes a keyed
/// responder's replies, which carry their MAC as 64 hex digits.
async fn keys_on_one_side_only(net: Net) {
    let client = net
        .bus("client", |b| b.reply_key(ReplyKey::new(KEY).unwrap()))
        .await;
    let plain_client = net.bus("plain-client", |b| b).await;
    let keyless = net.bus("keyless", |b| b).await;
    keyless
        .group("keyless.echo")
        .serve(|echo: Echo| async move { Ok::<_, Infallible>(Answer { text: echo.text }) })
        .await
        .expect("serve");
    let keyed = net
        .bus("keyed", |b| b.reply_key(ReplyKey::new(KEY).unwrap()))
        .await;
    keyed
        .group("keyed.vault")
        .serve(|vault: Vault| async move {
            Ok::<_, Infallible>(Answer {
                text: format!("genuine {}", vault.n),
            })
        })
        .await
        .expect("serve");

    let waiting = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .request(&Echo {
                    text: "from a keyless responder".to_owned(),
                })
                .await
        }
    });
    eventually("the unsigned reply is dropped", || {
        client.stats().rejected_replies == 1
    })
    .await;
    assert_eq!(
        client.stats().pending_requests,
        1,
        "the request still waits"
    );
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert_eq!(client.stats().pending_requests, 0);

    let answer = guard("a keyless request", plain_client.request(&Vault { n: 5 }))
        .await
        .expect("a keyless requester takes a signed reply");
    assert_eq!(answer.text, "genuine 5");
    let mut raw = RawMessage::new(Vault::NAME, br#"{"n":6}"#.to_vec());
    raw.headers.insert("content-type", "application/json");
    let reply = guard("a raw request", plain_client.request_raw(raw))
        .await
        .expect("raw reply");
    let mac = reply.headers.get_str(header::REPLY_MAC).unwrap_or_default();
    assert!(
        mac.len() == 64 && mac.bytes().all(|b| b.is_ascii_hexdigit()),
        "{:?}",
        reply.headers
    );
    for bus in [client, plain_client, keyless, keyed] {
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_key_on_one_side_only_memory() {
    keys_on_one_side_only(Net::memory()).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_key_on_one_side_only_kafka() {
    keys_on_one_side_only(Net::kafka()).await;
}

/// A handler's error of any length comes back bounded (to 1 KiB, saying how
/// long it was), so that an error reply is never too large to send.
async fn a_long_handler_error_comes_back_bounded(net: Net) {
    let responder = net.bus("vault", |b| b).await;
    responder
        .group("vault")
        .serve(|vault: Vault| async move {
            Err::<Answer, _>(format!("{} {}", vault.n, "e".repeat(100_000)))
        })
        .await
        .expect("serve");
    let client = net.bus("client", |b| b).await;
    match guard("a failing request", client.request(&Vault { n: 7 })).await {
        Err(Error::Remote { message, .. }) => {
            assert!(message.len() <= 1024, "{} bytes", message.len());
            assert!(message.starts_with("7 eee"), "{message}");
            assert!(message.ends_with("(100002 bytes in all)"), "{message}");
        }
        other => panic!("expected the responder's error, got {other:?}"),
    }
    for bus in [client, responder] {
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_handler_error_comes_back_bounded_memory() {
    a_long_handler_error_comes_back_bounded(Net::memory()).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_handler_error_comes_back_bounded_kafka() {
    a_long_handler_error_comes_back_bounded(Net::kafka()).await;
}

// ------------------------------------- item 6: replies are checked

/// The client's limit: a reply larger than this is refused.
const CLIENT_LIMIT: usize = 1000;

/// What mallory answers each `Ask { mode }` with.
const MODES: &[&str] = &["too_large", "bad_header", "content_type", "panic", "good"];

/// Mallory answers every `Ask` itself, with the hostile reply its `mode`
/// names: on Kafka written with rdkafka, on memory through its accomplice.
async fn hostile_replier(net: &Net, mallory: &Bus) {
    let sender = mallory.clone();
    #[cfg(feature = "kafka")]
    let producer = match net {
        Net::Kafka(kafka) => Some(raw_producer(&kafka.bootstrap)),
        Net::Memory(_) => None,
    };
    #[cfg(not(feature = "kafka"))]
    let _ = net;
    mallory
        .group("mallory.read-ask")
        .subscribe_raw(Ask::NAME, move |request: RawMessage, _ctx: Context| {
            let sender = sender.clone();
            #[cfg(feature = "kafka")]
            let producer = producer.clone();
            async move {
                let ask: Ask = serde_json::from_slice(&request.payload).expect("an Ask");
                let (correlation_id, reply_to) = stolen(&request);
                let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(5 * CLIENT_LIMIT));
                #[cfg(feature = "kafka")]
                if let Some(producer) = &producer {
                    let correlation = ("correlation_id", correlation_id.as_str());
                    let json = ("content-type", "application/json");
                    let (payload, headers): (&[u8], Vec<(&str, &str)>) = match ask.mode.as_str() {
                        "too_large" => (big.as_bytes(), vec![correlation, json]),
                        "bad_header" => (
                            br#"{"text":"fine"}"#,
                            vec![correlation, json, ("ce_time", "yesterday")],
                        ),
                        "content_type" => (
                            br#"{"text":"fine"}"#,
                            vec![correlation, ("content-type", "application/x-postcard")],
                        ),
                        "panic" => (br#"{"text":"boom"}"#, vec![correlation, json]),
                        _ => (br#"{"text":"fine"}"#, vec![correlation, json]),
                    };
                    produce_reply(producer, &reply_to, payload, &headers).await;
                    return Ok::<(), Error>(());
                }
                let (topic, payload) = match ask.mode.as_str() {
                    "too_large" => (Echo::NAME, big.into_bytes()),
                    "content_type" => {
                        let echo = EchoPostcard {
                            text: "fine".to_owned(),
                        };
                        (
                            EchoPostcard::NAME,
                            postcard::to_stdvec(&echo).expect("postcard"),
                        )
                    }
                    "panic" => (Echo::NAME, br#"{"text":"boom"}"#.to_vec()),
                    _ => (Echo::NAME, br#"{"text":"fine"}"#.to_vec()),
                };
                let mut echo = RawMessage::new(topic, payload);
                let content_type = if topic == Echo::NAME {
                    "application/json"
                } else {
                    "application/x-postcard"
                };
                echo.headers.insert("content-type", content_type);
                echo.headers.insert("correlation_id", correlation_id);
                echo.headers.insert("reply_to", reply_to);
                sender.publish_raw(echo).await
            }
        })
        .await
        .expect("mallory reads the request topic");
}

/// Each hostile reply fails its request with an error naming the problem;
/// nothing panics, and the requester keeps working.
async fn hostile_replies_fail_their_request(net: Net, modes: &[&str]) {
    let client = net
        .bus("client", |b| b.max_message_bytes(CLIENT_LIMIT))
        .await;
    let mallory = net.bus("mallory", |b| b).await;
    accomplice(&mallory).await;
    hostile_replier(&net, &mallory).await;
    for mode in modes {
        let ask = Ask {
            mode: (*mode).to_owned(),
        };
        let outcome = guard(mode, client.request(&ask)).await;
        let error = match (*mode, outcome) {
            ("good", Ok(answer)) => {
                assert_eq!(answer.text, "fine");
                continue;
            }
            (_, Ok(answer)) => panic!(
                "{mode}: the hostile reply was taken: a text of {} bytes",
                answer.text.len()
            ),
            (_, Err(error)) => error,
        };
        let text = error.to_string();
        println!("{mode}: {text}");
        match *mode {
            "too_large" => match &error {
                Error::TooLarge { topic, size, limit } => {
                    assert!(topic.starts_with("topicbus.reply.client."), "{topic}");
                    assert!(*size > CLIENT_LIMIT, "{size}");
                    assert_eq!(*limit, CLIENT_LIMIT);
                }
                other => panic!("{mode}: {other:?}"),
            },
            "bad_header" => {
                assert_eq!(error.kind(), ErrorKind::Codec, "{text}");
                assert!(text.contains("ce_time") && text.contains("reply"), "{text}");
            }
            "content_type" => {
                assert_eq!(error.kind(), ErrorKind::Codec, "{text}");
                assert!(
                    text.contains("content-type `application/x-postcard`"),
                    "{text}"
                );
            }
            "panic" => {
                assert_eq!(error.kind(), ErrorKind::Codec, "{text}");
                assert!(
                    text.contains("panicked") && text.contains("deliberate panic decoding"),
                    "{text}"
                );
            }
            other => panic!("{other}: {error:?}"),
        }
    }
    let stats = client.stats();
    assert_eq!((stats.pending_requests, stats.late_replies), (0, 0));
    for bus in [client, mallory] {
        guard("shutdown", bus.shutdown()).await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_replies_fail_their_request_memory() {
    // The memory transport writes every header itself: no unreadable ones.
    let modes: Vec<&str> = MODES
        .iter()
        .copied()
        .filter(|m| *m != "bad_header")
        .collect();
    hostile_replies_fail_their_request(Net::memory_codec(), &modes).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_replies_fail_their_request_kafka() {
    hostile_replies_fail_their_request(Net::kafka(), MODES).await;
}

// ---------------------------------------------------------- rdkafka

#[cfg(feature = "kafka")]
fn raw_producer(brokers: &str) -> rdkafka::producer::FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .expect("a plain producer")
}

/// Writes a reply to partition 0 of `topic` (where a reply topic is read)
/// and waits for its acknowledgement.
#[cfg(feature = "kafka")]
async fn produce_reply(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    payload: &[u8],
    headers: &[(&str, &str)],
) {
    use rdkafka::message::{Header, OwnedHeaders};
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        });
    let record = rdkafka::producer::FutureRecord::<(), [u8]>::to(topic)
        .partition(0)
        .payload(payload)
        .headers(headers);
    guard("produce a reply", producer.send(record, HANG))
        .await
        .map_err(|(e, _)| e)
        .expect("the reply is acknowledged");
}
