//! Middleware on the memory transport: where the bus's and a subscription's
//! layers sit, tower's own layers working unchanged, and what becomes of a
//! layer's error, panic or skip. The shipped layers run on every transport
//! in the conformance kit (`middleware::*`).

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use topicbus::middleware::{Delivery, Handled};
use topicbus::{header, BoxError, Bus, Error, RawMessage, Topic};
use tower::{Layer, Service};

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "middleware.job")]
struct Job {
    n: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, Topic)]
#[topic(name = "middleware.ask", response = Answer)]
struct Ask {
    n: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "middleware.answer")]
struct Answer {
    n: u64,
}

/// Writes its name to a shared trace when a call passes through it.
#[derive(Clone)]
struct Mark {
    name: &'static str,
    trace: Arc<Mutex<Vec<&'static str>>>,
}

impl<S> Layer<S> for Mark {
    type Service = Marked<S>;
    fn layer(&self, inner: S) -> Marked<S> {
        Marked {
            inner,
            mark: self.clone(),
        }
    }
}

struct Marked<S> {
    inner: S,
    mark: Mark,
}

impl<S: Service<Delivery>> Service<Delivery> for Marked<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, delivery: Delivery) -> S::Future {
        self.mark.trace.lock().unwrap().push(self.mark.name);
        self.inner.call(delivery)
    }
}

/// Answers for the handler, or fails, or panics, by the message's number.
#[derive(Clone)]
struct Meddle;

impl<S> Layer<S> for Meddle {
    type Service = Meddled<S>;
    fn layer(&self, inner: S) -> Meddled<S> {
        Meddled(inner)
    }
}

struct Meddled<S>(S);

impl<S> Service<Delivery> for Meddled<S>
where
    S: Service<Delivery, Response = Handled, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Handled;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<Handled, BoxError>>;
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let act = delivery
            .context()
            .headers()
            .get_str("act")
            .map(str::to_owned);
        match act.as_deref() {
            Some("skip") => Box::pin(async { Ok(Handled::skipped()) }),
            Some("fail") => Box::pin(async { Err("refused by a layer".into()) }),
            Some("panic") => panic!("a layer panicked"),
            _ => Box::pin(self.0.call(delivery)),
        }
    }
}

/// What reaches `{topic}.dlq` of `T`.
async fn dead_letters<T: Topic>(bus: &Bus) -> mpsc::UnboundedReceiver<RawMessage> {
    let (tx, rx) = mpsc::unbounded_channel();
    bus.group("dlq-reader")
        .subscribe_raw(format!("{}.dlq", T::NAME), move |message, _| {
            let _ = tx.send(message);
            async { Ok::<(), Infallible>(()) }
        })
        .await
        .expect("subscribe to the dead-letter topic");
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_layers_wrap_the_subscription_layers_first_added_outermost() {
    let trace = Arc::new(Mutex::new(Vec::new()));
    let mark = |name| Mark {
        name,
        trace: Arc::clone(&trace),
    };
    let bus = Bus::builder()
        .layer(mark("bus 1"))
        .layer(mark("bus 2"))
        .build();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler_trace = Arc::clone(&trace);
    bus.group("ordered")
        .subscribe(move |job: Job| {
            handler_trace.lock().unwrap().push("handler");
            let _ = tx.send(job.n);
            async { Ok::<(), Infallible>(()) }
        })
        .layer(mark("subscription 1"))
        .layer(mark("subscription 2"))
        .await
        .unwrap();
    bus.publish(&Job { n: 1 }).await.unwrap();
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(
        *trace.lock().unwrap(),
        [
            "bus 1",
            "bus 2",
            "subscription 1",
            "subscription 2",
            "handler"
        ]
    );
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn towers_own_layers_work_unchanged() {
    let bus = Bus::builder()
        .retries(1)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .build();
    let mut dlq = dead_letters::<Job>(&bus).await;
    // At most one call at a time although the subscription allows eight,
    // and no call may take longer than 100 ms.
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (now_in, most_in) = (Arc::clone(&now), Arc::clone(&most));
    let (tx, mut rx) = mpsc::unbounded_channel();
    bus.group("limited")
        .subscribe(move |job: Job| {
            let (now, most, tx) = (Arc::clone(&now_in), Arc::clone(&most_in), tx.clone());
            async move {
                if job.n == 0 {
                    // Cut short by the timeout layer, each attempt.
                    tokio::time::sleep(Duration::from_secs(3_600)).await;
                }
                let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(at_once, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(job.n);
                Ok::<(), Infallible>(())
            }
        })
        .concurrency(8)
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            100,
        )))
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .await
        .unwrap();
    let jobs: Vec<Job> = (0..20).map(|n| Job { n }).collect();
    bus.publish_batch(&jobs).await.unwrap();
    let mut handled = Vec::new();
    while handled.len() < 19 {
        handled.push(rx.recv().await.unwrap());
    }
    handled.sort_unstable();
    assert_eq!(handled, (1..20).collect::<Vec<_>>());
    let dead = dlq.recv().await.unwrap();
    assert_eq!(dead.headers.get_str(header::ERROR_KIND), Some("middleware"));
    assert_eq!(dead.headers.get_str(header::ATTEMPTS), Some("2"));
    assert_eq!(most.load(Ordering::SeqCst), 1, "calls at once");
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layers_error_or_panic_fails_the_attempt_and_a_skip_sends_no_reply() {
    let bus = Bus::builder()
        .retries(2)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .request_timeout(Duration::from_millis(300))
        .build();
    let mut dlq = dead_letters::<Job>(&bus).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let calls_in = Arc::clone(&calls);
    bus.group("meddled")
        .subscribe(move |_: Job| {
            calls_in.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), Infallible>(()) }
        })
        .layer(Meddle)
        .await
        .unwrap();
    bus.group("answers")
        .serve(|ask: Ask| async move { Ok::<_, Infallible>(Answer { n: ask.n }) })
        .layer(Meddle)
        .await
        .unwrap();

    for act in ["fail", "panic"] {
        let mut headers = topicbus::Headers::new();
        headers.insert("act", act);
        bus.publish_with(&Job { n: 1 }, headers).await.unwrap();
        let dead = dlq.recv().await.unwrap();
        let (kind, reason) = (
            dead.headers.get_str(header::ERROR_KIND),
            dead.headers.get_str(header::ERROR).unwrap_or_default(),
        );
        match act {
            "fail" => {
                assert_eq!(kind, Some("middleware"));
                assert!(reason.contains("refused by a layer"), "{reason}");
            }
            _ => {
                assert_eq!(kind, Some("panic"));
                assert!(reason.contains("a layer panicked"), "{reason}");
            }
        }
        assert_eq!(dead.headers.get_str(header::ATTEMPTS), Some("3"), "{act}");
    }
    let mut skip = topicbus::Headers::new();
    skip.insert("act", "skip");
    bus.publish_with(&Job { n: 2 }, skip.clone()).await.unwrap();
    bus.publish(&Job { n: 3 }).await.unwrap();
    while calls.load(Ordering::SeqCst) < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        bus.request(&Ask { n: 7 }).await.unwrap(),
        Answer { n: 7 },
        "a request the layer lets through is answered"
    );
    match bus.request(&Ask { n: 8 }).headers(skip).await {
        Err(Error::Timeout { .. }) => {}
        other => panic!("a skipped request gets no reply: {other:?}"),
    }
    bus.shutdown().await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the message no layer stopped reached the handler"
    );
    assert!(dlq.try_recv().is_err(), "a skip is not dead-lettered");
}
