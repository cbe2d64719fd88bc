//! The event log: published and delivered messages as JSON lines, replay
//! into a fresh bus with the original headers, a line cut short by a crash,
//! and JSON versus binary payloads.

#[path = "support/temp_dir.rs"]
mod temp_dir;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use topicbus::memory::{MemoryBroker, MemoryConfig};
use topicbus::{Bus, BusConfig, Context, EventLog, Headers, Topic};

use temp_dir::TempDir;

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "log.test.chunk", key = chunk_id)]
struct Chunk {
    chunk_id: String,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "log.test.vector", codec = "bincode", key = id)]
struct Vector {
    id: u64,
    values: Vec<f32>,
}

/// What a subscriber saw of one message.
#[derive(Debug)]
struct Seen<T> {
    value: T,
    id: String,
    group: String,
    tenant: Option<String>,
}

async fn recording<T: Topic + Clone + Send + Sync + 'static>(
    bus: &Bus,
) -> mpsc::UnboundedReceiver<Seen<T>> {
    let (tx, rx) = mpsc::unbounded_channel();
    bus.group("event_log.t")
        .subscribe(move |value: T, ctx: Context| {
            let tx = tx.clone();
            async move {
                tx.send(Seen {
                    value,
                    id: ctx.id().to_string(),
                    group: ctx.group().to_owned(),
                    tenant: ctx.headers().get_str("tenant").map(str::to_owned),
                })
                .map_err(|e| e.to_string())
            }
        })
        .await
        .expect("subscribe");
    rx
}

/// A bus whose topics have one partition, so that messages of different
/// keys are handled in the order they were published and a test can see a
/// replay's file order. With several partitions only the order per key is
/// promised: two keys on two partitions are handled by two tasks, in either
/// order on a multi-thread runtime.
fn one_partition_bus() -> Bus {
    Bus::builder()
        .memory(MemoryBroker::new(MemoryConfig::default().partitions(1)))
        .build()
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(HANG, rx.recv())
        .await
        .expect("hang guard")
        .expect("a message")
}

fn tenant(name: &str) -> Headers {
    let mut headers = Headers::new();
    headers.insert("tenant", name.to_owned());
    headers
}

fn chunk(i: usize) -> Chunk {
    Chunk {
        chunk_id: format!("c-{i}"),
        text: format!("text {i}"),
    }
}

