//! Republishing what an event log recorded.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::SystemTime;

use tokio::sync::mpsc;

use super::Bus;
use crate::error::{Error, Result};
use crate::event_log::{read_published, ReplaySummary, Replayed};

impl Bus {
    /// Republishes the messages that the event log at `path` recorded as
    /// published at or after `since`, in file order, with their original
    /// bytes, key and headers (without `reply_to`). Lines that cannot be
    /// read, such as a last line cut short by a crash, are skipped with a
    /// warning and counted. Stops at the first publish that fails and
    /// returns its error.
    ///
    /// Reads only what the file held when the replay started, so replaying
    /// into a bus that logs to the same file ends.
    pub async fn replay_event_log(
        &self,
        path: impl AsRef<Path>,
        since: SystemTime,
    ) -> Result<ReplaySummary> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|error| Error::Config {
            key: path.display().to_string(),
            message: format!("cannot read the event log: {error}"),
        })?;
        let length = file
            .metadata()
            .map_err(|error| Error::Config {
                key: path.display().to_string(),
                message: format!("cannot read the event log: {error}"),
            })?
            .len();
        let (found, mut replayed) = mpsc::channel(256);
        let reader = tokio::task::spawn_blocking(move || {
            read_published(BufReader::new(file.take(length)), &path, since, &found)
        });
        let mut summary = ReplaySummary {
            published: 0,
            skipped: 0,
        };
        while let Some(item) = replayed.recv().await {
            match item {
                Replayed::Message(raw) => {
                    self.publish_raw(raw).await?;
                    summary.published += 1;
                }
                Replayed::Skipped => summary.skipped += 1,
            }
        }
        match reader.await {
            Ok(Ok(())) => Ok(summary),
            Ok(Err(error)) => Err(Error::Unavailable {
                message: format!("reading the event log failed: {error}"),
                source: Some(Box::new(error)),
            }),
            Err(join) => Err(Error::Unavailable {
                message: format!("reading the event log failed: {join}"),
                source: None,
            }),
        }
    }
}
