//! topicbus with Kafka clients it did not write, on a real broker: a Go
//! program on Sarama that reads and writes records as the Go bus did
//! (`tests/peers/go`), and a Python script on confluent-kafka that knows
//! only docs/wire.md (`tests/peers/python`). Each test drives one direction with
//! the peer as a child process and counts what was sent, handled, lost and
//! handled twice; each failure names the direction and the message.
//!
//! Ignored unless asked for, with the broker in `TOPICBUS_KAFKA_BROKERS`;
//! needs `go` (the peer is built into `target/tmp`) and `python3` (a
//! virtualenv is made under `~/.cache/topicbus` by
//! `tests/peers/python/venv.sh`). docs/peers.md has the details.
//!
//! ```text
//! TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start) \
//!     cargo test --all-features --test peers -- --ignored --nocapture
//! ```
#![cfg(feature = "kafka")]

#[path = "support/reaper.rs"]
mod reaper;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use topicbus::kafka::KafkaConfig;
use topicbus::{Bus, Context, RawMessage, Topic};

use reaper::Reaped;

/// Hang guard only; nothing asserts on time.
const HANG: Duration = Duration::from_secs(120);
/// Messages sent in each direction.
const COUNT: usize = 300;

// The Go bus's payloads (field names as its services wrote them).

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peers.go.chunk.created")]
struct GoChunk {
    chunk_id: String,
    text: String,
    seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peers.go.embed.request", response = GoEmbedding)]
struct GoEmbed {
    texts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peers.go.embed.response")]
struct GoEmbedding {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peers.go.rerank.request", response = GoRanked)]
struct GoRerank {
    query: String,
    documents: Vec<String>,
    top_k: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "peers.go.rerank.response")]
struct GoRanked {
    results: Vec<GoRank>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GoRank {
    index: usize,
    score: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peers.go.store.created")]
struct GoStore {
    name: String,
    seq: i64,
    size_bytes: i64,
}

// The Python peer's payloads.

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peers.python.events")]
struct PyEvent {
    seq: u64,
    text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peers.python.search.request", response = PyHits)]
struct PySearch {
    query: String,
    limit: usize,
    fail: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peers.python.search.response")]
struct PyHits {
    hits: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peers.python.notices")]
struct PyNotice {
    seq: u64,
    title: String,
    tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "peers.python.lookup.request", response = PyLookedUp)]
struct PyLookup {
    key: String,
    seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "peers.python.lookup.response")]
struct PyLookedUp {
    key: String,
    seq: u64,
    value: String,
}

/// What a peer reports at its end (`summary {json}` on its stdout).
#[derive(Debug, Deserialize)]
struct Summary<R = IgnoredAny> {
    direction: String,
    sent: usize,
    handled: usize,
    duplicates: usize,
    unmatched: usize,
    #[serde(default)]
    with_reply_to: usize,
    #[serde(default)]
    failures: Option<Vec<String>>,
    #[serde(default = "Vec::new")]
    records: Vec<R>,
}

/// An event the Go peer sent.
#[derive(Debug, Deserialize)]
struct GoRecord {
    id: String,
    seq: u64,
    timestamp: i64,
}

/// An event the Python peer sent, with the instant its `ce_time` names.
#[derive(Debug, Deserialize)]
struct PyRecord {
    id: String,
    seq: u64,
    ce_time: String,
    content_type: Option<String>,
    time_nanos: u64,
}

fn brokers() -> String {
    std::env::var("TOPICBUS_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
        .expect("set TOPICBUS_KAFKA_BROKERS to a broker: $(scripts/kafka.sh start)")
}

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// The Go peer, built once per test run (`go build` reuses its cache).
fn go_peer() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("peers/gopeer");
        let output = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(peers_dir().join("go"))
            .output()
            .expect("cannot run `go`: install Go 1.26 (docs/peers.md)");
        assert!(
            output.status.success(),
            "go build of tests/peers/go failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        binary
    })
}

/// The Python of the peer's virtualenv (made by venv.sh when missing).
fn python() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let output = Command::new(peers_dir().join("python/venv.sh"))
            .output()
            .expect("cannot run tests/peers/python/venv.sh");
        assert!(
            output.status.success(),
            "tests/peers/python/venv.sh failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).expect("a path").trim())
    })
}

/// A peer process: its stdout lines come through a channel; its stderr
/// goes to the test's.
struct Peer {
    name: String,
    child: Reaped,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn go(args: &[&str]) -> Peer {
        Peer::spawn(
            format!("go {}", args[0]),
            Command::new(go_peer()).args(args),
        )
    }

