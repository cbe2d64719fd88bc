//! The event log: every published and every delivered message as one JSON
//! line in a file, and replay of what was published. See [`EventLog`].

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::codec::{Codec as _, Json};
use crate::error::{Error, Result};
use crate::message::{header, Headers, Message, RawMessage};
use crate::transport::BoxFuture;
use crate::wire;

/// The writer's buffer.
const BUFFER_BYTES: usize = 64 * 1024;
/// Default of [`EventLogBuilder::max_line_bytes`].
const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;
/// Default of [`EventLogBuilder::max_queue_bytes`].
const MAX_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Default of [`EventLogBuilder::max_file_bytes`].
const MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;
/// Characters of a message id kept in the summary of an oversized line.
const SUMMARY_ID_CHARS: usize = 128;

/// An append-only file of the messages a bus published and delivered.
/// Cheap to clone; the file is closed (and synced) when the last clone is
/// dropped.
///
/// Attach it with [`BusBuilder::event_log`](crate::BusBuilder::event_log),
/// or set `event_log_enabled` and `event_log_path` in a
/// [`BusConfig`](crate::BusConfig).
///
/// # Format
///
/// Each line is one JSON object:
///
/// ```json
/// {"direction":"published","time":"2025-03-01T12:00:00.123456Z","topic":"index.chunk.created",
///  "id":"0b6c…","key":"c-1","headers":{"ce_specversion":"1.0","ce_id":"0b6c…",…},
///  "payload":{"chunk_id":"c-1","text":"hello"}}
/// ```
///
/// - `direction`: `published` (this instance published it: `publish`,
///   `publish_with`, `publish_batch`, `publish_raw`, or a request) or `delivered` (a handler
///   of this instance was handed it; `group` names the consumer group).
/// - `time`: when it was published (for `published`, the message's own
///   time, `ce_time` with microseconds) or delivered.
/// - `id`: the message id (`ce_id`).
/// - `key`: the partition key as text, or `key_base64` when it is not UTF-8.
/// - `headers`: every header as it travels on the wire (CloudEvents,
///   `content-type`, `correlation_id`, `reply_to`, application headers), in
///   order; values that are not UTF-8 go to `headers_base64` instead.
/// - `payload`: the payload itself when its content type is
///   `application/json` (byte for byte), else `payload_base64`: the encoded
///   bytes in standard base64.
/// - `omitted_bytes`: in place of `key`, `headers` and the payload, on the
///   line of a message whose full line would have been longer than
///   `max_line_bytes` (default 2 MiB): the length the full line would have
///   had. Such a line keeps `direction`, `time`, `topic`, `group` and the
///   start of `id`; replay skips it with a warning.
///
/// Replies to requests and dead letters are not recorded as published;
/// the request and the delivery that failed are.
///
/// # Durability
///
/// Recording a line costs the publisher or the delivery one JSON encoding
/// and a hand-off to a queue bounded in bytes (`max_queue_bytes`, default
/// 16 MiB); a background thread appends the lines to the file through a
/// 64 KiB buffer. When the queue is full, publishers and deliveries wait
/// for the writer, so the log never drops a line and memory stays bounded.
///
/// # Size
///
/// The file is bounded too (`max_file_bytes`, default 1 GiB): a line that
/// would take it past the bound first renames it to `{path}.1` (replacing
/// an older `{path}.1`) and starts a new file, so the log takes at most
/// twice the bound on disk. Replay reads the one file it is given. If the
/// file cannot be renamed, the writer reports it and goes on appending.
///
/// - The writer hands what it has buffered to the operating system
///   (`write(2)`) as soon as its queue runs empty, and at the latest every
///   `flush_interval` (default 100 ms) while lines keep coming.
/// - It calls `fsync` (`File::sync_data`) on [`EventLog::sync`], on
///   [`Bus::shutdown`](crate::Bus::shutdown), and when the last handle to the log is dropped.
/// - So a crash of the process loses at most the lines still queued or
///   buffered (recorded within about `flush_interval`); a crash of the
///   machine also loses what the OS had not written back since the last
///   `fsync`. A line cut short by a crash is skipped, with a warning, by
///   replay; when the log is opened again, a newline is added after it so
///   that new lines start clean.
///
/// # Replay
///
/// [`Bus::replay_event_log`](crate::Bus::replay_event_log) republishes
/// the `published` lines at or after a time, in file order, as raw
/// messages: the same bytes, key and headers (so the same `ce_id` and
/// `ce_time`), without `reply_to` (the original
/// requester's inbox is gone: a replayed request is answered on
/// `{topic}.response`, as a Go request is).
///
/// # Example
///
/// ```
/// use std::time::SystemTime;
/// use serde::{Deserialize, Serialize};
/// use topicbus::{Bus, EventLog, Topic};
///
/// #[derive(Clone, Serialize, Deserialize, Topic)]
/// #[topic(name = "index.chunk.created")]
/// struct ChunkCreated { chunk_id: String }
///
/// # async fn demo() -> topicbus::Result<()> {
/// let path = std::env::temp_dir().join(format!("topicbus-doc-{}.jsonl", std::process::id()));
/// let start = SystemTime::now();
/// let bus = Bus::builder().event_log(EventLog::open(&path)?).build();
/// bus.publish(&ChunkCreated { chunk_id: "c-1".into() }).await?;
/// bus.shutdown().await?; // flushes and syncs the log
///
/// let fresh = Bus::memory();
/// let replayed = fresh.replay_event_log(&path, start).await?;
/// assert_eq!(replayed.published, 1);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    queue: mpsc::UnboundedSender<Command>,
    /// Bytes of lines the queue may still take: a line holds its length's
    /// worth of permits (at most all of them) until the writer wrote it.
    room: Arc<Semaphore>,
    max_queue_bytes: u32,
    max_line_bytes: usize,
}

