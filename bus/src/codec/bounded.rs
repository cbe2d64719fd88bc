//! Bounds on what a received payload can make the binary codecs do.
//!
//! postcard and bincode recurse once per level of nesting and trust the
//! lengths a payload declares, so a payload can overflow the stack with a
//! deep value, or (bincode) make the decoder allocate a string of any length
//! before it finds out that the bytes are not there. [`decode`] wraps the
//! format's `Deserializer` so that:
//!
//! - a value nests at most [`MAX_DEPTH`] levels;
//! - the lengths that the sequences and maps of a payload declare are passed
//!   on as size hints only up to the payload's length in bytes, counted over
//!   the whole payload (an element of any type that is not zero-sized takes
//!   at least one byte), so that collections reserve no more than the
//!   payload can fill;
//! - those sequences and maps hold at most [`MAX_ELEMENTS`] elements in all,
//!   or as many as the payload has bytes if that is more, so that a declared
//!   length of zero-sized elements cannot loop for ever;
//! - strings and byte strings are read borrowed from the payload, so that
//!   their length is checked against the bytes present before anything is
//!   allocated, and then copied at their real length.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed};

use super::{CodecError, MAX_DEPTH};

/// The elements a payload's sequences and maps may hold in all when the
/// payload has fewer bytes: only zero-sized elements (`Vec<()>`) take no
/// byte each.
const MAX_ELEMENTS: usize = 1 << 20;

/// Decodes a `T` with `deserialize`, which drives the [`Root`] seed over a
/// format's deserializer for the `payload_len` bytes of a payload (and
/// returns the value with whatever else the format tells). A bound broken
/// becomes a [`CodecError`] naming it, whatever the format makes of custom
/// errors (postcard drops their text).
pub(super) fn decode<T, R, E>(
    payload_len: usize,
    deserialize: impl FnOnce(Root<'_, T>) -> Result<R, E>,
) -> Result<R, CodecError>
where
    T: DeserializeOwned,
    E: std::error::Error + Send + Sync + 'static,
{
    let budget = Budget {
        depth: Cell::new(0),
        reservable: Cell::new(payload_len),
        elements: Cell::new(payload_len.max(MAX_ELEMENTS)),
        max_elements: payload_len.max(MAX_ELEMENTS),
        refused: RefCell::new(None),
    };
    deserialize(Root {
        budget: &budget,
        value: PhantomData,
    })
    .map_err(|error| match budget.refused.take() {
        Some(reason) => CodecError::new(reason),
        None => CodecError::new(error),
    })
}

/// What one payload may still use.
pub(super) struct Budget {
    depth: Cell<usize>,
    /// Elements that declared lengths may still reserve room for.
    reservable: Cell<usize>,
    /// Elements that length-prefixed sequences and maps may still hold.
    elements: Cell<usize>,
    max_elements: usize,
    /// The first bound broken, in words.
    refused: RefCell<Option<String>>,
}

impl Budget {
    fn refuse<E: de::Error>(&self, reason: String) -> E {
        let error = E::custom(&reason);
        self.refused.borrow_mut().get_or_insert(reason);
        error
    }

    /// Runs `visit` one level deeper.
    fn nested<R, E: de::Error>(&self, visit: impl FnOnce() -> Result<R, E>) -> Result<R, E> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(self.refuse(format!(
                "the value is nested deeper than {MAX_DEPTH} levels (topicbus::codec::MAX_DEPTH)"
            )));
        }
        self.depth.set(depth);
        let result = visit();
        self.depth.set(depth - 1);
        result
    }

    /// Counts one more element of a length-prefixed sequence or map.
    fn element<E: de::Error>(&self) -> Result<(), E> {
        match self.elements.get().checked_sub(1) {
            Some(left) => {
                self.elements.set(left);
                Ok(())
            }
            None => Err(self.refuse(format!(
                "the sequences and maps hold more than {} elements in all (the larger of \
                 the payload's length in bytes and {MAX_ELEMENTS})",
                self.max_elements
            ))),
        }
    }

    /// How many of the `declared` elements of a sequence or map may be
    /// reserved room for: what the payload's bytes can still fill.
    fn reserve(&self, declared: Option<usize>) -> usize {
        let reserved = declared.unwrap_or(0).min(self.reservable.get());
        self.reservable.set(self.reservable.get() - reserved);
        reserved
    }
}

