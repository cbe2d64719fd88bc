//! Reply authentication: an HMAC-SHA256 that a responder holding a
//! [`ReplyKey`] puts on each reply, and that a requester holding the same key
//! checks before it takes the reply (docs/security-replies.md).
//!
//! The MAC binds the reply to its request, not only to its correlation id:
//! a client that can write requests could otherwise make a keyed responder
//! answer a question of its own under another request's correlation id
//! and `reply_to`, and that answer would carry a valid MAC.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::codec::CodecError;
use crate::error::{Error, Result};
use crate::message::{header, Message, MessageId, Meta};

type HmacSha256 = Hmac<Sha256>;

/// The first bytes of every MAC input: the construction and its version.
const DOMAIN: &[u8] = b"topicbus reply v1";

/// A secret key shared by the requesters and responders of a system, which
/// authenticates replies: a responder with a key adds an HMAC-SHA256 of the
/// reply and its request in the `topicbus_reply_mac` header; a requester
/// with a key takes only replies whose MAC is valid, drops the others,
/// counts them in [`BusStats::rejected_replies`](crate::BusStats), and keeps
/// waiting for the genuine reply.
///
/// The key is the bytes given, at least 32 of them (32 random bytes, or the
/// 44 characters `openssl rand -base64 32` prints, used as text). It never
/// shows in `Debug` output. What the MAC covers and what it does not
/// guarantee: docs/security-replies.md.
///
/// ```
/// use topicbus::{Bus, ReplyKey};
///
/// let key = ReplyKey::new("c2VjcmV0LXNoYXJlZC1ieS1ldmVyeS1zZXJ2aWNlLW9mLXRoZS1zeXN0ZW0")?;
/// assert_eq!(format!("{key:?}"), "ReplyKey(<redacted>)");
/// let bus = Bus::builder().reply_key(key).build();
/// # drop(bus);
/// assert!(ReplyKey::new("too short").is_err());
/// # Ok::<(), topicbus::Error>(())
/// ```
#[derive(Clone)]
pub struct ReplyKey {
    /// The HMAC with the key already absorbed, cloned for each MAC.
    mac: HmacSha256,
}

impl ReplyKey {
    /// The shortest key taken, in bytes (the length of the hash, below which
    /// RFC 2104 calls HMAC keys weak).
    pub const MIN_LEN: usize = 32;

    /// A key of the bytes of `secret`; fails with [`Error::Config`] naming
    /// `reply_key` when it is shorter than [`ReplyKey::MIN_LEN`] bytes.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<ReplyKey> {
        let secret = secret.as_ref();
        if secret.len() < Self::MIN_LEN {
            return Err(Error::Config {
                key: "reply_key".to_owned(),
                message: too_short(secret.len()),
            });
        }
        Ok(ReplyKey {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length"),
        })
    }

    /// `reply` to `request` with its MAC in the `topicbus_reply_mac`
    /// header; its payload travels as bytes from here on (the MAC covers
    /// those bytes).
    pub(crate) fn sign(
        &self,
        request: &Message,
        reply: &Message,
    ) -> std::result::Result<Message, CodecError> {
        let binding = Binding::of(request)?;
        let payload = reply.payload().to_bytes()?;
        let tag = self.tag(&reply.meta, &binding, &payload);
        let mut meta = reply.meta.clone();
        meta.headers.insert(header::REPLY_MAC, hex(&tag));
        Ok(Message::bytes(meta, payload))
    }

    /// Checks the MAC of `reply` to the request `binding` describes; the
    /// error says why it does not hold.
    pub(crate) fn verify(
        &self,
        reply: &Message,
        binding: &Binding,
    ) -> std::result::Result<(), &'static str> {
        let Some(value) = reply.meta.headers.get(header::REPLY_MAC) else {
            return Err("it has no `topicbus_reply_mac` header");
        };
        let Some(claimed) = unhex(value) else {
            return Err("its `topicbus_reply_mac` is not 64 hexadecimal digits");
        };
        let payload = reply
            .payload()
            .to_bytes()
            .map_err(|_| "its payload could not be encoded")?;
        let mut mac = self.mac.clone();
        feed(&mut mac, &reply.meta, binding, &payload);
        mac.verify_slice(&claimed)
            .map_err(|_| "its `topicbus_reply_mac` does not match the reply and its request")
    }

    fn tag(&self, reply: &Meta, binding: &Binding, payload: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        feed(&mut mac, reply, binding, payload);
        mac.finalize().into_bytes().into()
    }
}