enum Command {
    Line(Vec<u8>, OwnedSemaphorePermit),
    Sync(oneshot::Sender<io::Result<()>>),
}

impl fmt::Debug for EventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Opens an [`EventLog`] with non-default settings.
#[derive(Debug, Clone)]
#[must_use]
pub struct EventLogBuilder {
    path: PathBuf,
    flush_interval: Duration,
    max_line_bytes: usize,
    max_queue_bytes: usize,
    max_file_bytes: u64,
}

impl EventLogBuilder {
    /// Longest time a line waits in the writer's buffer while lines keep
    /// coming (default 100 ms); an idle writer writes at once.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Longest line (default 2 MiB, room for a 1 MB payload in base64 and
    /// its headers): a message whose line would be longer is logged as a
    /// summary with `omitted_bytes` (see [`EventLog`]).
    pub fn max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        self
    }

    /// Bytes of lines queued for the writer before recorders wait (default
    /// 16 MiB, at most 4 GiB). A longer line waits for the queue to be
    /// empty.
    pub fn max_queue_bytes(mut self, max: usize) -> Self {
        self.max_queue_bytes = max.max(1);
        self
    }

    /// Size at which the file is renamed to `{path}.1` and a new one
    /// started (default 1 GiB; see [`EventLog`]).
    pub fn max_file_bytes(mut self, max: u64) -> Self {
        self.max_file_bytes = max;
        self
    }

    /// Opens (creates, or appends to) the file and starts the writer.
    /// Fails with [`Error::Config`] naming the path when it cannot be
    /// opened for appending.
    pub fn open(self) -> Result<EventLog> {
        let cannot = |error: io::Error| Error::Config {
            key: "event_log_path".to_owned(),
            message: format!(
                "`{}`: cannot open the event log: {error}",
                self.path.display()
            ),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(cannot)?;
        if ends_in_a_torn_line(&mut file).map_err(cannot)? {
            file.write_all(b"\n").map_err(cannot)?;
        }
        let size = file.metadata().map_err(cannot)?.len();
        let (queue, lines) = mpsc::unbounded_channel();
        let writer = Writer {
            path: self.path.clone(),
            out: BufWriter::with_capacity(BUFFER_BYTES, file),
            flush_interval: self.flush_interval,
            size,
            max_file_bytes: self.max_file_bytes,
            failing: false,
        };
        let max_queue_bytes = u32::try_from(self.max_queue_bytes).unwrap_or(u32::MAX);
        std::thread::Builder::new()
            .name("topicbus-event-log".to_owned())
            .spawn(move || writer.run(lines))
            .map_err(cannot)?;
        Ok(EventLog {
            inner: Arc::new(Inner {
                path: self.path,
                queue,
                room: Arc::new(Semaphore::new(max_queue_bytes as usize)),
                max_queue_bytes,
                max_line_bytes: self.max_line_bytes,
            }),
        })
    }
}