/// Every line of the log, parsed.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("the log exists")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn find<'a>(lines: &'a [Value], direction: &str, id: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["direction"] == direction && line["id"] == id)
        .unwrap_or_else(|| panic!("no {direction} line for {id} in {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_and_delivered_messages_are_logged_with_their_fields() {
    let dir = TempDir::new("log-fields");
    let path = dir.path().join("events.jsonl");
    let bus = Bus::builder()
        .service("search")
        .event_log(EventLog::open(&path).expect("open"))
        .build();
    let mut seen = recording::<Chunk>(&bus).await;
    bus.publish_with(&chunk(1), tenant("acme"))
        .await
        .expect("publish");
    let delivered = next(&mut seen).await;
    bus.shutdown().await.expect("shutdown syncs the log");

    let lines = lines(&path);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let published = find(&lines, "published", &delivered.id);
    assert_eq!(published["topic"], "log.test.chunk");
    assert_eq!(published["key"], "c-1");
    assert_eq!(
        published["payload"],
        serde_json::json!({"chunk_id": "c-1", "text": "text 1"})
    );
    let headers = &published["headers"];
    assert_eq!(headers["tenant"], "acme");
    assert_eq!(headers["ce_id"], delivered.id.as_str());
    assert_eq!(headers["ce_source"], "search");
    assert_eq!(headers["ce_type"], "log.test.chunk");
    assert_eq!(headers["content-type"], "application/json");
    let time = published["time"].as_str().expect("a time");
    humantime::parse_rfc3339(time).expect("RFC 3339");
    assert!(published.get("group").is_none());

    let handed = find(&lines, "delivered", &delivered.id);
    assert_eq!(handed["group"], delivered.group.as_str());
    assert_eq!(handed["topic"], "log.test.chunk");
    assert_eq!(handed["payload"], published["payload"]);
    assert_eq!(handed["headers"]["tenant"], "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_republishes_into_a_fresh_bus_with_the_original_headers() {
    let dir = TempDir::new("log-replay");
    let path = dir.path().join("events.jsonl");
    let original = Bus::builder()
        .event_log(EventLog::open(&path).expect("open"))
        .build();
    let mut seen = recording::<Chunk>(&original).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        original
            .publish_with(&chunk(i), tenant(&format!("tenant-{i}")))
            .await
            .expect("publish");
        ids.push(next(&mut seen).await.id);
    }
    original.shutdown().await.expect("shutdown");

    let fresh = one_partition_bus();
    let mut replayed = recording::<Chunk>(&fresh).await;
    let summary = fresh
        .replay_event_log(&path, UNIX_EPOCH)
        .await
        .expect("replay");
    assert_eq!(summary.published, 3, "delivered lines are not replayed");
    assert_eq!(summary.skipped, 0);
    for (i, id) in ids.iter().enumerate() {
        let seen = next(&mut replayed).await;
        assert_eq!(seen.value, chunk(i));
        assert_eq!(&seen.id, id, "the original ce_id");
        assert_eq!(seen.tenant, Some(format!("tenant-{i}")));
    }
    fresh.shutdown().await.expect("shutdown");
}

/// A published line of topic `log.test.chunk` at `time`, as another tool
/// could write it.
fn handwritten_line(time: &str, i: usize) -> String {
    format!(
        r#"{{"direction":"published","time":"{time}","topic":"log.test.chunk","id":"hand-{i}","key":"c-{i}","headers":{{"content-type":"application/json","tenant":"hand"}},"payload":{{"chunk_id":"c-{i}","text":"text {i}"}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_takes_the_lines_at_or_after_since() {
    let dir = TempDir::new("log-since");
    let path = dir.path().join("events.jsonl");
    let log = [
        handwritten_line("2020-01-01T00:00:00Z", 0),
        handwritten_line("2025-01-01T00:00:00.000001Z", 1),
        handwritten_line("2030-01-01T00:00:00Z", 2),
    ]
    .join("\n")
        + "\n";
    std::fs::write(&path, log).expect("write");
    let since = humantime::parse_rfc3339("2025-01-01T00:00:00.000001Z").expect("time");

    let fresh = one_partition_bus();
    let mut replayed = recording::<Chunk>(&fresh).await;
    let summary = fresh.replay_event_log(&path, since).await.expect("replay");
    assert_eq!(summary.published, 2);
    for i in 1..3 {
        let seen = next(&mut replayed).await;
        assert_eq!(seen.value, chunk(i));
        assert_eq!(seen.id, format!("hand-{i}"));
        assert_eq!(seen.tenant.as_deref(), Some("hand"));
    }
    fresh.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_skipped_and_the_log_goes_on_after_it() {
    let dir = TempDir::new("log-torn");
    let path = dir.path().join("events.jsonl");
    let bus = Bus::builder()
        .event_log(EventLog::open(&path).expect("open"))
        .build();
    for i in 0..2 {
        bus.publish(&chunk(i)).await.expect("publish");
    }
    bus.shutdown().await.expect("shutdown");

    // A crash in the middle of writing a third line.
    let third = handwritten_line("2030-01-01T00:00:00Z", 2);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open for append");
    file.write_all(&third.as_bytes()[..third.len() / 2])
        .expect("append");
    drop(file);

    let fresh = Bus::memory();
    let summary = fresh
        .replay_event_log(&path, UNIX_EPOCH)
        .await
        .expect("a torn line is not a failure");
    assert_eq!((summary.published, summary.skipped), (2, 1));

    // Opening the log again starts new lines after the torn one.
    let restarted = Bus::builder()
        .event_log(EventLog::open(&path).expect("reopen"))
        .build();
    restarted.publish(&chunk(3)).await.expect("publish");
    restarted.shutdown().await.expect("shutdown");
    let summary = fresh
        .replay_event_log(&path, UNIX_EPOCH)
        .await
        .expect("replay");
    assert_eq!((summary.published, summary.skipped), (3, 1));
    fresh.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_payloads_are_logged_as_json_and_binary_ones_as_base64() {
    let dir = TempDir::new("log-codecs");
    let path = dir.path().join("events.jsonl");
    let bus = Bus::builder()
        .event_log(EventLog::open(&path).expect("open"))
        .build();
    let vector = Vector {
        id: 7,
        values: vec![0.5, -1.25],
    };
    bus.publish(&chunk(1)).await.expect("publish json");
    bus.publish(&vector).await.expect("publish bincode");
    bus.shutdown().await.expect("shutdown");

    let lines = lines(&path);
    let json = lines
        .iter()
        .find(|l| l["topic"] == "log.test.chunk")
        .expect("json line");
    assert_eq!(json["payload"]["chunk_id"], "c-1");
    assert!(json.get("payload_base64").is_none());

    let binary = lines
        .iter()
        .find(|l| l["topic"] == "log.test.vector")
        .expect("bincode line");
    assert!(binary.get("payload").is_none());
    assert_eq!(binary["headers"]["content-type"], "application/x-bincode");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(binary["payload_base64"].as_str().expect("base64 text"))
        .expect("base64");
    let expected =
        bincode::serde::encode_to_vec(&vector, bincode::config::standard()).expect("encode");
    assert_eq!(bytes, expected);
    assert_eq!(binary["key"], "7");

    // Both replay to typed subscribers from their exact bytes.
    let fresh = Bus::memory();
    let mut chunks = recording::<Chunk>(&fresh).await;
    let mut vectors = recording::<Vector>(&fresh).await;
    let summary = fresh
        .replay_event_log(&path, UNIX_EPOCH)
        .await
        .expect("replay");
    assert_eq!(summary.published, 2);
    assert_eq!(next(&mut chunks).await.value, chunk(1));
    assert_eq!(next(&mut vectors).await.value, vector);
    fresh.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_event_log_settings_turn_the_log_on() {
    let dir = TempDir::new("log-config");
    let path = dir.path().join("events.jsonl");
    let config = BusConfig::loader()
        .env_prefix("RICE")
        .env_vars([
            ("RICE_EVENT_LOG_ENABLED", "true"),
            ("RICE_EVENT_LOG_PATH", path.to_str().expect("utf-8 path")),
        ])
        .load()
        .expect("loads");
    let bus = Bus::connect(config).await.expect("connect");
    bus.publish(&chunk(1)).await.expect("publish");
    bus.shutdown().await.expect("shutdown");
    let lines = lines(&path);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["direction"], "published");
}

#[tokio::test]
async fn an_unwritable_log_path_fails_at_start_naming_it() {
    let dir = TempDir::new("log-unwritable");
    let path = dir.path().join("no-such-dir").join("events.jsonl");
    let mut config = BusConfig::default();
    config.event_log_enabled = true;
    config.event_log_path = Some(path.clone());
    let error = Bus::connect(config).await.expect_err("cannot open");
    match error {
        topicbus::Error::Config { key, message } => {
            assert_eq!(key, "event_log_path");
            assert!(message.contains("no-such-dir"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test]
async fn replay_of_a_missing_file_names_it() {
    let dir = TempDir::new("log-missing");
    let bus = Bus::memory();
    let missing = dir.path().join("missing.jsonl");
    let error = bus
        .replay_event_log(&missing, SystemTime::now())
        .await
        .expect_err("no file");
    assert!(error.to_string().contains("missing.jsonl"), "{error}");
    bus.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_line_bound_is_logged_as_a_summary_that_replay_skips() {
    let dir = TempDir::new("log-long-line");
    let path = dir.path().join("events.jsonl");
    let log = EventLog::builder(&path)
        .max_line_bytes(4_096)
        .open()
        .expect("open");
    let bus = one_partition_bus_with(log);
    let mut seen = recording::<Chunk>(&bus).await;
    let long = Chunk {
        chunk_id: "c-long".into(),
        text: "x".repeat(10_000),
    };
    bus.publish(&chunk(1)).await.expect("publish");
    bus.publish(&long).await.expect("publish");
    next(&mut seen).await;
    let delivered = next(&mut seen).await;
    assert_eq!(delivered.value, long, "the message itself is whole");
    bus.shutdown().await.expect("shutdown");

    let text = std::fs::read_to_string(&path).expect("the log exists");
    assert!(
        text.lines().all(|line| line.len() < 4_096),
        "no line over the bound"
    );
    let lines = lines(&path);
    for direction in ["published", "delivered"] {
        let summary = find(&lines, direction, &delivered.id);
        let omitted = summary["omitted_bytes"].as_u64().expect("omitted_bytes");
        assert!(omitted > 10_000, "{summary}");
        assert_eq!(summary["topic"], "log.test.chunk");
        assert!(summary.get("payload").is_none(), "{summary}");
        assert!(summary.get("headers").is_none(), "{summary}");
    }

    let fresh = Bus::memory();
    let summary = fresh
        .replay_event_log(&path, UNIX_EPOCH)
        .await
        .expect("replay");
    assert_eq!((summary.published, summary.skipped), (1, 1));
    fresh.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_size_bound_the_file_is_renamed_and_a_new_one_started() {
    let dir = TempDir::new("log-rotate");
    let path = dir.path().join("events.jsonl");
    let previous = dir.path().join("events.jsonl.1");
    const MAX: u64 = 2_000;
    let log = EventLog::builder(&path)
        .max_file_bytes(MAX)
        .open()
        .expect("open");
    let bus = Bus::builder().event_log(log).build();
    for i in 0..30 {
        bus.publish(&chunk(i)).await.expect("publish");
    }
    bus.shutdown().await.expect("shutdown");

    for file in [&path, &previous] {
        let size = std::fs::metadata(file).expect("both files exist").len();
        assert!(0 < size && size <= MAX, "{}: {size} bytes", file.display());
    }
    // The newest lines are in the file, the ones just before in `.1`, with
    // no line lost or cut between them.
    let (older, newer) = (lines(&previous), lines(&path));
    let numbers: Vec<u64> = older
        .iter()
        .chain(&newer)
        .map(|line| {
            let text = line["payload"]["text"].as_str().expect("a chunk");
            text["text ".len()..].parse().expect("its number")
        })
        .collect();
    let first = numbers[0];
    assert_eq!(numbers, (first..30).collect::<Vec<_>>());
    assert!(first > 0, "the oldest lines went with the older `.1`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_bound_smaller_than_a_line_loses_nothing() {
    let dir = TempDir::new("log-small-queue");
    let path = dir.path().join("events.jsonl");
    let log = EventLog::builder(&path)
        .max_queue_bytes(64)
        .open()
        .expect("open");
    let bus = Bus::builder().event_log(log).build();
    for i in 0..200 {
        bus.publish(&chunk(i)).await.expect("publish");
    }
    bus.shutdown().await.expect("shutdown");
    assert_eq!(lines(&path).len(), 200);
}

fn one_partition_bus_with(log: EventLog) -> Bus {
    Bus::builder()
        .event_log(log)
        .memory(MemoryBroker::new(MemoryConfig::default().partitions(1)))
        .build()
}
