//! Raw requests (`Bus::request_raw`): bytes and headers to a typed
//! responder, the reply as bytes and headers, errors as for typed requests.

use serde::{Deserialize, Serialize};
use topicbus::{Error, RawMessage, Topic};

use crate::harness::{guard, Harness, Net, Setup};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.raw_halve", response = Halved)]
pub struct Halve {
    n: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Topic)]
#[topic(name = "conformance.rpc.raw_halved")]
pub struct Halved {
    half: i64,
}

fn raw_halve(json: &str) -> RawMessage {
    let mut request = RawMessage::new(Halve::NAME, json.as_bytes().to_vec());
    request.headers.insert("content-type", "application/json");
    request.headers.insert("tenant", "acme");
    request
}

/// A JSON request without a Rust type reaches a typed responder, which sees
/// its headers and a correlation id; the reply comes back as JSON bytes with
/// the correlation id and content type; a handler error and an undecodable
/// request come back as `Error::Remote`; nothing stays pending.
pub async fn raw_request_gets_the_raw_reply_and_remote_errors<H: Harness>(harness: H) {
    let net = Net::new(&harness, Setup::default()).await;
    let responder = net.bus("halver").await;
    responder
        .group(net.group("raw_request.halve"))
        .serve(|request: Halve, ctx: topicbus::Context| async move {
            assert!(ctx.correlation_id().is_some(), "requests are correlated");
            assert_eq!(ctx.headers().get_str("tenant"), Some("acme"));
            if request.n % 2 == 0 {
                Ok(Halved {
                    half: request.n / 2,
                })
            } else {
                Err(format!("{} is odd", request.n))
            }
        })
        .retries(0)
        .await
        .expect("serve");
    let client = net.bus("client").await;

    let reply = guard("raw request", client.request_raw(raw_halve(r#"{"n":42}"#)))
        .await
        .expect("raw reply");
    let value: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert_eq!(value, serde_json::json!({ "half": 21 }));
    assert_eq!(
        reply.headers.get_str("content-type"),
        Some("application/json")
    );
    assert!(
        reply.headers.get_str("correlation_id").is_some(),
        "the reply carries the correlation id: {:?}",
        reply.headers
    );

    match guard("odd request", client.request_raw(raw_halve(r#"{"n":7}"#))).await {
        Err(Error::Remote { topic, message }) => {
            assert_eq!(topic, Halve::NAME);
            assert!(
                message.contains("7 is odd"),
                "the handler's error: {message}"
            );
        }
        other => panic!("expected Error::Remote, got {other:?}"),
    }
    match guard(
        "undecodable request",
        client.request_raw(raw_halve(r#"{"m":1}"#)),
    )
    .await
    {
        Err(Error::Remote { message, .. }) => {
            assert!(
                message.contains("could not decode"),
                "decode error: {message}"
            );
        }
        other => panic!("expected Error::Remote, got {other:?}"),
    }
    // A request without a content-type (another client's) is read with
    // the topic's codec, and its reply says which one that is.
    let mut bare = raw_halve(r#"{"n":8}"#);
    bare.headers.remove("content-type");
    let reply = guard("request without content-type", client.request_raw(bare))
        .await
        .expect("raw reply");
    assert_eq!(reply.payload, br#"{"half":4}"#);
    assert_eq!(
        reply.headers.get_str("content-type"),
        Some("application/json"),
        "every reply carries its content type: {:?}",
        reply.headers
    );
    assert_eq!(client.stats().pending_requests, 0);
    net.close().await;
}
