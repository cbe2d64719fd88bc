//! Entry points for the fuzz targets in `fuzz/` into the record-reading
//! code that is not public. Compiled only with `--cfg fuzzing`, which
//! cargo-fuzz sets; not public API.
//!
//! Each entry reads hostile input as a consumer would, and checks what the
//! rest of topicbus relies on: reading never panics, and what is read
//! survives being written out again (a dead letter, a re-drive, the Go
//! envelope).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::message::{Headers, MessageId, Meta};
use crate::wire::{self, HeaderLimits, Recent};

// The Go envelope belongs to the Kafka transport; compiled here on its own,
// it is fuzzed without building librdkafka.
#[path = "transport/kafka/envelope.rs"]
mod envelope;

const TOPIC: &str = "fuzz.topic";

/// Reads `headers` as a consumer reads a record's; reads them again through
/// what the first read remembered; writes the metadata out as a dead letter
/// would and reads that back. Panics when the readings disagree.
pub fn read_headers(headers: &[(&str, &[u8])]) {
    let missing_source: Arc<str> = Arc::from("fuzz-source");
    let mut recent = Recent::new(Arc::clone(&missing_source), HeaderLimits::default());
    let read = |recent: &mut Recent| {
        wire::read_meta(Cow::Borrowed(TOPIC), None, headers.iter().copied(), recent)
    };
    let first = read(&mut recent);
    let again = read(&mut recent);
    assert_eq!(readable(&first), readable(&again), "read twice");
    assert_eq!(first.malformed, again.malformed, "problems read twice");
    // An unreadable header stays as received, and its value is made up
    // anew at each reading.
    let read_well = |name: &str| {
        !first
            .malformed
            .as_deref()
            .is_some_and(|why| why.contains(&format!("`{name}`")))
    };
    // Headers past the reader's limits are dropped unread, and the drop is
    // named once, where it happened.
    let dropped = first
        .malformed
        .as_deref()
        .is_some_and(|why| why.contains("(max_headers)"));
    let time_read = read_well(wire::ce::TIME);
    let has_time = headers.iter().any(|(name, _)| *name == wire::ce::TIME);
    if time_read && has_time && !dropped {
        assert_eq!(first.time, again.time, "ce_time read twice");
    }

    let written = wire::headers(&first);
    let back = wire::read_meta(
        Cow::Borrowed(TOPIC),
        None,
        written.iter(),
        &mut Recent::new(missing_source, HeaderLimits::default()),
    );
    assert_eq!(readable(&first), readable(&back), "written and read back");
    if !dropped {
        assert_eq!(
            first.malformed, back.malformed,
            "problems written and read back"
        );
    }
    if read_well(wire::ce::ID) {
        assert_eq!(first.id, back.id, "ce_id written and read back");
    }
    if time_read {
        assert_eq!(
            millis(first.time),
            millis(back.time),
            "ce_time written and read back"
        );
    }
}

/// What a reading gives that does not depend on when or by whom it is read
/// (absent ids and times are made up anew each time).
fn readable(meta: &Meta) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        &*meta.source,
        meta.content_type.as_deref(),
        meta.correlation_id.as_ref(),
        meta.reply_to.as_deref(),
        sorted(&meta.headers),
    )
}

/// Application headers by name: writing puts topicbus's own first, in their
/// wire order, wherever the reader found them.
fn sorted(headers: &Headers) -> Vec<(&str, &[u8])> {
    let mut list: Vec<_> = headers.iter().collect();
    list.sort();
    list
}

/// Whole milliseconds since 1970, rounded down (as `ce_time` is written).
fn millis(time: SystemTime) -> i128 {
    let nanos = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    nanos.div_euclid(1_000_000)
}

/// Unwraps `value` as a Go envelope, as a consumer in envelope mode does;
/// when it is one, wraps the payload again as a producer in envelope mode
/// does and unwraps that. Panics when the two disagree.
pub fn unwrap_envelope(value: &[u8]) {
    let mut meta = blank_meta();
    let Some(payload) = envelope::unwrap(&mut meta, value) else {
        return;
    };
    let wrapped = envelope::wrap(&meta, &payload).expect("an unwrapped payload is JSON");
    let mut again = blank_meta();
    let payload_again =
        envelope::unwrap(&mut again, &wrapped).expect("a wrapped payload is an envelope");
    assert_eq!(payload, payload_again, "payload wrapped and unwrapped");
    assert_eq!(meta.id, again.id, "id");
    assert_eq!(meta.correlation_id, again.correlation_id, "correlation id");
    assert_eq!(meta.source, again.source, "source");
    // The envelope's timestamp is written in Unix nanoseconds and read by
    // magnitude (seconds to nanoseconds), which tells the units apart from
    // 1973-03-03 (10^17 ns) to 2262 (the end of an i64 of nanoseconds).
    let nanos = meta.time.duration_since(UNIX_EPOCH).map(|d| d.as_nanos());
    if nanos.is_ok_and(|nanos| (100_000_000_000_000_000..=i64::MAX as u128).contains(&nanos)) {
        assert_eq!(meta.time, again.time, "timestamp");
    }
}

fn blank_meta() -> Meta {
    Meta {
        topic: Cow::Borrowed(TOPIC),
        id: MessageId::parse("blank"),
        time: UNIX_EPOCH,
        source: Arc::from("blank"),
        key: None,
        correlation_id: None,
        reply_to: None,
        content_type: None,
        headers: Headers::new(),
        malformed: None,
    }
}
