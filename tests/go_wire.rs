//! The Go bus's wire, on librdkafka's mock cluster: records written byte for
//! byte as the Go bus's `encoding/json` and Sarama publisher write them are
//! answered with typed replies on `{topic}.response`, replies a Go
//! responder writes on `{topic}.response` reach the `bus.request` that
//! asked, and topicbus's own envelopes decode into the Go bus's `Event`
//! struct.
#![cfg(feature = "kafka")]

#[path = "support/mock_kafka.rs"]
mod mock_kafka;
#[path = "support/raw_kafka.rs"]
mod raw_kafka;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, Context, RawMessage, ReplyKey, Topic};

use mock_kafka::{Fault, MockKafka};
use raw_kafka::{read, reader, topics};

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.request", response = EmbedResponse)]
struct EmbedRequest {
    texts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "ml.embed.response")]
struct EmbedResponse {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created")]
struct ChunkCreated {
    chunk_id: String,
    text: String,
}

/// The Go bus's `Event` (internal/bus/bus.go), field for field with Go's
/// types: what Go's `json.Unmarshal` accepts into it, this accepts.
#[derive(Debug, Deserialize)]
struct GoEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    source: String,
    timestamp: i64,
    #[serde(default)]
    correlation_id: String,
    payload: serde_json::Value,
}

async fn go_bus(brokers: &str, service: &str) -> Bus {
    go_bus_with(brokers, Bus::builder().service(service)).await
}

async fn go_bus_with(brokers: &str, builder: topicbus::BusBuilder) -> Bus {
    let config = KafkaConfig::new(brokers)
        .provision_topics(false)
        .go_envelope(true);
    builder
        .kafka(mock_kafka::test_settings(config))
        .connect()
        .await
        .expect("connect")
}

/// A request exactly as the Go bus wrote it: `encoding/json` output of its
/// `Event` (declaration order, no spaces, `<>&` escaped, `int64` time) as
/// the value, the event id as the key, and `correlation_id` as the only
/// header.
fn go_request(id: &str, timestamp: i64, text: &str) -> (String, Vec<u8>) {
    let value = format!(
        r#"{{"id":"{id}","type":"ml.embed.request","source":"search","timestamp":{timestamp},"correlation_id":"{id}","payload":{{"texts":["{text}"]}}}}"#
    );
    (id.to_owned(), value.into_bytes())
}

