//! `key = field` with the usual key types, and no key.
use serde::{Deserialize, Serialize};
use topicbus::Topic;

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "index.chunk.created", key = chunk_id)]
struct ChunkCreated {
    chunk_id: String,
    text: String,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "user.seen", key = user_id)]
struct UserSeen {
    user_id: u64,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "tenant.event", key = tenant)]
struct TenantEvent {
    tenant: Option<String>,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "blob.stored", key = r#ref)]
struct BlobStored {
    r#ref: Vec<u8>,
}

#[derive(Serialize, Deserialize, Topic)]
#[topic(name = "no.key")]
struct NoKey {
    id: String,
}

fn main() {
    let chunk = ChunkCreated {
        chunk_id: "c-1".into(),
        text: String::new(),
    };
    assert_eq!(chunk.key().as_deref(), Some(&b"c-1"[..]));
    assert!(chunk.text.is_empty());

    assert_eq!(UserSeen { user_id: 42 }.key().as_deref(), Some(&b"42"[..]));

    assert_eq!(
        TenantEvent {
            tenant: Some("acme".into())
        }
        .key()
        .as_deref(),
        Some(&b"acme"[..])
    );
    assert_eq!(TenantEvent { tenant: None }.key(), None);

    assert_eq!(
        BlobStored { r#ref: vec![1, 2] }.key().as_deref(),
        Some(&[1u8, 2][..])
    );

    assert_eq!(NoKey { id: "x".into() }.key(), None);
}