/// The seed of the whole value.
pub(super) struct Root<'b, T> {
    budget: &'b Budget,
    value: PhantomData<fn() -> T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Root<'_, T> {
    type Value = T;

    fn deserialize<D: de::Deserializer<'de>>(self, inner: D) -> Result<T, D::Error> {
        T::deserialize(Deserializer {
            inner,
            budget: self.budget,
        })
    }
}

/// A format's deserializer, bounded.
struct Deserializer<'b, D> {
    inner: D,
    budget: &'b Budget,
}

impl<'b, D> Deserializer<'b, D> {
    fn visitor<V>(&self, inner: V, prefixed: bool) -> Visitor<'b, V> {
        Visitor {
            inner,
            budget: self.budget,
            prefixed,
        }
    }
}

macro_rules! forward {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.visitor(visitor, false);
            self.inner.$method(visitor)
        }
    )*};
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for Deserializer<'_, D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_bytes,
        deserialize_option,
        deserialize_unit,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_string<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_str(Owned(visitor))
    }

    fn deserialize_byte_buf<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_bytes(Owned(visitor))
    }

    fn deserialize_seq<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, true);
        self.inner.deserialize_seq(visitor)
    }

    fn deserialize_map<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, true);
        self.inner.deserialize_map(visitor)
    }

    fn deserialize_unit_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, false);
        self.inner.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, false);
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, false);
        self.inner.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, false);
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, false);
        self.inner.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, false);
        self.inner.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A visitor, bounded: every compound value it is handed is one level
/// deeper; `prefixed` when its sequence or map came with a declared length.
struct Visitor<'b, V> {
    inner: V,
    budget: &'b Budget,
    prefixed: bool,
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: de::Visitor<'de>> de::Visitor<'de> for Visitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(formatter)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, inner: D) -> Result<Self::Value, D::Error> {
        let budget = self.budget;
        budget.nested(|| self.inner.visit_some(Deserializer { inner, budget }))
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        inner: D,
    ) -> Result<Self::Value, D::Error> {
        let budget = self.budget;
        budget.nested(|| {
            self.inner
                .visit_newtype_struct(Deserializer { inner, budget })
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, inner: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget;
        let reserved = self.prefixed.then(|| budget.reserve(inner.size_hint()));
        budget.nested(|| {
            self.inner.visit_seq(Access {
                inner,
                budget,
                reserved,
            })
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, inner: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget;
        let reserved = self.prefixed.then(|| budget.reserve(inner.size_hint()));
        budget.nested(|| {
            self.inner.visit_map(Access {
                inner,
                budget,
                reserved,
            })
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, inner: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget;
        budget.nested(|| {
            self.inner.visit_enum(Access {
                inner,
                budget,
                reserved: None,
            })
        })
    }
}

/// A sequence, map, enum or enum variant being read, bounded: whatever it
/// hands on is read through [`Seed`] or [`Visitor`]. A sequence or map that
/// declared its length has its elements counted, and `reserved`: the most
/// its size hint may say.
struct Access<'b, A> {
    inner: A,
    budget: &'b Budget,
    reserved: Option<usize>,
}

impl<'b, A> Access<'b, A> {
    fn seed<S>(&self, inner: S) -> Seed<'b, S> {
        Seed {
            inner,
            budget: self.budget,
        }
    }

    fn visitor<V>(&self, inner: V) -> Visitor<'b, V> {
        Visitor {
            inner,
            budget: self.budget,
            prefixed: false,
        }
    }

    fn hint(&self, declared: Option<usize>) -> Option<usize> {
        match self.reserved {
            Some(reserved) => declared.map(|declared| declared.min(reserved)),
            None => declared,
        }
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let seed = self.seed(seed);
        let element = self.inner.next_element_seed(seed)?;
        if self.reserved.is_some() && element.is_some() {
            self.budget.element()?;
        }
        Ok(element)
    }

    fn size_hint(&self) -> Option<usize> {
        self.hint(self.inner.size_hint())
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let seed = self.seed(seed);
        let key = self.inner.next_key_seed(seed)?;
        if self.reserved.is_some() && key.is_some() {
            self.budget.element()?;
        }
        Ok(key)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.hint(self.inner.size_hint())
    }
}

impl<'b, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<'b, A> {
    type Error = A::Error;
    type Variant = Access<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let budget = self.budget;
        let seed = self.seed(seed);
        let (value, inner) = self.inner.variant_seed(seed)?;
        let variant = Access {
            inner,
            budget,
            reserved: None,
        };
        Ok((value, variant))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.visitor(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: de::Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.visitor(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}

/// A seed, bounded: it reads through a bounded [`Deserializer`].
struct Seed<'b, S> {
    inner: S,
    budget: &'b Budget,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, inner: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Deserializer {
            inner,
            budget: self.budget,
        })
    }
}