    fn python(args: &[&str]) -> Peer {
        let script = peers_dir().join("python/peer.py");
        let mut command = Command::new(python());
        command.arg(script).args(args);
        Peer::spawn(format!("python {}", args[0]), &mut command)
    }

    fn spawn(name: String, command: &mut Command) -> Peer {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {name} peer: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            name,
            child: Reaped(child),
            lines,
        }
    }

    /// Waits for the peer's next line on stdout.
    async fn line(&mut self) -> Option<String> {
        let lines = std::mem::replace(&mut self.lines, mpsc::channel().1);
        let (line, lines) = tokio::task::spawn_blocking(move || {
            let line = lines.recv_timeout(HANG);
            (line, lines)
        })
        .await
        .expect("reader");
        self.lines = lines;
        match line {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("hang guard: the {} peer", self.name),
        }
    }

    /// Waits until the peer's consumer reads every partition.
    async fn ready(&mut self) {
        let line = self.line().await;
        assert_eq!(
            line.as_deref(),
            Some("ready"),
            "the {} peer did not get ready",
            self.name
        );
    }

    /// Waits for the peer's summary and its exit.
    async fn summary<R: DeserializeOwned>(mut self) -> Summary<R> {
        let line = loop {
            match self.line().await {
                Some(line) if line.starts_with("summary ") => break line,
                Some(other) => eprintln!("{}: {other}", self.name),
                None => panic!("the {} peer ended without a summary", self.name),
            }
        };
        let summary: Summary<R> = serde_json::from_str(&line["summary ".len()..])
            .unwrap_or_else(|e| panic!("{} peer: bad summary ({e}): {line}", self.name));
        let status = tokio::task::spawn_blocking(move || self.child.wait())
            .await
            .expect("waiter")
            .expect("exit status");
        let failures = summary.failures.clone().unwrap_or_default();
        assert!(
            failures.is_empty() && status.success(),
            "{}: the peer found {} failures (exit {status}):\n{}",
            summary.direction,
            failures.len(),
            failures.join("\n")
        );
        summary
    }
}

fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4())
}

async fn bus(service: &str, go_envelope: bool) -> Bus {
    Bus::builder()
        .service(service)
        .request_timeout(Duration::from_secs(30))
        .kafka(KafkaConfig::new(brokers()).go_envelope(go_envelope))
        .connect()
        .await
        .expect("connect")
}

