//! `topicbus replay`: republish what an event log recorded.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::cluster::Cluster;
use crate::{send, show, Failure};

/// Republishes the messages the event log at `path` recorded as published
/// at or after `since` (`Bus::replay_event_log`), then prints the counts.
pub async fn run(cluster: Cluster, path: PathBuf, since: SystemTime) -> Result<(), Failure> {
    if !path.is_file() {
        return Err(Failure(format!(
            "the event log `{}` is not a readable file",
            path.display()
        )));
    }
    let bus = cluster.bus().await?;
    eprintln!(
        "replaying `{}`: messages published since {}",
        path.display(),
        humantime::format_rfc3339_millis(since)
    );
    let replayed = bus.replay_event_log(&path, since).await;
    send::close(&bus).await;
    let summary = replayed?;
    let text = format!(
        "replayed {} message{} from `{}`{}\n",
        summary.published,
        if summary.published == 1 { "" } else { "s" },
        path.display(),
        match summary.skipped {
            0 => String::new(),
            n => format!(
                " ({n} unreadable line{} skipped)",
                if n == 1 { "" } else { "s" }
            ),
        }
    );
    show::emit(&mut std::io::stdout(), &text).map(drop)
}
