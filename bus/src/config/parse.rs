//! Serde parsers for the values of a configuration: durations, broker and
//! topic lists, Kafka properties.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A duration written like `30s`, `250ms` or `1m 30s`.
pub(super) fn duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Duration, D::Error> {
    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as `30s`, `250ms` or `1m 30s`")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<Duration, E> {
            humantime::parse_duration(text.trim()).map_err(|error| {
                E::custom(format!(
                    "`{text}`: expected a duration such as `30s`, `250ms` or `1m 30s` ({error})"
                ))
            })
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Duration, E> {
            Err(E::custom(format!(
                "`{n}`: a duration needs a unit, such as `{n}s` or `{n}ms`"
            )))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Duration, E> {
            Err(E::custom(format!(
                "`{n}`: expected a duration such as `30s`, `250ms` or `1m 30s`"
            )))
        }

        fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<Duration, E> {
            Err(E::custom(format!(
                "`{n}`: expected a duration such as `30s`, `250ms` or `1m 30s`"
            )))
        }
    }

    deserializer.deserialize_any(DurationVisitor)
}

/// Brokers as a comma-separated string or a list (of strings that may
/// themselves be comma-separated).
pub(super) fn brokers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<String>, D::Error> {
    comma_separated(
        deserializer,
        "host:port, comma-separated, or a list of them",
    )
}

/// Topic names or prefixes, as [`brokers`] are written.
pub(super) fn topic_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<String>, D::Error> {
    comma_separated(
        deserializer,
        "topic names or prefixes ending in `*`, comma-separated, or a list of them",
    )
}

/// Items of a comma-separated string or a list (of strings that may
/// themselves be comma-separated); `expecting` says what an item is.
pub(super) fn comma_separated<'de, D: Deserializer<'de>>(
    deserializer: D,
    expecting: &'static str,
) -> std::result::Result<Vec<String>, D::Error> {
    struct ListVisitor(&'static str);

    fn split(text: &str, into: &mut Vec<String>) {
        into.extend(
            text.split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(str::to_owned),
        );
    }

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<Vec<String>, E> {
            let mut out = Vec::new();
            split(text, &mut out);
            Ok(out)
        }

        fn visit_unit<E: de::Error>(self) -> std::result::Result<Vec<String>, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                split(&item, &mut out);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(ListVisitor(expecting))
}

/// librdkafka properties: a map of names to scalar values. Nested maps
/// join their keys with `.`, and `_` in names becomes `.` (the environment
/// form of a name; no librdkafka property set by value has a `_`).
pub(super) fn properties<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    /// A property value, or a nested map of them.
    enum Node {
        Leaf(String),
        Map(Vec<(String, Node)>),
    }

    struct NodeVisitor;

    impl<'de> Deserialize<'de> for Node {
        fn deserialize<D: Deserializer<'de>>(
            deserializer: D,
        ) -> std::result::Result<Self, D::Error> {
            deserializer.deserialize_any(NodeVisitor)
        }
    }

    impl<'de> Visitor<'de> for NodeVisitor {
        type Value = Node;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a librdkafka property value (text, number or boolean)")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<Node, E> {
            Ok(Node::Leaf(text.to_owned()))
        }

        fn visit_bool<E: de::Error>(self, b: bool) -> std::result::Result<Node, E> {
            Ok(Node::Leaf(b.to_string()))
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Node, E> {
            Ok(Node::Leaf(n.to_string()))
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Node, E> {
            Ok(Node::Leaf(n.to_string()))
        }

        fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<Node, E> {
            Ok(Node::Leaf(n.to_string()))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Node, A::Error> {
            let mut entries = Vec::new();
            while let Some((key, value)) = map.next_entry::<String, Node>()? {
                entries.push((key, value));
            }
            Ok(Node::Map(entries))
        }
    }

    fn flatten(prefix: &str, node: Node, out: &mut BTreeMap<String, String>) {
        match node {
            Node::Leaf(value) => {
                out.insert(prefix.replace('_', "."), value);
            }
            Node::Map(entries) => {
                for (key, value) in entries {
                    let name = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&name, value, out);
                }
            }
        }
    }

    let mut out = BTreeMap::new();
    match Node::deserialize(deserializer)? {
        Node::Leaf(_) => {
            return Err(de::Error::custom(
                "expected a map of librdkafka property names to values",
            ))
        }
        root => flatten("", root, &mut out),
    }
    Ok(out)
}