/// Waits until `seen` holds `n` distinct keys (hang guard only).
async fn until_distinct<V>(seen: &Mutex<BTreeMap<String, Vec<V>>>, n: usize, direction: &str) {
    let mut waited = Duration::ZERO;
    while seen.lock().expect("poisoned").len() < n {
        assert!(
            waited < HANG,
            "{direction}: hang guard: {} of {n} handled",
            seen.lock().expect("poisoned").len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
}

/// Prints the counts of a direction and fails on any loss or mismatch.
fn report(direction: &str, sent: usize, handled: usize, duplicates: usize, problems: &[String]) {
    let lost = sent.saturating_sub(handled);
    println!(
        "peers {direction}: sent={sent} handled={handled} lost={lost} duplicates={duplicates}"
    );
    assert!(
        problems.is_empty(),
        "{direction}: {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!((sent, lost), (COUNT, 0), "{direction}: sent and lost");
}

/// How many handlings of `seen` (per message id) were repeats.
fn repeats<V>(seen: &BTreeMap<String, Vec<V>>) -> usize {
    seen.values().map(|h| h.len() - 1).sum()
}

/// The counts of a direction where a peer asked and topicbus answered:
/// `seen` is what topicbus handled, `asked` what the peer checked.
fn report_answered<V>(direction: &str, seen: &BTreeMap<String, Vec<V>>, asked: &Summary) {
    println!(
        "peers {direction}: handled by topicbus={} replies checked by the peer={} unmatched={}",
        seen.len(),
        asked.handled,
        asked.unmatched
    );
    let duplicates = repeats(seen) + asked.duplicates;
    report(direction, asked.sent, asked.handled, duplicates, &[]);
}

fn chunk_text(seq: u64) -> String {
    format!("chunk {seq} <b>&</b> ü")
}

/// Go publishes events as the Go bus did (timestamps in nanoseconds,
/// seconds and 0); a typed handler in Go-envelope mode gets each once,
/// with the event's id, key, source and time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka, Go and Python: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn go_events_reach_a_typed_handler() {
    let direction = "go->topicbus events";
    let bus = bus("peers-go-events", true).await;
    type Handled = (GoChunk, String, Option<Vec<u8>>, String, SystemTime);
    let seen: Arc<Mutex<BTreeMap<String, Vec<Handled>>>> = Arc::default();
    let record = Arc::clone(&seen);
    bus.group(unique("peers-go-events"))
        .subscribe(move |chunk: GoChunk, ctx: Context| {
            let handled = (
                chunk,
                ctx.id().to_string(),
                ctx.key().map(<[u8]>::to_vec),
                ctx.source().to_owned(),
                ctx.time(),
            );
            record
                .lock()
                .expect("poisoned")
                .entry(handled.1.clone())
                .or_default()
                .push(handled);
            futures::future::ready(Ok::<_, String>(()))
        })
        .await
        .expect("subscribe");

    let count = COUNT.to_string();
    let topic = GoChunk::NAME;
    let go = Peer::go(&[
        "publish",
        "-brokers",
        &brokers(),
        "-topic",
        topic,
        "-count",
        &count,
    ]);
    let sent: Summary<GoRecord> = go.summary().await;
    until_distinct(&seen, sent.records.len(), direction).await;

    let seen = std::mem::take(&mut *seen.lock().expect("poisoned"));
    let mut problems = Vec::new();
    for record in &sent.records {
        let Some(handled) = seen.get(&record.id) else {
            problems.push(format!(
                "{direction}: {}: seq {} not handled",
                record.id, record.seq
            ));
            continue;
        };
        let (chunk, _, key, source, time) = &handled[0];
        let expected_time = match record.seq % 3 {
            0 => Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(record.timestamp as u64)),
            1 => Some(SystemTime::UNIX_EPOCH + Duration::from_secs(record.timestamp as u64)),
            _ => None,
        };
        let mismatch = if chunk.seq != record.seq
            || chunk.chunk_id != format!("chunk-{}", record.seq)
            || chunk.text != chunk_text(record.seq)
        {
            Some(format!("payload {chunk:?}"))
        } else if key.as_deref() != Some(record.id.as_bytes()) {
            Some(format!("key {key:?}"))
        } else if source != "go-peer" {
            Some(format!("source {source}"))
        } else if expected_time.is_some_and(|t| t != *time) {
            Some(format!("time {time:?} for timestamp {}", record.timestamp))
        } else if *time == SystemTime::UNIX_EPOCH {
            Some("time 0 taken as 1970".to_owned())
        } else {
            None
        };
        if let Some(mismatch) = mismatch {
            problems.push(format!(
                "{direction}: {} (seq {}): {mismatch}",
                record.id, record.seq
            ));
        }
    }
    report(direction, sent.sent, seen.len(), repeats(&seen), &problems);
    bus.shutdown().await.expect("shutdown");
}

/// Go sends requests as the Go bus did (no `reply_to`; the reply awaited
/// on `{topic}.response` by correlation id); topicbus in Go-envelope mode
/// answers each, and Go decodes the typed reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka, Go and Python: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn go_requests_get_typed_replies() {
    let direction = "go->topicbus requests";
    let bus = bus("peers-go-embedder", true).await;
    let seen: Arc<Mutex<BTreeMap<String, Vec<()>>>> = Arc::default();
    let record = Arc::clone(&seen);
    bus.group(unique("peers-go-embedder"))
        .serve(move |request: GoEmbed, ctx: Context| {
            record
                .lock()
                .expect("poisoned")
                .entry(ctx.id().to_string())
                .or_default()
                .push(());
            let embeddings = request
                .texts
                .iter()
                .enumerate()
                .map(|(i, text)| vec![text.chars().count() as f32, i as f32])
                .collect();
            futures::future::ready(Ok::<_, String>(GoEmbedding { embeddings }))
        })
        .await
        .expect("serve");

    let count = COUNT.to_string();
    let group = unique("peers-go-requester");
    let go = Peer::go(&[
        "request",
        "-brokers",
        &brokers(),
        "-topic",
        GoEmbed::NAME,
        "-group",
        &group,
        "-count",
        &count,
    ]);
    let asked: Summary = go.summary().await;
    let seen = std::mem::take(&mut *seen.lock().expect("poisoned"));
    report_answered(direction, &seen, &asked);
    bus.shutdown().await.expect("shutdown");
}