/// Go requests with timestamps in nanoseconds, seconds, milliseconds and
/// 0 reach a typed handler with the time they name, and each gets its typed
/// reply on `{topic}.response` in the Go envelope, with the request's
/// correlation id; the topic exists before the first request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_requests_get_typed_replies_on_the_response_topic() {
    let kafka = MockKafka::start(1);
    let responder = go_bus(&kafka.bootstrap, "embedder").await;
    let times: Arc<Mutex<BTreeMap<String, SystemTime>>> = Arc::default();
    let seen = Arc::clone(&times);
    responder
        .group("embedder")
        .serve(move |request: EmbedRequest, ctx: Context| {
            seen.lock()
                .expect("poisoned")
                .insert(request.texts[0].clone(), ctx.time());
            let embeddings = request.texts.iter().map(|t| vec![t.len() as f32]).collect();
            futures::future::ready(Ok::<_, Infallible>(EmbedResponse { embeddings }))
        })
        .await
        .expect("serve");
    assert!(
        topics(&kafka.bootstrap).contains(&"ml.embed.request.response".to_owned()),
        "the responder creates the topic Go requesters read"
    );

    let go_reader = reader(&kafka.bootstrap, "ml.embed.request.response");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .expect("producer");
    let at = 1_796_464_820; // 2026-12-05T10:00:20Z
    let requests = [
        ("nanos", at * 1_000_000_000 + 617_000_000, Some(617)),
        ("seconds", at, Some(0)),
        ("millis", at * 1_000 + 250, Some(250)),
        ("zero", 0, None),
    ];
    let mut sent = BTreeMap::new();
    for (i, (text, timestamp, _)) in requests.iter().enumerate() {
        let id = format!("go-{i}-{}", uuid::Uuid::new_v4());
        let (key, value) = go_request(&id, *timestamp, &format!("{text} <&>"));
        let headers = OwnedHeaders::new().insert(Header {
            key: "correlation_id",
            value: Some(id.as_bytes()),
        });
        producer
            .send(
                BaseRecord::to("ml.embed.request")
                    .key(&key)
                    .payload(&value)
                    .headers(headers),
            )
            .map_err(|(error, _)| error)
            .expect("send");
        sent.insert(id, format!("{text} <&>"));
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let replies = tokio::task::spawn_blocking(move || read(&go_reader, 4))
        .await
        .expect("reader");
    for (key, value, headers) in replies {
        let reply: GoEvent = serde_json::from_slice(&value).unwrap_or_else(|e| {
            panic!("not a Go event ({e}): {}", String::from_utf8_lossy(&value))
        });
        let text = sent
            .get(&reply.correlation_id)
            .unwrap_or_else(|| panic!("reply to an unknown request: {reply:?}"));
        assert_eq!(
            headers.get("correlation_id").map(Vec::as_slice),
            Some(reply.correlation_id.as_bytes())
        );
        assert_eq!(
            key.as_deref(),
            Some(reply.correlation_id.as_bytes()),
            "keyed as the request"
        );
        assert_eq!(reply.source, "embedder");
        assert_eq!(reply.kind, "ml.embed.request.response");
        assert!(
            reply.timestamp > at * 1_000_000_000,
            "nanoseconds: {}",
            reply.timestamp
        );
        assert!(!reply.id.is_empty());
        let typed: EmbedResponse = serde_json::from_value(reply.payload).expect("typed reply");
        assert_eq!(typed.embeddings, vec![vec![text.len() as f32]]);
    }
    let times = times.lock().expect("poisoned").clone();
    for (text, _, millis) in requests {
        let time = times[&format!("{text} <&>")];
        if let Some(millis) = millis {
            let expected = SystemTime::UNIX_EPOCH
                + Duration::from_secs(at as u64)
                + Duration::from_millis(millis);
            assert_eq!(time, expected, "{text}");
        }
    }
    responder.shutdown().await.expect("shutdown");
}

/// What the Go responder below answers to `texts`: each text's characters
/// as numbers, so that every request has a reply of its own.
fn embed(texts: &[String]) -> Vec<Vec<f32>> {
    texts
        .iter()
        .map(|text| text.chars().map(|c| c as u32 as f32).collect())
        .collect()
}

