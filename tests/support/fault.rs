//! Counting for the fault tests: which numbered messages were sent, which
//! the bus acknowledged, how often each was received; the one-line report
//! every fault test prints.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Hang guard only; nothing asserts on how fast anything is.
#[allow(dead_code)]
pub const HANG: Duration = Duration::from_secs(180);

/// Awaits `future`, failing the test if it takes longer than [`HANG`].
#[allow(dead_code)]
pub async fn guard<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what} did not finish within {HANG:?}"))
}

/// How often each message number was received, with a wake-up per receipt.
#[derive(Default)]
pub struct Tally {
    counts: Mutex<HashMap<u64, u32>>,
    changed: Notify,
}

#[allow(dead_code)]
impl Tally {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn record(&self, n: u64) {
        *self.counts.lock().unwrap().entry(n).or_default() += 1;
        self.changed.notify_waiters();
    }

    /// Records every number of `ns` (a log read back from a child process).
    pub fn record_all(&self, ns: impl IntoIterator<Item = u64>) {
        let mut counts = self.counts.lock().unwrap();
        for n in ns {
            *counts.entry(n).or_default() += 1;
        }
        drop(counts);
        self.changed.notify_waiters();
    }

    pub fn count(&self, n: u64) -> u32 {
        self.counts.lock().unwrap().get(&n).copied().unwrap_or(0)
    }

    /// How many distinct numbers were received.
    pub fn distinct(&self) -> usize {
        self.counts.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> HashMap<u64, u32> {
        self.counts.lock().unwrap().clone()
    }

    /// Waits until every number of `wanted` was received at least once.
    pub async fn wait_for_all(&self, wanted: impl IntoIterator<Item = u64>, what: &str) {
        let wanted: Vec<u64> = wanted.into_iter().collect();
        // Receipts only accumulate: what was there stays there.
        let mut next = 0;
        guard(what, async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                {
                    let counts = self.counts.lock().unwrap();
                    while next < wanted.len() && counts.contains_key(&wanted[next]) {
                        next += 1;
                    }
                }
                if next == wanted.len() {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }
}

/// The figures of one fault case.
#[derive(Debug, Clone)]
pub struct Figures {
    pub sent: usize,
    pub acknowledged: usize,
    pub received: usize,
    /// Acknowledged messages never received.
    pub lost: usize,
    /// Receipts beyond the first, of any message.
    pub duplicated: usize,
    /// Up to ten lost message numbers, for the failure message.
    pub lost_examples: Vec<u64>,
}

impl Figures {
    /// Counts `acknowledged` against `received` (every receipt of the case's
    /// data messages: numbers below `sent`).
    pub fn count(sent: usize, acknowledged: &BTreeSet<u64>, received: &HashMap<u64, u32>) -> Self {
        let data = |n: &&u64| **n < sent as u64;
        let lost: Vec<u64> = acknowledged
            .iter()
            .filter(|n| !received.contains_key(n))
            .copied()
            .collect();
        Figures {
            sent,
            acknowledged: acknowledged.len(),
            received: received.keys().filter(data).count(),
            lost: lost.len(),
            duplicated: received
                .iter()
                .filter(|(n, _)| **n < sent as u64)
                .map(|(_, c)| (*c as usize).saturating_sub(1))
                .sum(),
            lost_examples: lost.into_iter().take(10).collect(),
        }
    }

    /// Prints the one-line report (`fault <case>: sent=.. ...`) and any
    /// extra figures.
    pub fn print(&self, case: &str, extra: &str) {
        println!(
            "fault {case}: sent={} acknowledged={} received={} lost={} duplicated={}{}{extra}",
            self.sent,
            self.acknowledged,
            self.received,
            self.lost,
            self.duplicated,
            if extra.is_empty() { "" } else { " " },
        );
    }

    /// Fails unless every acknowledged message was received.
    pub fn assert_nothing_lost(&self, case: &str) {
        assert_eq!(
            self.lost, 0,
            "fault {case}: {} acknowledged messages never received, e.g. {:?}",
            self.lost, self.lost_examples
        );
    }
}