/// topicbus in Go-envelope mode sends requests with `bus.request` to a
/// responder that answers as the Go bus did: on `{topic}.response`, with
/// the request's correlation id, whatever `reply_to` says. `bus.request`
/// reads `{topic}.response` too and gets every reply, once, with the value
/// Go computed; a topicbus subscription on that topic decodes each reply
/// as well, and counts how many Go wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka, Go and Python: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn topicbus_requests_answered_by_go() {
    let direction = "topicbus->go requests";
    let bus = bus("peers-go-asker", true).await;
    let response_topic = format!("{}.response", GoRerank::NAME);
    let on_response_topic: Arc<Mutex<BTreeMap<String, Vec<GoRanked>>>> = Arc::default();
    let record = Arc::clone(&on_response_topic);
    bus.group(unique("peers-go-response-reader"))
        .subscribe_raw(
            response_topic.clone(),
            move |reply: RawMessage, ctx: Context| {
                let decoded = serde_json::from_slice::<GoRanked>(&reply.payload);
                let correlation = ctx.correlation_id().map(ToString::to_string);
                futures::future::ready(match (decoded, correlation) {
                    (Ok(ranked), Some(correlation)) => {
                        let mut record = record.lock().expect("poisoned");
                        record.entry(correlation).or_default().push(ranked);
                        Ok(())
                    }
                    (decoded, correlation) => Err(format!(
                    "a Go reply topicbus cannot read: {decoded:?}, correlation id {correlation:?}"
                )),
                })
            },
        )
        .retries(0)
        .await
        .expect("subscribe to the response topic");
    bus.ensure_topic::<GoRerank>().await.expect("topic");
    let count = COUNT.to_string();
    let group = unique("peers-go-ranker");
    let mut go = Peer::go(&[
        "serve",
        "-brokers",
        &brokers(),
        "-topic",
        GoRerank::NAME,
        "-group",
        &group,
        "-count",
        &count,
    ]);
    go.ready().await;

    let requests: Vec<GoRerank> = (0..COUNT)
        .map(|seq| GoRerank {
            query: format!("query {seq}"),
            documents: (0..seq % 5 + 1)
                .map(|d| "doc ".repeat(d + seq % 3))
                .collect(),
            top_k: seq % 4,
        })
        .collect();
    let bus_ref = &bus;
    let outcomes: Vec<_> = futures::stream::iter(requests)
        .map(|request| async move {
            let reply = bus_ref.request(&request).await;
            (request, reply)
        })
        .buffer_unordered(COUNT)
        .collect()
        .await;
    let answered = go.summary::<IgnoredAny>().await;
    until_distinct(&on_response_topic, COUNT, direction).await;

    let mut problems = Vec::new();
    let mut replies = 0;
    for (request, reply) in outcomes {
        match reply {
            Ok(ranked) if ranked == rerank(&request) => replies += 1,
            Ok(ranked) => problems.push(format!(
                "{direction}: {}: reply {ranked:?}, want {:?}",
                request.query,
                rerank(&request)
            )),
            Err(e) => problems.push(format!("{direction}: {}: {e}", request.query)),
        }
    }
    let on_topic = std::mem::take(&mut *on_response_topic.lock().expect("poisoned"));
    let on_topic_repeats = repeats(&on_topic);
    let stats = bus.stats();
    println!(
        "peers {direction}: requests sent={COUNT} handled by Go={} (with reply_to: {}) \
         replies on {response_topic}={} (repeats {on_topic_repeats}) \
         replies received by bus.request={replies} late={} foreign={}",
        answered.handled,
        answered.with_reply_to,
        on_topic.len(),
        stats.late_replies,
        stats.foreign_replies,
    );
    assert_eq!(
        answered.handled, COUNT,
        "{direction}: handled by the Go responder"
    );
    assert_eq!(
        on_topic.len(),
        COUNT,
        "{direction}: Go's replies on {response_topic}"
    );
    let duplicates = answered.duplicates + on_topic_repeats;
    report(direction, COUNT, replies, duplicates, &problems);
    assert_eq!(duplicates, 0, "{direction}: duplicates");
    assert_eq!(
        (
            stats.pending_requests,
            stats.late_replies,
            stats.foreign_replies
        ),
        (0, 0, 0),
        "{direction}: one requesting instance: every reply on {response_topic} was its own"
    );
    bus.shutdown().await.expect("shutdown");
}