/// Whether a non-empty file does not end with a newline (a crash cut its
/// last line short).
fn ends_in_a_torn_line(file: &mut File) -> io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

impl EventLog {
    /// Opens (creates, or appends to) the log at `path` with the default
    /// settings.
    pub fn open(path: impl AsRef<Path>) -> Result<EventLog> {
        Self::builder(path).open()
    }

    /// A builder for a log at `path` with other settings.
    pub fn builder(path: impl AsRef<Path>) -> EventLogBuilder {
        EventLogBuilder {
            path: path.as_ref().to_path_buf(),
            flush_interval: Duration::from_millis(100),
            max_line_bytes: MAX_LINE_BYTES,
            max_queue_bytes: MAX_QUEUE_BYTES,
            max_file_bytes: MAX_FILE_BYTES,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Waits until every line recorded so far is written and synced to
    /// disk (`fsync`).
    pub async fn sync(&self) -> Result<()> {
        let (done, synced) = oneshot::channel();
        let failed = |message: String, source: Option<crate::BoxError>| Error::Unavailable {
            message: format!("event log `{}`: {message}", self.inner.path.display()),
            source,
        };
        if self.inner.queue.send(Command::Sync(done)).is_err() {
            return Err(failed("the writer has stopped".to_owned(), None));
        }
        match synced.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(failed(
                format!("could not write and sync: {error}"),
                Some(Box::new(error)),
            )),
            Err(_) => Err(failed("the writer has stopped".to_owned(), None)),
        }
    }

    /// Records a message this instance published. `Some` when the writer's
    /// queue is full: await it before going on.
    pub(crate) fn published(&self, message: &Message) -> Option<BoxFuture<'static, ()>> {
        let line = encode_line(
            Direction::Published,
            message,
            None,
            message.meta.time,
            self.inner.max_line_bytes,
        );
        self.record(line)
    }

    /// Records a message handed to a handler of `group`. `Some` when the
    /// writer's queue is full: await it before going on.
    pub(crate) fn delivered(
        &self,
        message: &Message,
        group: &str,
    ) -> Option<BoxFuture<'static, ()>> {
        let line = encode_line(
            Direction::Delivered,
            message,
            Some(group),
            SystemTime::now(),
            self.inner.max_line_bytes,
        );
        self.record(line)
    }

    fn record(&self, line: Vec<u8>) -> Option<BoxFuture<'static, ()>> {
        // A line longer than the whole queue takes all of it.
        let cost = u32::try_from(line.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.inner.max_queue_bytes);
        match Arc::clone(&self.inner.room).try_acquire_many_owned(cost) {
            Ok(permit) => {
                self.inner.send(line, permit);
                None
            }
            Err(TryAcquireError::NoPermits) => {
                let inner = Arc::clone(&self.inner);
                Some(Box::pin(async move {
                    match Arc::clone(&inner.room).acquire_many_owned(cost).await {
                        Ok(permit) => inner.send(line, permit),
                        Err(_) => inner.lost(),
                    }
                }))
            }
            Err(TryAcquireError::Closed) => {
                self.inner.lost();
                None
            }
        }
    }
}

impl Inner {
    fn send(&self, line: Vec<u8>, permit: OwnedSemaphorePermit) {
        if self.queue.send(Command::Line(line, permit)).is_err() {
            self.lost();
        }
    }

    fn lost(&self) {
        tracing::error!(
            path = %self.path.display(),
            "the event log writer has stopped; a line is lost"
        );
    }
}

