//! The `topicbus` binary end to end: each test runs the built binary as a
//! child process against a cluster, and checks what it prints and how it
//! exits. A topicbus instance in the test plays the services (a responder,
//! a failing handler).
//!
//! The cluster is librdkafka's mock cluster, one per test, unless
//! `TOPICBUS_KAFKA_BROKERS` names a broker (Apache Kafka, which does not
//! auto-create topics): then every test runs there. A test names its topics
//! and groups per run ([`TestKafka::name`]), so a reused broker does not mix
//! runs; only the request topics of the typed responders are named at
//! compile time. Runs share those, which is harmless: each run's responder
//! joins a group of its own at the latest offset, and a reply goes to the
//! reply topic of the tool that asked.
//!
//! ```text
//! TOPICBUS_KAFKA_BROKERS=$(scripts/kafka.sh start) cargo test -p topicbus-cli --test cli
//! ```

#[path = "support/kafka.rs"]
mod kafka;
#[path = "support/mock_kafka.rs"]
mod mock_kafka;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use topicbus::{Bus, EventLog, Headers, RawMessage, Topic};

use kafka::TestKafka;

/// Hang guard only: a run that takes longer fails the test. Nothing
/// asserts on time.
const HANG: Duration = Duration::from_secs(120);

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// A running `topicbus`: its stderr comes line by line as it is printed.
struct Running {
    args: Vec<String>,
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Running {
    /// Starts `topicbus` with `args` (no broker variables from the
    /// environment unless given in `env`).
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_topicbus"))
            .args(args)
            .env_remove("TOPICBUS_BROKERS")
            .env_remove("RICE_KAFKA_BROKERS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the topicbus binary starts");
        let mut stdout_pipe = child.stdout.take().expect("piped");
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            stdout_pipe.read_to_string(&mut text).expect("UTF-8 output");
            text
        });
        let stderr_pipe = child.stderr.take().expect("piped");
        let (lines, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                if lines.send(line.expect("UTF-8 output")).is_err() {
                    break;
                }
            }
        });
        Self {
            args: args.iter().map(|a| a.to_string()).collect(),
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        }
    }

    /// Waits for a stderr line starting with `prefix`.
    fn wait_for_stderr(&mut self, prefix: &str) {
        loop {
            match self.stderr.recv_timeout(HANG) {
                Ok(line) => {
                    let found = line.starts_with(prefix);
                    self.stderr_seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "hang guard: topicbus {:?} printed no `{prefix}` line: {:?}",
                        self.args, self.stderr_seen
                    );
                }
            }
        }
    }

    /// Waits for the exit, killing the process if it hangs.
    fn finish(mut self) -> Run {
        let deadline = Instant::now() + HANG;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "hang guard: topicbus {:?} still running after {HANG:?}",
                    self.args
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = self.stderr_seen;
        // The pipe closed with the process: the rest is there already.
        stderr.extend(self.stderr.iter());
        Run {
            status,
            stdout: self.stdout.join().expect("stdout reader"),
            stderr: stderr.iter().map(|l| format!("{l}\n")).collect(),
        }
    }
}

/// Runs `topicbus` with `args` to its end.
fn topicbus_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    Running::start(args, env).finish()
}

/// The arguments that point the tool at `kafka`, then `args`.
fn on<'a>(kafka: &'a TestKafka, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = kafka.tool_args();
    all.extend_from_slice(args);
    all
}

/// Runs `topicbus` on the test's cluster with `args`.
fn topicbus(kafka: &TestKafka, args: &[&str]) -> Run {
    topicbus_with_env(&on(kafka, args), &[])
}

/// [`topicbus`] off the async runtime.
async fn topicbus_async(kafka: &TestKafka, args: &[&str]) -> Run {
    let args: Vec<String> = on(kafka, args).iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        topicbus_with_env(&args, &[])
    })
    .await
    .expect("runner")
}

fn succeeded(run: &Run) {
    assert!(run.status.success(), "topicbus failed: {run:#?}");
}

fn failed(run: &Run) {
    assert!(
        !run.status.success(),
        "topicbus should have failed: {run:#?}"
    );
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
}

/// A topicbus instance of the test on its cluster.
async fn service(kafka: &TestKafka, name: &str) -> Bus {
    Bus::builder()
        .service(name)
        .kafka(kafka.config())
        .connect()
        .await
        .expect("the test's instance connects")
}