/// Feeds the MAC input of a reply (docs/wire.md, "Authenticated replies"):
/// the domain, then the correlation id, the request topic, the SHA-256 of
/// the request payload, the reply's `content-type`, `topicbus_error_kind`
/// and `topicbus_error` (each present or absent), and the reply payload.
/// Variable-length fields are length-prefixed, so no two inputs run into
/// each other.
fn feed(mac: &mut HmacSha256, reply: &Meta, binding: &Binding, payload: &[u8]) {
    mac.update(DOMAIN);
    let correlation = reply
        .correlation_id
        .as_ref()
        .map(MessageId::to_string)
        .unwrap_or_default();
    field(mac, correlation.as_bytes());
    field(mac, binding.topic.as_bytes());
    mac.update(&binding.request_digest);
    optional(mac, reply.content_type.as_deref().map(str::as_bytes));
    optional(mac, reply.headers.get(header::ERROR_KIND));
    optional(mac, reply.headers.get(header::ERROR));
    field(mac, payload);
}

fn field(mac: &mut HmacSha256, bytes: &[u8]) {
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

fn optional(mac: &mut HmacSha256, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            mac.update(&[1]);
            field(mac, bytes);
        }
        None => mac.update(&[0]),
    }
}

/// What a reply is bound to besides itself: its request's topic and the
/// SHA-256 of its request's payload.
#[derive(Clone)]
pub(crate) struct Binding {
    topic: Arc<str>,
    request_digest: [u8; 32],
}