/// The background writer: appends lines, flushes when idle or every
/// `flush_interval`, starts a new file past `max_file_bytes`, syncs on
/// request and at the end.
struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    flush_interval: Duration,
    /// Bytes in the file, written or buffered.
    size: u64,
    max_file_bytes: u64,
    /// Whether the last write failed (so that a failing disk is reported
    /// once, and its recovery too).
    failing: bool,
}

impl Writer {
    fn run(mut self, mut lines: mpsc::UnboundedReceiver<Command>) {
        let mut unflushed_since: Option<Instant> = None;
        loop {
            let command = match lines.try_recv() {
                Ok(command) => command,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if unflushed_since.take().is_some() {
                        let flushed = self.out.flush();
                        self.report(flushed);
                    }
                    match lines.blocking_recv() {
                        Some(command) => command,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            match command {
                Command::Line(line, room) => {
                    let length = line.len() as u64;
                    if self.size > 0 && self.size.saturating_add(length) > self.max_file_bytes {
                        let rotated = self.rotate();
                        self.report(rotated);
                    }
                    let written = self.out.write_all(&line);
                    self.report(written);
                    self.size += length;
                    // The line is in the writer's buffer or the file.
                    drop(room);
                    let since = *unflushed_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.flush_interval {
                        let flushed = self.out.flush();
                        self.report(flushed);
                        unflushed_since = None;
                    }
                }
                Command::Sync(done) => {
                    unflushed_since = None;
                    let synced = self.sync();
                    // The asker may have given up waiting.
                    let _ = done.send(synced);
                }
            }
        }
        let synced = self.sync();
        self.report(synced);
    }

    fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    /// Renames the file to `{path}.1` and starts a new one. On failure the
    /// writer goes on appending to the file it has.
    fn rotate(&mut self) -> io::Result<()> {
        self.sync()?;
        let mut previous = self.path.clone().into_os_string();
        previous.push(".1");
        std::fs::rename(&self.path, &previous)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.out = BufWriter::with_capacity(BUFFER_BYTES, file);
        self.size = 0;
        tracing::info!(path = %self.path.display(), "event log reached max_file_bytes: renamed to `.1`, started a new file");
        Ok(())
    }

    fn report(&mut self, outcome: io::Result<()>) {
        match outcome {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::warn!(path = %self.path.display(), "event log writes succeed again");
            }
            Ok(()) => {}
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::error!(path = %self.path.display(), %error, "could not write the event log");
            }
            Err(_) => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Direction {
    Published,
    Delivered,
}

/// A line as written.
#[derive(Serialize)]
struct LineOut<'a> {
    direction: Direction,
    time: &'a str,
    topic: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    headers: TextHeaders<'a>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers_base64: BTreeMap<&'a str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_error: Option<String>,
}

/// The line of a message whose full line is over `max_line_bytes`.
#[derive(Serialize)]
struct SummaryOut<'a> {
    direction: Direction,
    time: &'a str,
    topic: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    omitted_bytes: usize,
}

/// The UTF-8 headers of a message, as a JSON object in header order.
struct TextHeaders<'a>(&'a Headers);

impl Serialize for TextHeaders<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in self.0.iter() {
            if let Ok(text) = std::str::from_utf8(value) {
                map.serialize_entry(name, text)?;
            }
        }
        map.end()
    }
}