/// What the Go peer's responder answers: documents scored by length.
fn rerank(request: &GoRerank) -> GoRanked {
    let mut results: Vec<GoRank> = request
        .documents
        .iter()
        .enumerate()
        .map(|(index, doc)| GoRank {
            index,
            score: doc.chars().count() as f64 / 4.0,
        })
        .collect();
    results.sort_by(|a, b| b.score.total_cmp(&a.score));
    results.truncate(request.top_k);
    GoRanked { results }
}

/// topicbus publishes in Go-envelope mode; the Go peer reads each event
/// into the Go bus's `Event` (an `int64` timestamp in nanoseconds, keyed by
/// the event id) and its payload into a struct with `int64` fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka, Go and Python: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn topicbus_events_decode_into_the_go_struct() {
    let direction = "topicbus->go events";
    let service = "peers-go-stores";
    let bus = bus(service, true).await;
    bus.ensure_topic::<GoStore>().await.expect("topic");
    let (count, group) = (COUNT.to_string(), unique("peers-go-consumer"));
    let mut go = Peer::go(&[
        "consume",
        "-brokers",
        &brokers(),
        "-topic",
        GoStore::NAME,
        "-group",
        &group,
        "-count",
        &count,
        "-expect-source",
        service,
    ]);
    go.ready().await;
    let stores: Vec<GoStore> = (0..COUNT as i64)
        .map(|seq| GoStore {
            name: format!("store {seq} <b>&</b> ü"),
            seq,
            size_bytes: seq * 1_000_003,
        })
        .collect();
    bus.publish_batch(&stores).await.expect("publish");
    let read: Summary = go.summary().await;
    report(direction, COUNT, read.handled, read.duplicates, &[]);
    bus.shutdown().await.expect("shutdown");
}

/// Python publishes in CloudEvents binary mode with `ce_time` in many
/// RFC 3339 forms and `content-type` with parameters, in other cases or
/// missing; a typed handler gets each once, at the instant `ce_time` names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka, Go and Python: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn python_events_reach_a_typed_handler() {
    let direction = "python->topicbus events";
    let bus = bus("peers-python-events", false).await;
    type Handled = (PyEvent, String, SystemTime);
    let seen: Arc<Mutex<BTreeMap<String, Vec<Handled>>>> = Arc::default();
    let record = Arc::clone(&seen);
    bus.group(unique("peers-python-events"))
        .subscribe(move |event: PyEvent, ctx: Context| {
            let handled = (event, ctx.source().to_owned(), ctx.time());
            record
                .lock()
                .expect("poisoned")
                .entry(ctx.id().to_string())
                .or_default()
                .push(handled);
            futures::future::ready(Ok::<_, String>(()))
        })
        .await
        .expect("subscribe");

    let count = COUNT.to_string();
    let python = Peer::python(&[
        "publish",
        "--brokers",
        &brokers(),
        "--topic",
        PyEvent::NAME,
        "--count",
        &count,
    ]);
    let sent: Summary<PyRecord> = python.summary().await;
    until_distinct(&seen, sent.records.len(), direction).await;

    let seen = std::mem::take(&mut *seen.lock().expect("poisoned"));
    let mut problems = Vec::new();
    for record in &sent.records {
        let what = format!(
            "{direction}: {} (seq {}, ce_time {}, content-type {:?})",
            record.id, record.seq, record.ce_time, record.content_type
        );
        let Some(handled) = seen.get(&record.id) else {
            problems.push(format!("{what}: not handled"));
            continue;
        };
        let (event, source, time) = &handled[0];
        let expected_time = SystemTime::UNIX_EPOCH + Duration::from_nanos(record.time_nanos);
        if event.seq != record.seq || event.text != format!("event {} <b>&</b> ü", record.seq) {
            problems.push(format!("{what}: payload {event:?}"));
        } else if source != "python-peer" {
            problems.push(format!("{what}: source {source}"));
        } else if *time != expected_time {
            problems.push(format!("{what}: time {time:?}, want {expected_time:?}"));
        }
    }
    report(direction, sent.sent, seen.len(), repeats(&seen), &problems);
    bus.shutdown().await.expect("shutdown");
}

