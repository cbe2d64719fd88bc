//! A handler middleware of one's own, beside the shipped ones: `Timing`
//! reports how long each handler call took and how it ended, for every
//! subscription of the bus; one subscription adds topicbus's dedup window.
//!
//! ```text
//! cargo run --example middleware
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use topicbus::middleware::{DedupLayer, Delivery, Handled};
use topicbus::{BoxError, Bus, Headers, MessageId, Topic};
use tower::{Layer, Service};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "orders.placed", key = order_id)]
struct OrderPlaced {
    order_id: String,
    total_cents: u64,
}

/// The layer: makes one `TimingService` per subscription.
#[derive(Clone)]
struct Timing;

impl<S> Layer<S> for Timing {
    type Service = TimingService<S>;

    fn layer(&self, inner: S) -> TimingService<S> {
        TimingService { inner }
    }
}

struct TimingService<S> {
    inner: S,
}

impl<S> Service<Delivery> for TimingService<S>
where
    S: Service<Delivery, Response = Handled, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Handled;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Handled, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let ctx = delivery.context();
        let what = format!("{} {} (attempt {})", ctx.topic(), ctx.id(), ctx.attempt());
        let started = Instant::now();
        let call = self.inner.call(delivery);
        Box::pin(async move {
            let outcome = call.await;
            let ended = match &outcome {
                Ok(handled) if handled.is_skipped() => "skipped".to_owned(),
                Ok(_) => "handled".to_owned(),
                Err(error) => format!("failed: {error}"),
            };
            println!("timing: {what}: {ended} in {:?}", started.elapsed());
            outcome
        })
    }
}

#[tokio::main]
async fn main() -> topicbus::Result<()> {
    let bus = Bus::builder().service("shop").layer(Timing).build();
    let (done, mut handled) = mpsc::unbounded_channel();
    bus.group("billing")
        .subscribe(move |order: OrderPlaced| {
            let done = done.clone();
            async move {
                println!(
                    "billing: {} for {} cents",
                    order.order_id, order.total_cents
                );
                let _ = done.send(order.order_id);
                Ok::<(), Infallible>(())
            }
        })
        .layer(DedupLayer::new(1_000))
        .await?;

    // The checkout publishes each order under an id of its own; the second
    // `o-1` is a retry of the first and is skipped.
    for (order_id, total_cents) in [("o-1", 1_250), ("o-2", 990), ("o-1", 1_250)] {
        let order = OrderPlaced {
            order_id: order_id.to_owned(),
            total_cents,
        };
        let id = MessageId::parse(&format!("order-placed-{order_id}"));
        bus.publish_with_id(&order, id, Headers::new()).await?;
    }
    // Shutdown handles what is queued, the repeated order included.
    bus.shutdown().await?;
    let mut billed = Vec::new();
    while let Ok(order_id) = handled.try_recv() {
        billed.push(order_id);
    }
    billed.sort();
    assert_eq!(billed, ["o-1", "o-2"], "the repeated order was skipped");
    println!("billing handled o-1 and o-2 once each");
    Ok(())
}