/// One line of the log for `message`, with its newline; its summary when
/// the line would be longer than `max_line_bytes`.
fn encode_line(
    direction: Direction,
    message: &Message,
    group: Option<&str>,
    time: SystemTime,
    max_line_bytes: usize,
) -> Vec<u8> {
    let meta = &message.meta;
    let headers = wire::headers(meta);
    let headers_base64 = headers
        .iter()
        .filter(|(_, value)| std::str::from_utf8(value).is_err())
        .map(|(name, value)| (name, BASE64.encode(value)))
        .collect();
    let key_text = meta
        .key
        .as_deref()
        .map(|key| std::str::from_utf8(key).map_err(|_| BASE64.encode(key)));
    let bytes = message.payload().to_bytes();
    let json = meta.content_type.as_deref() == Some(Json::CONTENT_TYPE);
    let (payload, payload_base64, payload_error) = match &bytes {
        Ok(bytes) => match json.then(|| verbatim_json(bytes)).flatten() {
            Some(raw) => (Some(raw), None, None),
            None => (None, Some(BASE64.encode(bytes)), None),
        },
        Err(error) => (
            None,
            None,
            Some(format!("could not encode the payload: {error}")),
        ),
    };
    let time = humantime::format_rfc3339_micros(time).to_string();
    let id = meta.id.to_string();
    let line = LineOut {
        direction,
        time: &time,
        topic: &meta.topic,
        id: &id,
        group,
        key: key_text.as_ref().and_then(|k| k.as_ref().ok().copied()),
        key_base64: key_text.and_then(|k| k.err()),
        headers: TextHeaders(&headers),
        headers_base64,
        payload,
        payload_base64,
        payload_error,
    };
    let mut out = serde_json::to_vec(&line).expect("a log line serializes");
    out.push(b'\n');
    if out.len() <= max_line_bytes {
        return out;
    }
    // The id is the sender's text: only its start is kept.
    let id_end = id
        .char_indices()
        .nth(SUMMARY_ID_CHARS)
        .map_or(id.len(), |(at, _)| at);
    let summary = SummaryOut {
        direction,
        time: &time,
        topic: &meta.topic,
        id: &id[..id_end],
        group,
        omitted_bytes: out.len(),
    };
    let mut out = serde_json::to_vec(&summary).expect("a log line serializes");
    out.push(b'\n');
    out
}

/// `bytes` as a JSON value that reproduces them exactly and fits on one
/// line; `None` when they are not such JSON.
fn verbatim_json(bytes: &[u8]) -> Option<&RawValue> {
    if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
        return None;
    }
    let raw: &RawValue = serde_json::from_slice(bytes).ok()?;
    (raw.get().len() == bytes.len()).then_some(raw)
}

/// A line as read back (the fields replay needs).
#[derive(Deserialize)]
struct LineIn {
    direction: Direction,
    time: String,
    topic: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_base64: Option<String>,
    #[serde(default, deserialize_with = "ordered_headers")]
    headers: Vec<(String, String)>,
    #[serde(default)]
    headers_base64: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "present")]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    omitted_bytes: Option<u64>,
}

/// A JSON value that is there, `null` included.
fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

/// A JSON object of strings, in its order.
fn ordered_headers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<(String, String)>, D::Error> {
    struct Ordered;

    impl<'de> Visitor<'de> for Ordered {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of header names and text values")
        }

        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_map(Ordered)
}

impl LineIn {
    /// The published message this line records, to republish.
    fn into_raw(self) -> std::result::Result<RawMessage, String> {
        if let Some(omitted) = self.omitted_bytes {
            return Err(format!(
                "the log kept only a summary of this message: its line of {omitted} bytes was over max_line_bytes"
            ));
        }
        let decode = |what: &str, text: &str| {
            BASE64
                .decode(text)
                .map_err(|error| format!("bad base64 in `{what}`: {error}"))
        };
        let payload = match (self.payload, self.payload_base64) {
            (Some(json), _) => json.get().as_bytes().to_vec(),
            (None, Some(encoded)) => decode("payload_base64", &encoded)?,
            (None, None) => return Err("no payload".to_owned()),
        };
        let mut raw = RawMessage::new(self.topic, payload);
        raw.key = match (self.key, self.key_base64) {
            (Some(key), _) => Some(key.into_bytes()),
            (None, Some(encoded)) => Some(decode("key_base64", &encoded)?),
            (None, None) => None,
        };
        for (name, value) in self.headers {
            raw.headers.insert(name, value);
        }
        for (name, value) in self.headers_base64 {
            let value = decode("headers_base64", &value)?;
            raw.headers.insert(name, value);
        }
        // A line written by another tool may leave the id and time to the
        // line's own fields.
        if raw.headers.get(wire::ce::ID).is_none() {
            if let Some(id) = self.id {
                raw.headers.insert(wire::ce::ID, id);
            }
        }
        if raw.headers.get(wire::ce::TIME).is_none() {
            raw.headers.insert(wire::ce::TIME, self.time);
        }
        // The original requester's inbox is gone.
        raw.headers.remove(header::REPLY_TO);
        Ok(raw)
    }
}