/// Python sends requests with `reply_to` (its own `topicbus.reply.…`
/// topic) and `correlation_id`; topicbus answers each there, every tenth
/// with an error reply, which Python reads from the error headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka, Go and Python: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn python_requests_get_replies() {
    let direction = "python->topicbus requests";
    let bus = bus("peers-python-search", false).await;
    let seen: Arc<Mutex<BTreeMap<String, Vec<()>>>> = Arc::default();
    let record = Arc::clone(&seen);
    bus.group(unique("peers-python-search"))
        .serve(move |search: PySearch, ctx: Context| {
            record
                .lock()
                .expect("poisoned")
                .entry(ctx.id().to_string())
                .or_default()
                .push(());
            futures::future::ready(if search.fail {
                Err(format!("asked to fail: {}", search.query))
            } else {
                let hits = (0..search.limit)
                    .map(|i| format!("{}#{i}", search.query))
                    .collect();
                Ok(PyHits { hits })
            })
        })
        .await
        .expect("serve");

    let count = COUNT.to_string();
    let python = Peer::python(&[
        "request",
        "--brokers",
        &brokers(),
        "--topic",
        PySearch::NAME,
        "--count",
        &count,
    ]);
    let asked: Summary = python.summary().await;
    let seen = std::mem::take(&mut *seen.lock().expect("poisoned"));
    report_answered(direction, &seen, &asked);
    bus.shutdown().await.expect("shutdown");
}

/// topicbus publishes; Python reads each event's CloudEvents headers and
/// JSON value as docs/wire.md describes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka, Go and Python: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn topicbus_events_read_by_python() {
    let direction = "topicbus->python events";
    let service = "peers-python-notices";
    let bus = bus(service, false).await;
    bus.ensure_topic::<PyNotice>().await.expect("topic");
    let count = COUNT.to_string();
    let mut python = Peer::python(&[
        "consume",
        "--brokers",
        &brokers(),
        "--topic",
        PyNotice::NAME,
        "--count",
        &count,
        "--group",
        &unique("peers-python-consumer"),
        "--expect-source",
        service,
    ]);
    python.ready().await;
    let notices: Vec<PyNotice> = (0..COUNT as u64)
        .map(|seq| PyNotice {
            seq,
            title: format!("notice {seq} <b>&</b> ü"),
            tags: vec![format!("t{}", seq % 3), "peers".to_owned()],
        })
        .collect();
    bus.publish_batch(&notices).await.expect("publish");
    let read: Summary = python.summary().await;
    report(direction, COUNT, read.handled, read.duplicates, &[]);
    bus.shutdown().await.expect("shutdown");
}

/// topicbus sends requests with `bus.request`; Python answers each on the
/// topic `reply_to` names, partition 0, as docs/wire.md says a responder does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka, Go and Python: TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start)"]
async fn topicbus_requests_answered_by_python() {
    let direction = "topicbus->python requests";
    let bus = bus("peers-python-asker", false).await;
    bus.ensure_topic::<PyLookup>().await.expect("topic");
    let count = COUNT.to_string();
    let mut python = Peer::python(&[
        "serve",
        "--brokers",
        &brokers(),
        "--topic",
        PyLookup::NAME,
        "--count",
        &count,
        "--group",
        &unique("peers-python-responder"),
    ]);
    python.ready().await;
    let bus_ref = &bus;
    let outcomes: Vec<_> = futures::stream::iter(0..COUNT as u64)
        .map(|seq| async move {
            let lookup = PyLookup {
                key: format!("key {seq} <&> ü"),
                seq,
            };
            let reply = bus_ref.request(&lookup).await;
            (lookup, reply)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let answered: Summary = python.summary().await;
    let mut problems = Vec::new();
    let mut replies = 0;
    for (lookup, reply) in outcomes {
        let expected = PyLookedUp {
            value: format!("value of {} ({})", lookup.key, lookup.seq),
            key: lookup.key.clone(),
            seq: lookup.seq,
        };
        match reply {
            Ok(reply) if reply == expected => replies += 1,
            Ok(reply) => problems.push(format!("{direction}: {}: reply {reply:?}", lookup.seq)),
            Err(e) => problems.push(format!("{direction}: {}: {e}", lookup.seq)),
        }
    }
    println!(
        "peers {direction}: handled by Python={} replies received={replies}",
        answered.handled
    );
    report(direction, COUNT, replies, answered.duplicates, &problems);
    bus.shutdown().await.expect("shutdown");
}