/// Takes a string or byte string read borrowed from the payload (its length
/// checked against the bytes present) and hands it to a visitor that asked
/// for owned data, copied at its real length.
struct Owned<V>(V);

impl<'de, V: de::Visitor<'de>> de::Visitor<'de> for Owned<V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(formatter)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.0.visit_string(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.0.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.0.visit_byte_buf(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.0.visit_byte_buf(v)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::ffi::CString;

    use serde::{Deserialize, Serialize};

    use super::MAX_DEPTH;
    use crate::codec::{Bincode, Codec, Postcard};

    /// Nests `levels` levels (one enum each, the leaf included).
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    fn tree(levels: usize) -> Tree {
        (1..levels).fold(Tree::Leaf, |tree, _| Tree::Node(Box::new(tree)))
    }

    /// A linked list through `Option` and a struct: two levels a node.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct List {
        value: u8,
        next: Option<Box<List>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Unit;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Meters(f64);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Circle(Meters),
        Pair(i8, char),
        Named { name: String, tags: Vec<String> },
    }

    /// One of every kind of value serde has, to show the bounds change
    /// nothing for what is within them.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        flag: bool,
        small: (i16, u32, i64, u128, i128),
        ratio: f32,
        text: String,
        blob: CString,
        unit: (),
        unit_struct: Unit,
        maybe: Option<Meters>,
        none: Option<String>,
        shapes: Vec<Shape>,
        grid: [[u8; 3]; 2],
        index: BTreeMap<String, Vec<u16>>,
        counts: HashMap<u8, ()>,
        tree: Tree,
        list: List,
    }

    fn everything() -> Everything {
        Everything {
            flag: true,
            small: (-3, 70_000, -1 << 40, u128::MAX, i128::MIN),
            ratio: 0.5,
            text: "héllo".into(),
            blob: CString::new("blob").unwrap(),
            unit: (),
            unit_struct: Unit,
            maybe: Some(Meters(2.5)),
            none: None,
            shapes: vec![
                Shape::Empty,
                Shape::Circle(Meters(1.0)),
                Shape::Pair(-1, 'ß'),
                Shape::Named {
                    name: "n".into(),
                    tags: vec!["a".into(), String::new()],
                },
            ],
            grid: [[1, 2, 3], [4, 5, 6]],
            index: BTreeMap::from([("k".into(), vec![1, 300])]),
            counts: HashMap::from([(7, ())]),
            tree: tree(5),
            list: List {
                value: 1,
                next: Some(Box::new(List {
                    value: 2,
                    next: None,
                })),
            },
        }
    }

    fn both(check: impl Fn(&str, &dyn Fn(&[u8]) -> Result<Tree, String>, Vec<u8>)) {
        check(
            "postcard",
            &|bytes| Postcard::decode(bytes).map_err(|e| e.to_string()),
            Postcard::encode(&tree(1)).unwrap(),
        );
        check(
            "bincode",
            &|bytes| Bincode::decode(bytes).map_err(|e| e.to_string()),
            Bincode::encode(&tree(1)).unwrap(),
        );
    }

    #[test]
    fn values_within_the_bounds_round_trip() {
        let value = everything();
        let bytes = Postcard::encode(&value).unwrap();
        assert_eq!(Postcard::decode::<Everything>(&bytes).unwrap(), value);
        let bytes = Bincode::encode(&value).unwrap();
        assert_eq!(Bincode::decode::<Everything>(&bytes).unwrap(), value);
    }

    #[test]
    fn max_depth_levels_decode_and_one_more_is_refused() {
        both(|codec, decode, leaf| {
            assert_eq!(leaf, [0], "{codec}: a leaf is one byte");
            let levels = |n: usize| {
                let mut bytes = vec![1; n - 1];
                bytes.push(0);
                bytes
            };
            let at_limit = decode(&levels(MAX_DEPTH)).expect("MAX_DEPTH levels decode");
            assert_eq!(at_limit, tree(MAX_DEPTH), "{codec}");
            let error = decode(&levels(MAX_DEPTH + 1)).unwrap_err();
            assert_eq!(
                error, "the value is nested deeper than 128 levels (topicbus::codec::MAX_DEPTH)",
                "{codec}"
            );
        });
    }

    #[test]
    fn option_and_struct_nesting_count_as_levels() {
        let list = (1..MAX_DEPTH / 2).fold(
            List {
                value: 0,
                next: None,
            },
            |next, value| List {
                value: value as u8,
                next: Some(Box::new(next)),
            },
        );
        let bytes = Postcard::encode(&list).unwrap();
        assert_eq!(Postcard::decode::<List>(&bytes).unwrap(), list);
        let deeper = List {
            value: 0,
            next: Some(Box::new(list)),
        };
        let error = Postcard::decode::<List>(&Postcard::encode(&deeper).unwrap()).unwrap_err();
        assert!(error.to_string().contains("nested deeper"), "{error}");
    }

    #[test]
    fn a_huge_string_length_is_refused_before_allocating() {
        // bincode: varint tag `fd`, then 2^50 in eight bytes.
        let mut bincode = vec![0xfd];
        bincode.extend_from_slice(&(1u64 << 50).to_le_bytes());
        // postcard: 2^50 as a LEB128 varint.
        let postcard = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02];
        let error = Bincode::decode::<String>(&bincode).unwrap_err();
        assert!(error.to_string().contains("UnexpectedEnd"), "{error}");
        let error = Bincode::decode::<CString>(&bincode).unwrap_err();
        assert!(error.to_string().contains("UnexpectedEnd"), "{error}");
        let error = Postcard::decode::<String>(&postcard).unwrap_err();
        assert!(error.to_string().contains("end of buffer"), "{error}");
        let error = Postcard::decode::<CString>(&postcard).unwrap_err();
        assert!(error.to_string().contains("end of buffer"), "{error}");
    }

    #[test]
    fn zero_sized_elements_are_bounded() {
        // Two million elements that take no byte each, declared in a few
        // bytes: each would be read from nothing, for as long as the
        // length says.
        let refusal = "the sequences and maps hold more than 1048576 elements in all (the \
                       larger of the payload's length in bytes and 1048576)";
        let bytes = Postcard::encode(&vec![(); 2_000_000]).unwrap();
        let error = Postcard::decode::<Vec<()>>(&bytes).unwrap_err();
        assert_eq!(error.to_string(), refusal);
        let bytes = Bincode::encode(&vec![(); 2_000_000]).unwrap();
        let error = Bincode::decode::<Vec<()>>(&bytes).unwrap_err();
        assert_eq!(error.to_string(), refusal);
        let bytes = Bincode::encode(&vec![vec![(); 1 << 19]; 3]).unwrap();
        let error = Bincode::decode::<Vec<Vec<()>>>(&bytes).unwrap_err();
        assert_eq!(error.to_string(), refusal, "counted over the whole payload");

        // Up to the bound they decode, whatever the payload's length.
        let units = vec![(); 1 << 20];
        let bytes = Postcard::encode(&units).unwrap();
        assert_eq!(bytes.len(), 3);
        assert_eq!(Postcard::decode::<Vec<()>>(&bytes).unwrap(), units);
        let bytes = Bincode::encode(&units).unwrap();
        assert_eq!(Bincode::decode::<Vec<()>>(&bytes).unwrap(), units);
    }

    #[test]
    fn declared_lengths_reserve_no_more_than_the_payload_can_fill() {
        // A sequence that declares 2^60 elements in 10 bytes: what the
        // collection is told to reserve is capped by the payload.
        let mut bytes = Bincode::encode(&u64::pow(2, 60)).unwrap();
        bytes.push(0);
        let hints: Vec<Option<usize>> = Bincode::decode::<Hints>(&bytes).unwrap().0;
        assert_eq!(hints, [Some(10)]);

        // The payload's bytes are shared out: a sequence gets what those
        // before it did not take.
        let mut bytes = Bincode::encode(&(6u8, [0u8; 6])).unwrap();
        bytes.extend(Bincode::encode(&u64::pow(2, 60)).unwrap());
        bytes.push(0);
        let (first, second) = Bincode::decode::<(Vec<u8>, Hints)>(&bytes).unwrap();
        assert_eq!(first, [0; 6]);
        assert_eq!(second.0, [Some(bytes.len() - 6)]);
    }

    /// Records the size hint its sequence gives, then reads one element.
    struct Hints(Vec<Option<usize>>);

    impl<'de> Deserialize<'de> for Hints {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Hints;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a sequence")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Hints, A::Error> {
                    let hint = seq.size_hint();
                    seq.next_element::<u8>()?;
                    Ok(Hints(vec![hint]))
                }
            }
            deserializer.deserialize_seq(Visit)
        }
    }
}