/// What [`Bus::replay_event_log`](crate::Bus::replay_event_log) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplaySummary {
    /// Messages republished.
    pub published: usize,
    /// Lines that could not be read (cut short by a crash, or damaged),
    /// each reported with a warning naming its line number.
    pub skipped: usize,
}

/// What the reading thread hands to the publishing task.
pub(crate) enum Replayed {
    Message(RawMessage),
    Skipped,
}

/// Sends the published lines at or after `since`, and one `Skipped` per
/// line that cannot be read; stops early when the receiver is gone.
pub(crate) fn read_published(
    mut reader: impl BufRead,
    path: &Path,
    since: SystemTime,
    found: &mpsc::Sender<Replayed>,
) -> io::Result<()> {
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let item = match parse_line(text, since) {
            Ok(Some(raw)) => Replayed::Message(raw),
            Ok(None) => continue,
            Err(reason) => {
                let torn = !line.ends_with(b"\n");
                tracing::warn!(
                    path = %path.display(),
                    line = number,
                    torn,
                    %reason,
                    "skipping an event log line that cannot be read"
                );
                Replayed::Skipped
            }
        };
        if found.blocking_send(item).is_err() {
            return Ok(());
        }
    }
}

/// The message of a published line at or after `since`; `None` for other
/// lines.
fn parse_line(text: &[u8], since: SystemTime) -> std::result::Result<Option<RawMessage>, String> {
    let line: LineIn = serde_json::from_slice(text).map_err(|error| error.to_string())?;
    if line.direction != Direction::Published {
        return Ok(None);
    }
    let time = humantime::parse_rfc3339(&line.time)
        .map_err(|error| format!("bad `time` `{}`: {error}", line.time))?;
    if time < since {
        return Ok(None);
    }
    line.into_raw().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log whose writer is the test: it holds the queue's receiving end.
    fn log_without_writer(max_queue_bytes: u32) -> (EventLog, mpsc::UnboundedReceiver<Command>) {
        let (queue, lines) = mpsc::unbounded_channel();
        let inner = Inner {
            path: PathBuf::from("unused"),
            queue,
            room: Arc::new(Semaphore::new(max_queue_bytes as usize)),
            max_queue_bytes,
            max_line_bytes: MAX_LINE_BYTES,
        };
        let log = EventLog {
            inner: Arc::new(inner),
        };
        (log, lines)
    }

    /// The next line the writer would take: its bytes, and the room it
    /// holds until dropped.
    async fn take(lines: &mut mpsc::UnboundedReceiver<Command>) -> (Vec<u8>, OwnedSemaphorePermit) {
        match lines.recv().await {
            Some(Command::Line(line, room)) => (line, room),
            _ => panic!("expected a line"),
        }
    }

    #[tokio::test]
    async fn recorders_wait_once_the_queued_lines_fill_the_byte_bound() {
        let (log, mut lines) = log_without_writer(100);
        assert!(log.record(vec![b'a'; 60]).is_none(), "60 of 100 bytes");
        let second = log
            .record(vec![b'b'; 60])
            .expect("120 bytes would be over the bound: the recorder waits");
        let (first, room) = take(&mut lines).await;
        assert_eq!(first, [b'a'; 60]);
        drop(room);
        second.await;
        let (second, room) = take(&mut lines).await;
        assert_eq!(second, [b'b'; 60]);

        // A line longer than the whole bound waits until it has all of it.
        let long = log
            .record(vec![b'c'; 500])
            .expect("the queue holds 60 bytes: the long line waits");
        drop(room);
        long.await;
        assert_eq!(take(&mut lines).await.0.len(), 500);
    }
}