#[test]
fn published_json_shows_up_in_tail_with_its_key_headers_and_payload() {
    let kafka = TestKafka::start();
    let orders = kafka.name("cli.orders");
    kafka.create_topic(&orders, 3);
    let published = topicbus(
        &kafka,
        &[
            "publish",
            &orders,
            r#"{ "order_id": "o-1", "total": 12.5 }"#,
            "--key",
            "o-1",
            "--header",
            "tenant=acme",
        ],
    );
    succeeded(&published);
    let id = published.stdout.trim();
    assert!(
        topicbus::MessageId::parse(id).as_uuid().is_some(),
        "publish prints the message id: {published:#?}"
    );

    let tail = topicbus(
        &kafka,
        &["tail", &orders, "--from", "earliest", "--count", "1"],
    );
    succeeded(&tail);
    let out = &tail.stdout;
    assert!(out.starts_with(&format!("{orders}  partition ")), "{out}");
    assert!(out.contains("  offset 0  key \"o-1\""), "{out}");
    assert!(out.contains(&format!("  ce_id: {id}\n")), "{out}");
    assert!(out.contains("  ce_specversion: 1.0\n"), "{out}");
    assert!(out.contains("  ce_source: topicbus-cli\n"), "{out}");
    assert!(out.contains(&format!("  ce_type: {orders}\n")), "{out}");
    assert!(out.contains("  content-type: application/json\n"), "{out}");
    assert!(out.contains("  tenant: acme\n"), "{out}");
    assert!(
        out.contains(r#"  payload: { "order_id": "o-1", "total": 12.5 }"#),
        "the JSON payload as sent: {out}"
    );
    assert!(tail.stderr.contains("1 record read"), "{tail:#?}");
}

#[test]
fn tail_from_latest_shows_only_what_is_published_after_it_started() {
    let kafka = TestKafka::start();
    let events = kafka.name("cli.events");
    kafka.create_topic(&events, 2);
    succeeded(&topicbus(&kafka, &["publish", &events, r#"{"n":"old"}"#]));
    let mut tail = Running::start(&on(&kafka, &["tail", &events, "--count", "1"]), &[]);
    tail.wait_for_stderr(&format!(
        "tailing `{events}` (2 partitions) from now on, until 1 record"
    ));
    let new = topicbus(&kafka, &["publish", &events, r#"{"n":"new"}"#]);
    succeeded(&new);
    let tail = tail.finish();
    succeeded(&tail);
    assert!(
        tail.stdout.contains(r#"  payload: {"n":"new"}"#),
        "{tail:#?}"
    );
    assert!(
        tail.stdout
            .contains(&format!("  ce_id: {}", new.stdout.trim())),
        "{tail:#?}"
    );
    assert!(!tail.stdout.contains("old"), "{tail:#?}");
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "cli.math.square", response = Squared)]
struct Square {
    n: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "cli.math.squared")]
struct Squared {
    n: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_is_answered_by_a_topicbus_responder_and_its_errors_are_shown() {
    let kafka = TestKafka::start();
    let responder = service(&kafka, "math").await;
    responder
        .group(kafka.name("cli.square"))
        .serve(|request: Square| async move {
            if request.n < 0 {
                Err(format!("will not square {}", request.n))
            } else {
                Ok(Squared {
                    n: request.n * request.n,
                })
            }
        })
        .await
        .expect("serve");

    let answered = topicbus_async(
        &kafka,
        &[
            "request",
            "cli.math.square",
            r#"{"n":12}"#,
            "--timeout",
            "30s",
        ],
    )
    .await;
    succeeded(&answered);
    assert_eq!(answered.stdout, "{\"n\":144}\n", "{answered:#?}");
    assert!(
        answered.stderr.contains("reply from `math`"),
        "{answered:#?}"
    );

    let refused = topicbus_async(
        &kafka,
        &[
            "request",
            "cli.math.square",
            r#"{"n":-3}"#,
            "--timeout",
            "30s",
        ],
    )
    .await;
    failed(&refused);
    assert!(
        refused
            .stderr
            .contains("the responder on `cli.math.square` failed: will not square -3"),
        "the remote error text: {refused:#?}"
    );
    responder.shutdown().await.expect("shutdown");
}

#[test]
fn a_request_nobody_answers_times_out_with_a_clear_error() {
    let kafka = TestKafka::start();
    let unserved = kafka.name("cli.unserved");
    kafka.create_topic(&unserved, 1);
    let run = topicbus(&kafka, &["request", &unserved, "{}", "--timeout", "2s"]);
    failed(&run);
    assert!(
        run.stderr.contains(&format!(
            "no reply to the request on `{unserved}` within 2s"
        )),
        "{run:#?}"
    );
}

/// A job of the worker that a test plays. Its topic is named per run, so
/// the worker reads it raw.
#[derive(Debug, Deserialize)]
struct Job {
    id: u32,
}

fn job_id(job: &RawMessage) -> Result<u32, String> {
    serde_json::from_slice::<Job>(&job.payload)
        .map(|job| job.id)
        .map_err(|e| format!("not a job: {e}"))
}

/// Sends `()` on `watch` for each message of `topic` (from its start), in
/// the group `group`.
async fn watch(
    bus: &Bus,
    group: String,
    topic: String,
) -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    bus.group(group)
        .subscribe_raw(topic, move |_, _| {
            let seen_tx = seen_tx.clone();
            async move { seen_tx.send(()).map_err(|e| e.to_string()) }
        })
        .start_from(topicbus::StartFrom::Earliest)
        .await
        .expect("watch the topic");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_shows_a_dead_lettered_message_with_its_reason() {
    let kafka = TestKafka::start();
    let (jobs, workers) = (kafka.name("cli.jobs"), kafka.name("cli.workers"));
    let worker = service(&kafka, "worker").await;
    worker
        .group(workers.clone())
        .subscribe_raw(jobs.clone(), |job: RawMessage, _| async move {
            let id = job_id(&job)?;
            Err::<(), _>(format!("job {id} is cursed"))
        })
        .retries(1)
        .backoff(Duration::from_millis(10))
        .await
        .expect("subscribe");
    let mut dead = watch(&worker, kafka.name("cli.dlq-watch"), format!("{jobs}.dlq")).await;

    let published = topicbus_async(&kafka, &["publish", &jobs, r#"{"id":7}"#]).await;
    succeeded(&published);
    tokio::time::timeout(HANG, dead.recv())
        .await
        .expect("hang guard: the job is dead-lettered")
        .expect("watcher alive");

    let listed = topicbus_async(&kafka, &["dlq", "list", &jobs]).await;
    succeeded(&listed);
    let out = &listed.stdout;
    assert!(out.starts_with(&format!("{jobs}.dlq  partition ")), "{out}");
    assert!(out.contains("  reason: job 7 is cursed\n"), "{out}");
    assert!(out.contains("  kind: handler\n"), "{out}");
    assert!(out.contains("  attempts: 2\n"), "{out}");
    assert!(
        out.contains(&format!("  original topic: {jobs}\n")),
        "{out}"
    );
    assert!(out.contains(&format!("  group: {workers}\n")), "{out}");
    assert!(
        out.contains(&format!("  ce_id: {}\n", published.stdout.trim())),
        "{out}"
    );
    assert!(out.contains("  payload: {\"id\":7}\n"), "{out}");
    assert!(
        out.ends_with(&format!("1 dead-lettered message in `{jobs}.dlq`\n")),
        "{out}"
    );
    worker.shutdown().await.expect("shutdown");
}

#[test]
fn a_wrong_broker_fails_naming_the_address() {
    for args in [
        &["tail", "cli.orders"][..],
        &["publish", "cli.orders", "{}"],
        &["request", "cli.orders", "{}"],
        &["dlq", "list", "cli.orders"],
    ] {
        let mut all = vec!["--brokers", "127.0.0.1:1", "--timeout", "2s"];
        all.extend_from_slice(args);
        let run = topicbus_with_env(&all, &[]);
        failed(&run);
        assert!(
            run.stderr
                .contains("cannot reach the Kafka brokers `127.0.0.1:1` within 2s"),
            "{args:?}: {run:#?}"
        );
    }
}

#[test]
fn brokers_come_from_the_environment_go_name_included() {
    for variable in ["TOPICBUS_BROKERS", "RICE_KAFKA_BROKERS"] {
        let run = topicbus_with_env(
            &["--timeout", "1s", "dlq", "list", "cli.orders"],
            &[(variable, "127.0.0.1:1")],
        );
        failed(&run);
        assert!(run.stderr.contains("`127.0.0.1:1`"), "{variable}: {run:#?}");
    }
    let run = topicbus_with_env(&["dlq", "list", "cli.orders"], &[]);
    failed(&run);
    assert!(run.stderr.contains("no Kafka brokers given"), "{run:#?}");
}

#[test]
fn a_missing_topic_is_named() {
    let kafka = TestKafka::start();
    let (present, absent) = (kafka.name("cli.present"), kafka.name("cli.absent"));
    kafka.create_topic(&present, 1);
    let present_dlq = format!("{present}.dlq");
    for (args, missing) in [
        (&["tail", &absent][..], &absent),
        (&["publish", &absent, "{}"], &absent),
        (&["request", &absent, "{}"], &absent),
        (&["dlq", "list", &present], &present_dlq),
    ] {
        let run = topicbus(&kafka, args);
        failed(&run);
        assert!(
            run.stderr.contains(&format!(
                "topic `{missing}` does not exist on `{}`",
                kafka.bootstrap
            )),
            "{args:?}: {run:#?}"
        );
    }
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let kafka = TestKafka::start();
    let orders = kafka.name("cli.orders");
    kafka.create_topic(&orders, 1);
    let run = topicbus(&kafka, &["publish", &orders, "{not json"]);
    failed(&run);
    assert!(
        run.stderr.contains("the payload is not valid JSON"),
        "{run:#?}"
    );
    let run = topicbus(&kafka, &["publish", &orders, "{}", "--header", "novalue"]);
    assert_eq!(run.status.code(), Some(2), "a usage error: {run:#?}");
    assert!(
        run.stderr.contains("expected NAME=VALUE, got `novalue`"),
        "{run:#?}"
    );
    for (property, value) in [("acks", "sometimes"), ("sasl.passwrod", "hunter2")] {
        let setting = format!("{property}={value}");
        let run = topicbus(&kafka, &["-X", &setting, "tail", &orders]);
        failed(&run);
        assert!(
            run.stderr.contains(&format!(
                "invalid configuration `{property}`: librdkafka refused it"
            )),
            "{run:#?}"
        );
        assert!(
            !run.stderr.contains(value),
            "the value is not shown: {run:#?}"
        );
    }
    // The refused publishes sent nothing: the first record is the next one.
    succeeded(&topicbus(&kafka, &["publish", &orders, r#"{"ok":true}"#]));
    let tail = topicbus(
        &kafka,
        &["tail", &orders, "--from", "earliest", "--count", "1"],
    );
    succeeded(&tail);
    assert!(tail.stdout.contains("  offset 0  key -"), "{tail:#?}");
    assert!(
        tail.stdout.contains(r#"  payload: {"ok":true}"#),
        "{tail:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_redrive_hands_a_dead_letter_back_to_the_group_that_gave_up() {
    let kafka = TestKafka::start();
    let redo = kafka.name("cli.redo");
    let worker = service(&kafka, "worker").await;
    let fixed = Arc::new(AtomicBool::new(false));
    let (handled_tx, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let is_fixed = Arc::clone(&fixed);
    worker
        .group(kafka.name("cli.redo-workers"))
        .subscribe_raw(redo.clone(), move |job: RawMessage, _| {
            let (is_fixed, handled_tx) = (Arc::clone(&is_fixed), handled_tx.clone());
            async move {
                let id = job_id(&job)?;
                if !is_fixed.load(Ordering::SeqCst) {
                    return Err(format!("job {id} hit the bug"));
                }
                handled_tx.send(id).map_err(|e| e.to_string())
            }
        })
        .retries(0)
        .await
        .expect("subscribe");
    let mut dead = watch(
        &worker,
        kafka.name("cli.redo-dlq-watch"),
        format!("{redo}.dlq"),
    )
    .await;

    succeeded(&topicbus_async(&kafka, &["publish", &redo, r#"{"id":3}"#]).await);
    tokio::time::timeout(HANG, dead.recv())
        .await
        .expect("hang guard: the job is dead-lettered")
        .expect("watcher alive");

    fixed.store(true, Ordering::SeqCst);
    let redrive = topicbus_async(&kafka, &["dlq", "redrive", &redo]).await;
    succeeded(&redrive);
    assert_eq!(
        redrive.stdout,
        format!("moved 1 message from `{redo}.dlq` back to `{redo}`\n"),
        "{redrive:#?}"
    );
    let again = tokio::time::timeout(HANG, handled.recv())
        .await
        .expect("hang guard: the re-driven job is handled");
    assert_eq!(again, Some(3));

    let nothing_left = topicbus_async(&kafka, &["dlq", "redrive", &redo]).await;
    succeeded(&nothing_left);
    assert!(
        nothing_left.stdout.starts_with("moved 0 messages"),
        "a second re-drive finds nothing new: {nothing_left:#?}"
    );
    worker.shutdown().await.expect("shutdown");
}

/// A file name in the temporary directory unique to this test run.
fn temp_file(name: &str) -> PathBuf {
    let unique = topicbus::MessageId::new();
    std::env::temp_dir().join(format!("topicbus-cli-{name}-{unique}.jsonl"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_republishes_what_the_event_log_recorded_since_a_time() {
    let kafka = TestKafka::start();
    let replayed = kafka.name("cli.replayed");
    kafka.create_topic(&replayed, 1);
    let log = temp_file("replay");
    let recorder = Bus::builder()
        .service("recorder")
        .event_log(EventLog::open(&log).expect("open the event log"))
        .build();
    let json = |payload: &str| {
        let mut message = RawMessage::new(replayed.clone(), payload);
        let mut headers = Headers::new();
        headers.insert("content-type", "application/json");
        message.headers = headers;
        message
    };
    recorder
        .publish_raw(json(r#"{"n":1}"#))
        .await
        .expect("publish before");
    // The log keeps microseconds: keep the first message's time clearly
    // before `since`.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = SystemTime::now();
    recorder
        .publish_raw(json(r#"{"n":2}"#))
        .await
        .expect("publish after");
    recorder.shutdown().await.expect("shutdown syncs the log");

    let since = humantime::format_rfc3339_micros(since).to_string();
    let log_arg = log.to_str().expect("UTF-8 path");
    let replay = topicbus_async(&kafka, &["replay", log_arg, "--since", &since]).await;
    succeeded(&replay);
    assert_eq!(
        replay.stdout,
        format!("replayed 1 message from `{log_arg}`\n"),
        "{replay:#?}"
    );
    let tail = topicbus_async(
        &kafka,
        &["tail", &replayed, "--from", "earliest", "--count", "1"],
    )
    .await;
    succeeded(&tail);
    assert!(tail.stdout.contains(r#"  payload: {"n":2}"#), "{tail:#?}");
    assert!(
        tail.stdout.contains("  ce_source: recorder\n"),
        "the original headers: {tail:#?}"
    );
    std::fs::remove_file(&log).expect("remove the log");

    let missing = topicbus_async(&kafka, &["replay", log_arg, "--since", "1h"]).await;
    failed(&missing);
    assert!(
        missing
            .stderr
            .contains(&format!("the event log `{log_arg}` is not a readable file")),
        "{missing:#?}"
    );
}

/// Writes one record with exactly these bytes, as any Kafka client may.
fn produce(kafka: &TestKafka, topic: &str, key: &[u8], headers: &[(&str, &[u8])], payload: &[u8]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .expect("a plain producer");
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (name, value)| {
            all.insert(Header {
                key: name,
                value: Some(*value),
            })
        });
    producer
        .send(
            BaseRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers),
        )
        .map_err(|(error, _)| error)
        .expect("the record is enqueued");
    producer.flush(HANG).expect("the record is delivered");
}

/// The first character of `text` that could drive a terminal (other than
/// the line breaks the tool prints itself), with its position.
fn terminal_control(text: &str) -> Option<(usize, char)> {
    text.char_indices().find(|&(_, c)| {
        c != '\n'
            && (c.is_control()
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    })
}

#[test]
fn control_characters_in_records_reach_the_terminal_escaped() {
    let kafka = TestKafka::start();
    let hostile = kafka.name("cli.hostile");
    let hostile_dlq = format!("{hostile}.dlq");
    kafka.create_topic(&hostile, 1);
    kafka.create_topic(&hostile_dlq, 1);
    let headers: [(&str, &[u8]); 4] = [
        ("x-\u{1b}]0;pwned\u{7}", b"name"),
        ("x-note", b"\x1b[2J\r\n  reason: forged"),
        ("topicbus_error", b"\x1b[31mboom\x1b[0m"),
        ("content-type", b"application/json\x1b[8m"),
    ];
    produce(&kafka, &hostile, b"k\x1b[1A", &headers, b"{}");
    produce(&kafka, &hostile_dlq, b"k\x1b[1A", &headers, b"{}");
    // JSON may carry C1 controls and bidirectional overrides unescaped.
    produce(
        &kafka,
        &hostile,
        b"k",
        &[("content-type", b"application/json")],
        "{\"a\":\"\u{9b}2J\u{202e}\"}".as_bytes(),
    );

    let tail = topicbus(
        &kafka,
        &["tail", &hostile, "--from", "earliest", "--count", "2"],
    );
    let listed = topicbus(&kafka, &["dlq", "list", &hostile]);
    let pretty = topicbus(
        &kafka,
        &[
            "tail", &hostile, "--from", "earliest", "--count", "2", "--pretty",
        ],
    );
    for run in [&tail, &listed, &pretty] {
        succeeded(run);
        let out = &run.stdout;
        assert_eq!(terminal_control(out), None, "{run:#?}");
        assert!(out.contains("key \"k\\u{1b}[1A\""), "the key: {out}");
        assert!(
            out.contains("  x-\\u{1b}]0;pwned\\u{7}: name\n"),
            "a header name: {out}"
        );
        assert!(
            out.contains("  x-note: \\u{1b}[2J\\r\\n  reason: forged\n"),
            "a header value, on its line: {out}"
        );
        assert!(
            out.contains("(2 bytes, application/json\\u{1b}[8m) hex:7b7d"),
            "the content type: {out}"
        );
    }
    assert!(
        listed
            .stdout
            .contains("  reason: \\u{1b}[31mboom\\u{1b}[0m\n"),
        "topicbus_error: {listed:#?}"
    );
    assert!(
        tail.stdout
            .contains("  topicbus_error: \\u{1b}[31mboom\\u{1b}[0m\n"),
        "{tail:#?}"
    );
    assert!(
        tail.stdout
            .contains(r#"  payload: {"a":"\u{9b}2J\u{202e}"}"#),
        "{tail:#?}"
    );
    assert!(
        pretty
            .stdout
            .contains("  payload: {\n    \"a\": \"\\u{9b}2J\\u{202e}\"\n  }\n"),
        "{pretty:#?}"
    );
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "cli.hostile.square", response = Squared)]
struct HostileSquare {
    n: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_a_reply_reach_the_terminal_escaped() {
    let kafka = TestKafka::start();
    let responder = service(&kafka, "math\u{1b}]0;pwned\u{7}").await;
    responder
        .group(kafka.name("cli.hostile-math"))
        .serve(|request: HostileSquare| async move {
            if request.n < 0 {
                Err("no\u{1b}[2J\u{9b}1;1H".to_owned())
            } else {
                Ok(Squared { n: request.n })
            }
        })
        .await
        .expect("serve");
    for (n, succeeds) in [("1", true), ("-1", false)] {
        let json = format!(r#"{{"n":{n}}}"#);
        let run = topicbus_async(
            &kafka,
            &["request", "cli.hostile.square", &json, "--timeout", "30s"],
        )
        .await;
        assert_eq!(run.status.success(), succeeds, "{run:#?}");
        assert_eq!(terminal_control(&run.stdout), None, "{run:#?}");
        assert_eq!(terminal_control(&run.stderr), None, "{run:#?}");
        if succeeds {
            assert!(
                run.stderr
                    .contains("reply from `math\\u{1b}]0;pwned\\u{7}`"),
                "ce_source: {run:#?}"
            );
        } else {
            assert!(
                run.stderr.contains("failed: no\\u{1b}[2J\\u{9b}1;1H"),
                "the error text: {run:#?}"
            );
        }
    }
    responder.shutdown().await.expect("shutdown");
}

#[test]
fn tail_shows_json_as_sent_and_indented_on_request() {
    let kafka = TestKafka::start();
    let order = kafka.name("cli.order");
    kafka.create_topic(&order, 1);
    let sent = r#"{"zone":"eu","amount":1.50,"items":[{"sku":"b"},{"sku":"a"}]}"#;
    succeeded(&topicbus(&kafka, &["publish", &order, sent]));
    let tail = topicbus(
        &kafka,
        &["tail", &order, "--from", "earliest", "--count", "1"],
    );
    succeeded(&tail);
    assert!(
        tail.stdout.contains(&format!("  payload: {sent}\n")),
        "the bytes as sent, keys in their order: {tail:#?}"
    );
    let pretty = topicbus(
        &kafka,
        &[
            "tail", &order, "--from", "earliest", "--count", "1", "--pretty",
        ],
    );
    succeeded(&pretty);
    assert!(
        pretty.stdout.ends_with(
            "  payload: {\n\
             \x20   \"zone\": \"eu\",\n\
             \x20   \"amount\": 1.50,\n\
             \x20   \"items\": [\n\
             \x20     {\n\
             \x20       \"sku\": \"b\"\n\
             \x20     },\n\
             \x20     {\n\
             \x20       \"sku\": \"a\"\n\
             \x20     }\n\
             \x20   ]\n\
             \x20 }\n"
        ),
        "{pretty:#?}"
    );
}