/// A responder as the Go bus's services wrote them, on a thread: reads
/// `count` requests of `ml.embed.request` from the start (any `reply_to` is
/// ignored: the Go bus knew none) and answers each on
/// `ml.embed.request.response`, as `encoding/json` writes the `Event`, keyed
/// by the reply's event id, with the request's `correlation_id` in the
/// header and the envelope. Returns the correlation ids it answered.
fn go_responder(brokers: &str, count: usize) -> std::thread::JoinHandle<Vec<String>> {
    let requests = reader(brokers, EmbedRequest::NAME);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    std::thread::spawn(move || {
        let mut answered = Vec::new();
        while answered.len() < count {
            let (_, value, _) = read(&requests, 1).pop().expect("a request");
            let request: GoEvent = serde_json::from_slice(&value).expect("a Go event");
            let texts: EmbedRequest =
                serde_json::from_value(request.payload).expect("an embed request");
            let payload = serde_json::to_string(&EmbedResponse {
                embeddings: embed(&texts.texts),
            })
            .expect("json");
            let id = format!("{}-response", request.id);
            let correlation = request.correlation_id;
            let value = format!(
                r#"{{"id":"{id}","type":"ml.embed.request.response","source":"embedder-go","timestamp":1796464820617000000,"correlation_id":"{correlation}","payload":{payload}}}"#
            );
            let headers = OwnedHeaders::new().insert(Header {
                key: "correlation_id",
                value: Some(correlation.as_bytes()),
            });
            producer
                .send(
                    BaseRecord::to("ml.embed.request.response")
                        .key(&id)
                        .payload(&value)
                        .headers(headers),
                )
                .map_err(|(error, _)| error)
                .expect("send");
            answered.push(correlation);
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
        answered
    })
}

/// Creates the request topic and `{topic}.response` with three partitions
/// each, as the Go peer creates `{topic}.response`.
fn create_go_topics(kafka: &MockKafka) {
    for topic in [EmbedRequest::NAME, "ml.embed.request.response"] {
        kafka.apply(Fault::CreateTopic(topic.to_owned(), 3));
    }
}

/// Two instances of a requester in Go-envelope mode ask at once; a Go
/// responder answers every request on `{topic}.response` only. Each
/// instance's `bus.request` gets the replies to its own requests, each
/// once, with the value computed for it, and counts the other instance's
/// replies, which it reads too, as foreign (not late, not rejected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_replies_on_the_response_topic_reach_the_instance_that_asked() {
    const EACH: usize = 25;
    let kafka = MockKafka::start(1);
    create_go_topics(&kafka);
    let first = go_bus(&kafka.bootstrap, "search").await;
    let second = go_bus(&kafka.bootstrap, "search").await;
    let responder = go_responder(&kafka.bootstrap, 2 * EACH + 2);

    // An instance starts reading `{topic}.response` with its first request.
    // One request each, one after the other, so that both read the whole
    // batch below: the second's warm-up reply is foreign to the first, the
    // first's came before the second read anything.
    for (bus, name) in [(&first, "first"), (&second, "second")] {
        let texts = vec![format!("{name} warm-up")];
        let reply = bus
            .request(&EmbedRequest {
                texts: texts.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: warm-up: {e}"));
        assert_eq!(reply.embeddings, embed(&texts), "{name}: warm-up");
    }

    let ask = |bus: &Bus, name: &'static str| {
        let bus = bus.clone();
        async move {
            let calls = (0..EACH).map(|i| {
                let bus = bus.clone();
                async move {
                    let texts = vec![format!("{name} {i}"), format!("{i} <&> ü")];
                    let reply = bus
                        .request(&EmbedRequest {
                            texts: texts.clone(),
                        })
                        .await;
                    (texts, reply)
                }
            });
            futures::future::join_all(calls).await
        }
    };
    let (first_got, second_got) = tokio::join!(ask(&first, "first"), ask(&second, "second"));
    let answered = tokio::task::spawn_blocking(move || responder.join().expect("responder"))
        .await
        .expect("join");
    assert_eq!(answered.len(), 2 * EACH + 2);
    for (name, got) in [("first", first_got), ("second", second_got)] {
        for (texts, reply) in got {
            let reply = reply.unwrap_or_else(|e| panic!("{name}: {texts:?}: {e}"));
            assert_eq!(reply.embeddings, embed(&texts), "{name}: {texts:?}");
        }
    }

    for (name, bus, foreign) in [
        ("first", &first, EACH as u64 + 1),
        ("second", &second, EACH as u64),
    ] {
        tokio::time::timeout(HANG, async {
            while bus.stats().foreign_replies < foreign {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: hang guard: {:?}", bus.stats()));
        let stats = bus.stats();
        assert_eq!(
            (
                stats.pending_requests,
                stats.late_replies,
                stats.rejected_replies,
                stats.foreign_replies
            ),
            (0, 0, 0, foreign),
            "{name}: the other instance's replies are foreign, nothing else is left over"
        );
    }
    first.shutdown().await.expect("shutdown");
    second.shutdown().await.expect("shutdown");
}

/// With a reply key, a requester takes only replies with a valid MAC, and
/// the Go bus's replies carry none: a Go reply on `{topic}.response` to a
/// request of this instance is dropped and counted as rejected, and the
/// request keeps waiting (until its timeout, or here the shutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_reply_key_a_go_reply_without_a_mac_is_rejected() {
    let kafka = MockKafka::start(1);
    create_go_topics(&kafka);
    let key = ReplyKey::new([7u8; 32]).expect("key");
    let bus = go_bus_with(
        &kafka.bootstrap,
        Bus::builder().service("search").reply_key(key),
    )
    .await;
    let responder = go_responder(&kafka.bootstrap, 1);
    let asking = bus.clone();
    let call = tokio::spawn(async move {
        asking
            .request(&EmbedRequest {
                texts: vec!["unsigned".to_owned()],
            })
            .await
    });
    tokio::task::spawn_blocking(move || responder.join().expect("responder"))
        .await
        .expect("join");
    tokio::time::timeout(HANG, async {
        while bus.stats().rejected_replies < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("hang guard: {:?}", bus.stats()));
    let stats = bus.stats();
    assert_eq!(
        (
            stats.rejected_replies,
            stats.pending_requests,
            stats.foreign_replies
        ),
        (1, 1, 0),
        "the reply was rejected and the request still waits"
    );
    bus.shutdown().await.expect("shutdown");
    let ended = call.await.expect("request task");
    assert!(matches!(ended, Err(topicbus::Error::Closed)), "{ended:?}");
}

/// An event topicbus publishes in envelope mode decodes into the Go bus's
/// `Event`, with an `int64` timestamp in nanoseconds, and is keyed by its
/// event id as the Go bus's publisher keyed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topicbus_events_decode_into_the_go_struct() {
    let kafka = MockKafka::start(1);
    let bus = go_bus(&kafka.bootstrap, "indexer").await;
    bus.ensure_topic::<ChunkCreated>().await.expect("topic");
    let go_reader = reader(&kafka.bootstrap, ChunkCreated::NAME);
    let before = SystemTime::now();
    bus.publish(&ChunkCreated {
        chunk_id: "c-1".to_owned(),
        text: "a <b> & c".to_owned(),
    })
    .await
    .expect("publish");
    let after = SystemTime::now();
    let records = tokio::task::spawn_blocking(move || read(&go_reader, 1))
        .await
        .expect("reader");
    let (key, value, _) = &records[0];
    let event: GoEvent = serde_json::from_slice(value).expect("the Go struct");
    assert_eq!(
        key.as_deref(),
        Some(event.id.as_bytes()),
        "keyed by event id"
    );
    assert_eq!(event.kind, ChunkCreated::NAME);
    assert_eq!(event.source, "indexer");
    assert_eq!(event.correlation_id, "");
    let nanos = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as i64;
    assert!(
        (nanos(before)..=nanos(after)).contains(&event.timestamp),
        "timestamp {} is the publish time in nanoseconds",
        event.timestamp
    );
    let payload: ChunkCreated = serde_json::from_value(event.payload).expect("payload");
    assert_eq!(payload.text, "a <b> & c");
    bus.shutdown().await.expect("shutdown");
}

/// Reading a dead-letter topic creates no dead-letter topic of its own
/// (`x.dlq.dlq`); one is made only when something fails there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_reader_creates_no_dead_letter_topic_of_its_own() {
    let kafka = MockKafka::start(1);
    let config = KafkaConfig::new(&kafka.bootstrap).provision_topics(false);
    let bus = Bus::builder()
        .service("ops")
        .kafka(mock_kafka::test_settings(config))
        .connect()
        .await
        .expect("connect");
    let failed: Arc<Mutex<u32>> = Arc::default();
    let count = Arc::clone(&failed);
    bus.group("ops.dead-letters")
        .subscribe_raw("billing.invoices.dlq", move |_: RawMessage, _| {
            *count.lock().expect("poisoned") += 1;
            futures::future::ready(Err::<(), _>("cannot handle dead letters either"))
        })
        .retries(0)
        .await
        .expect("subscribe");
    let names = topics(&kafka.bootstrap);
    assert!(
        names.contains(&"billing.invoices.dlq".to_owned()),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with(".dlq.dlq")), "{names:?}");

    // What fails there is still dead-lettered, nothing lost.
    bus.publish_raw(RawMessage::new("billing.invoices.dlq", b"{}".to_vec()))
        .await
        .expect("publish a dead letter");
    tokio::time::timeout(HANG, async {
        while !topics(&kafka.bootstrap).contains(&"billing.invoices.dlq.dlq".to_owned()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the failure was dead-lettered to billing.invoices.dlq.dlq");
    let second = reader(&kafka.bootstrap, "billing.invoices.dlq.dlq");
    let records = tokio::task::spawn_blocking(move || read(&second, 1))
        .await
        .expect("reader");
    assert_eq!(records[0].1, b"{}");
    assert_eq!(*failed.lock().expect("poisoned"), 1);
    bus.shutdown().await.expect("shutdown");
}