impl Binding {
    pub fn of(request: &Message) -> std::result::Result<Binding, CodecError> {
        let payload = request.payload().to_bytes()?;
        Ok(Binding {
            topic: Arc::from(&*request.meta.topic),
            request_digest: Sha256::digest(&payload).into(),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

/// 64 hexadecimal digits (either case) as 32 bytes.
fn unhex(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

fn too_short(len: usize) -> String {
    format!(
        "a key of {len} bytes: a reply key must be at least {} bytes long (32 random bytes, or the 44 characters `openssl rand -base64 32` prints)",
        ReplyKey::MIN_LEN
    )
}

impl fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyKey(<redacted>)")
    }
}

impl FromStr for ReplyKey {
    type Err = Error;

    /// The key of the bytes of `text` (as [`ReplyKey::new`]).
    fn from_str(text: &str) -> Result<ReplyKey> {
        ReplyKey::new(text)
    }
}

/// Read from a string, whose bytes are the key; the error of a short one
/// tells its length, never its value.
impl<'de> serde::Deserialize<'de> for ReplyKey {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;

        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = ReplyKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret of at least 32 bytes, as text")
            }

            fn visit_str<E: serde::de::Error>(
                self,
                text: &str,
            ) -> std::result::Result<ReplyKey, E> {
                ReplyKey::new(text).map_err(|_| E::custom(too_short(text.len())))
            }

            // serde's own message would quote the value.
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> std::result::Result<ReplyKey, E> {
                Err(E::custom(NOT_TEXT))
            }

            fn visit_u64<E: serde::de::Error>(self, _: u64) -> std::result::Result<ReplyKey, E> {
                Err(E::custom(NOT_TEXT))
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> std::result::Result<ReplyKey, E> {
                Err(E::custom(NOT_TEXT))
            }

            fn visit_bool<E: serde::de::Error>(self, _: bool) -> std::result::Result<ReplyKey, E> {
                Err(E::custom(NOT_TEXT))
            }
        }

        /// Why a key that is not text is refused (without showing it).
        const NOT_TEXT: &str = "a reply key must be text (quote it in a file)";

        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::SystemTime;

    use super::*;
    use crate::message::Headers;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn message(topic: &'static str, payload: &'static [u8]) -> Message {
        Message::bytes(
            Meta {
                topic: Cow::Borrowed(topic),
                id: MessageId::new(),
                time: SystemTime::now(),
                source: Arc::from("s"),
                key: None,
                correlation_id: Some(MessageId::parse("c0ffee00-0000-4000-8000-000000000001")),
                reply_to: None,
                content_type: Some(Cow::Borrowed("application/json")),
                headers: Headers::new(),
                malformed: None,
            },
            bytes::Bytes::from_static(payload),
        )
    }

    /// A copy of `reply` with `change` applied to its metadata.
    fn altered(reply: &Message, change: impl FnOnce(&mut Meta)) -> Message {
        let mut meta = reply.meta.clone();
        change(&mut meta);
        Message::bytes(meta, reply.payload().to_bytes().unwrap())
    }

    #[test]
    fn a_signed_reply_verifies_and_any_change_breaks_it() {
        let key = ReplyKey::new(SECRET).unwrap();
        let request = message("rpc.ask", br#"{"q":1}"#);
        let mut error_meta = message("inbox", b"").meta.clone();
        error_meta.headers.insert(header::ERROR, "no");
        error_meta.headers.insert(header::ERROR_KIND, "handler");
        let replies = [
            message("inbox", br#"{"a":1}"#),
            Message::bytes(error_meta, bytes::Bytes::new()),
        ];
        let binding = Binding::of(&request).unwrap();
        for reply in &replies {
            let signed = key.sign(&request, reply).unwrap();
            assert_eq!(key.verify(&signed, &binding), Ok(()));

            let other_request = Binding::of(&message("rpc.ask", br#"{"q":2}"#)).unwrap();
            assert!(
                key.verify(&signed, &other_request).is_err(),
                "request payload"
            );
            let other_topic = Binding::of(&message("rpc.other", br#"{"q":1}"#)).unwrap();
            assert!(key.verify(&signed, &other_topic).is_err(), "request topic");
            let other_key = ReplyKey::new(SECRET.replace('0', "1")).unwrap();
            assert!(other_key.verify(&signed, &binding).is_err(), "key");
            assert!(key.verify(reply, &binding).is_err(), "no MAC");

            type Change = fn(&mut Meta);
            let changes: [(&str, Change); 4] = [
                ("correlation id", |m| {
                    m.correlation_id = Some(MessageId::new())
                }),
                ("content type", |m| {
                    m.content_type = Some(Cow::Borrowed("application/x-postcard"))
                }),
                ("error", |m| m.headers.insert(header::ERROR, "forged")),
                ("error kind", |m| {
                    m.headers.insert(header::ERROR_KIND, "panic")
                }),
            ];
            for (what, change) in changes {
                let forged = altered(&signed, change);
                assert!(key.verify(&forged, &binding).is_err(), "{what}");
            }
            let payload = Message::bytes(signed.meta.clone(), bytes::Bytes::from_static(b"{}"));
            assert!(key.verify(&payload, &binding).is_err(), "payload");
        }
    }

    #[test]
    fn mac_text_is_lower_case_hex_and_either_case_reads() {
        let bytes: Vec<u8> = (0..32).map(|i| i * 7).collect();
        let text = hex(&bytes);
        assert_eq!(text.len(), 64);
        assert_eq!(unhex(text.as_bytes()).unwrap().to_vec(), bytes);
        assert_eq!(
            unhex(text.to_uppercase().as_bytes()).unwrap().to_vec(),
            bytes
        );
        assert!(unhex(&text.as_bytes()[1..]).is_none());
        assert!(unhex("g".repeat(64).as_bytes()).is_none());
    }

    #[test]
    fn short_keys_are_refused_without_showing_them() {
        let error = ReplyKey::new("secret-but-short").unwrap_err();
        assert!(error.to_string().contains("16 bytes"), "{error}");
        assert!(!error.to_string().contains("secret-but-short"));
        assert!(ReplyKey::new([7u8; 32]).is_ok());
    }
}
