//! topicbus metrics in Prometheus format: a small publish and request
//! workload on the memory transport, with `metrics-exporter-prometheus`
//! serving what the bus records at `http://127.0.0.1:9000/metrics`.
//!
//! ```text
//! cargo run --example metrics                 # runs 30 s, or until Ctrl-C
//! cargo run --example metrics -- 5            # runs 5 s
//! TOPICBUS_METRICS_ADDR=127.0.0.1:9100 cargo run --example metrics
//! curl -s 127.0.0.1:9000/metrics | grep topicbus_
//! ```
//!
//! Before it exits it prints the topicbus lines of the last scrape.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde::{Deserialize, Serialize};
use topicbus::{Bus, Topic};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "search.request", response = SearchResponse)]
struct SearchRequest {
    query: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "search.response")]
struct SearchResponse {
    hits: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created", key = chunk_id)]
struct ChunkCreated {
    chunk_id: String,
    text: String,
}

/// Seconds to run: the first argument, else `TOPICBUS_METRICS_SECONDS`, else 30.
fn run_for() -> Result<Duration, String> {
    let text = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("TOPICBUS_METRICS_SECONDS").ok());
    match text {
        None => Ok(Duration::from_secs(30)),
        Some(text) => text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("the run time must be whole seconds, not `{text}`: {e}")),
    }
}

fn listen_address() -> Result<SocketAddr, String> {
    let text =
        std::env::var("TOPICBUS_METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9000".to_owned());
    text.parse()
        .map_err(|e| format!("TOPICBUS_METRICS_ADDR must be `host:port`, not `{text}`: {e}"))
}

/// Publishes a chunk and asks a search request every 20 ms, forever; every
/// 50th request is given 1 ms and times out.
async fn workload(bus: &Bus) -> topicbus::Result<()> {
    for n in 0u64.. {
        let text = if n % 10 == 9 {
            String::new()
        } else {
            format!("chunk {n}")
        };
        bus.publish(&ChunkCreated {
            chunk_id: format!("c-{n}"),
            text,
        })
        .await?;
        let impatient = n % 50 == 49;
        let limit = Duration::from_millis(if impatient { 1 } else { 500 });
        let request = SearchRequest {
            query: format!("query {n}"),
        };
        match bus.request(&request).timeout(limit).await {
            Ok(_) => {}
            Err(error) if impatient => println!("request {n}: {error}"),
            Err(error) => return Err(error),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run_for = run_for()?;
    let address = listen_address()?;

    // The recorder first: the bus registers its metric handles with the
    // recorder that is installed when it subscribes and publishes.
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0],
        )?
        .build()?;
    let scrape = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    tokio::spawn(exporter);
    println!("serving metrics at http://{address}/metrics for {run_for:?} (Ctrl-C stops)");

    let bus = Bus::builder().service("search").build();
    bus.group("search.engine")
        .serve(|request: SearchRequest| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok::<_, std::convert::Infallible>(SearchResponse {
                hits: request.query.len(),
            })
        })
        .await?;
    // Every tenth chunk is refused: retried, then dead-lettered.
    bus.group("search.indexer")
        .subscribe(|chunk: ChunkCreated| async move {
            if chunk.text.is_empty() {
                Err(format!("chunk {} has no text", chunk.chunk_id))
            } else {
                Ok(())
            }
        })
        .retries(1)
        .backoff(Duration::from_millis(10))
        .await?;

    tokio::select! {
        result = workload(&bus) => result?,
        _ = tokio::time::sleep(run_for) => {}
        _ = tokio::signal::ctrl_c() => println!("interrupted"),
    }
    bus.shutdown().await?;

    for line in scrape.render().lines() {
        if line.starts_with("topicbus_") {
            println!("{line}");
        }
    }
    Ok(())
}
