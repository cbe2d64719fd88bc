//! Where a responder may answer: a request names its reply topic itself
//! (`reply_to`), so a responder that took any name would publish its
//! answers, with its own credentials, wherever a client that can write
//! requests pointed it.

use crate::message::Meta;
use crate::topic::validate_topic_name;

/// The topics a responder answers on: those under the reply topic prefix
/// (where topicbus requesters read their replies), `{topic}.response` (the
/// Go bus's), and those allowed by `allowed_reply_topics`.
#[derive(Debug, Clone)]
pub(crate) struct ReplyTopics {
    /// The reply topic prefix with its final `.`: `topicbus.reply.`.
    under: String,
    allowed: Vec<Allowed>,
}

/// An entry of `allowed_reply_topics`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// `name`: that topic.
    Exact(String),
    /// `name.*`: every topic starting with `name.` (and longer).
    Prefix(String),
}

impl Allowed {
    /// Reads an entry: a topic name, or a prefix followed by `*`.
    fn parse(entry: &str) -> Result<Allowed, String> {
        let (name, prefix) = match entry.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (entry, false),
        };
        if prefix && name.is_empty() {
            return Err(format!(
                "`{entry}` would let every request aim this responder's answers at any topic it may write to; name the reply topics or their prefixes"
            ));
        }
        validate_topic_name(name).map_err(|reason| {
            format!(
                "`{}`: {reason} (an entry is a topic name, or a prefix followed by `*`)",
                entry.escape_debug()
            )
        })?;
        Ok(if prefix {
            Allowed::Prefix(name.to_owned())
        } else {
            Allowed::Exact(name.to_owned())
        })
    }

    fn allows(&self, topic: &str) -> bool {
        match self {
            Allowed::Exact(name) => topic == name,
            Allowed::Prefix(prefix) => topic.len() > prefix.len() && topic.starts_with(&**prefix),
        }
    }
}

/// Checks an entry of `allowed_reply_topics`; the error says what is wrong.
pub(crate) fn check_entry(entry: &str) -> Result<(), String> {
    Allowed::parse(entry).map(drop)
}

impl ReplyTopics {
    /// The reply topics of a responder whose requesters' reply topics start
    /// with `prefix` (`topicbus.reply`), plus `allowed`. An entry that
    /// [`check_entry`] refuses allows nothing; it is logged.
    pub fn new(prefix: &str, allowed: &[String]) -> Self {
        let allowed = allowed
            .iter()
            .filter_map(|entry| match Allowed::parse(entry) {
                Ok(allowed) => Some(allowed),
                Err(why) => {
                    tracing::error!("allowed_reply_topics: ignoring {why}");
                    None
                }
            })
            .collect();
        Self {
            under: format!("{prefix}."),
            allowed,
        }
    }

    /// Why the request `meta` must not be answered, if its `reply_to` names
    /// a topic outside the reply topics (a request without one is answered
    /// on `{topic}.response`).
    pub fn refuse(&self, meta: &Meta) -> Option<String> {
        let reply_to = meta.reply_to.as_deref()?;
        let go_response = reply_to
            .strip_prefix(&*meta.topic)
            .is_some_and(|rest| rest == ".response");
        let under_prefix = reply_to.len() > self.under.len() && reply_to.starts_with(&self.under);
        if under_prefix || go_response || self.allowed.iter().any(|a| a.allows(reply_to)) {
            return None;
        }
        let allowed = if self.allowed.is_empty() {
            "none".to_owned()
        } else {
            self.allowed
                .iter()
                .map(|entry| match entry {
                    Allowed::Exact(name) => format!("`{name}`"),
                    Allowed::Prefix(prefix) => format!("`{prefix}*`"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        Some(format!(
            "`reply_to` names `{reply_to}`, which is not a reply topic: this responder answers only on topics under `{under}`, on `{topic}.response` and on those allowed by `allowed_reply_topics` ({allowed}); to answer on `{reply_to}`, add it to `allowed_reply_topics` (BusBuilder::allowed_reply_topics, or {{PREFIX}}_ALLOWED_REPLY_TOPICS)",
            under = self.under,
            topic = meta.topic,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::*;
    use crate::message::{Headers, MessageId};

    fn request(reply_to: Option<&str>) -> Meta {
        Meta {
            topic: Cow::Borrowed("billing.quote"),
            id: MessageId::new(),
            time: std::time::SystemTime::now(),
            source: Arc::from("s"),
            key: None,
            correlation_id: Some(MessageId::new()),
            reply_to: reply_to.map(Arc::from),
            content_type: None,
            headers: Headers::new(),
            malformed: None,
        }
    }

    #[test]
    fn answers_under_the_prefix_on_the_go_response_topic_and_where_allowed() {
        let topics = ReplyTopics::new(
            "topicbus.reply",
            &[
                "my-client.replies".to_owned(),
                "python.replies.*".to_owned(),
            ],
        );
        for answered in [
            None,
            Some("topicbus.reply.search.0f3a"),
            Some("billing.quote.response"),
            Some("my-client.replies"),
            Some("python.replies.a1"),
        ] {
            assert_eq!(topics.refuse(&request(answered)), None, "{answered:?}");
        }
        for refused in [
            "billing.invoices",
            "topicbus.reply",
            "topicbus.reply.",
            "topicbus.replyx",
            "billing.quote.dlq",
            "billing.other.response",
            "my-client.replies.extra",
            "python.replies",
            "python.replies.",
        ] {
            let why = topics
                .refuse(&request(Some(refused)))
                .unwrap_or_else(|| panic!("{refused} was allowed"));
            assert!(why.contains(&format!("`{refused}`")), "{why}");
            assert!(why.contains("allowed_reply_topics"), "{why}");
            assert!(
                why.contains("`my-client.replies`, `python.replies.*`"),
                "{why}"
            );
        }
    }

    #[test]
    fn entries_are_names_or_prefixes() {
        assert_eq!(check_entry("my-client.replies"), Ok(()));
        assert_eq!(check_entry("python.replies.*"), Ok(()));
        assert!(check_entry("*").unwrap_err().contains("every request"));
        assert!(check_entry("").is_err());
        assert!(check_entry("a b").unwrap_err().contains("`a b`"));
        assert!(check_entry("a.*.b").is_err());
        let topics = ReplyTopics::new("topicbus.reply", &["*".to_owned()]);
        assert!(
            topics.refuse(&request(Some("billing.invoices"))).is_some(),
            "a refused entry allows nothing"
        );
    }
}
