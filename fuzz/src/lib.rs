//! What the fuzz targets share: the input formats, the payload types the
//! codecs decode into, and an allocator that turns any huge allocation into
//! a crash.

use std::alloc::{GlobalAlloc, Layout, System};
use std::any::type_name;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::CString;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use topicbus::codec::Codec;

/// Headers in the `headers` target's input: one a line, `name=value`, split
/// at the first `=` (a line without one is a name with an empty value).
/// Names that are not UTF-8 are read lossily: a consumer's header names are
/// strings by the time its metadata is read.
pub fn headers(data: &[u8]) {
    let list: Vec<(Cow<'_, str>, &[u8])> = data
        .split(|byte| *byte == b'\n')
        .map(|line| match line.iter().position(|byte| *byte == b'=') {
            Some(at) => (String::from_utf8_lossy(&line[..at]), &line[at + 1..]),
            None => (String::from_utf8_lossy(line), &[][..]),
        })
        .collect();
    let list: Vec<(&str, &[u8])> = list.iter().map(|(name, value)| (&**name, *value)).collect();
    topicbus::__fuzz::read_headers(&list);
}

/// The `envelope` target's input is a Kafka record's value.
pub fn envelope(data: &[u8]) {
    topicbus::__fuzz::unwrap_envelope(data);
}

/// Decodes `data` into each payload type with codec `C`; what decodes must
/// encode, and decode again to a value that encodes the same.
pub fn decode_all<C: Codec>(data: &[u8]) {
    round_trip::<C, Strings>(data);
    round_trip::<C, Numbers>(data);
    round_trip::<C, Vec<Shape>>(data);
    round_trip::<C, Index>(data);
    round_trip::<C, Tree>(data);
    round_trip::<C, List>(data);
    round_trip::<C, Vec<()>>(data);
}

fn round_trip<C: Codec, T: Serialize + DeserializeOwned>(data: &[u8]) {
    let Ok(value) = C::decode::<T>(data) else {
        return;
    };
    let what = || format!("{} `{}`", C::NAME, type_name::<T>());
    let bytes =
        C::encode(&value).unwrap_or_else(|e| panic!("{}: decoded, not encoded: {e}", what()));
    let again = C::decode::<T>(&bytes)
        .unwrap_or_else(|e| panic!("{}: encoded, not decoded again: {e}", what()));
    let bytes_again = C::encode(&again).expect("encoded once");
    assert_eq!(bytes, bytes_again, "{}: encoded differently", what());
}

/// Text in every form serde has.
#[derive(Debug, Serialize, Deserialize)]
pub struct Strings {
    pub name: String,
    pub tags: Vec<String>,
    pub note: Option<Box<str>>,
    pub blob: CString,
    pub initial: char,
}

/// Numbers of every width, flat and nested.
#[derive(Debug, Serialize, Deserialize)]
pub struct Numbers {
    pub small: u8,
    pub big: u64,
    pub signed: i64,
    pub wide: u128,
    pub ratio: f64,
    pub flag: bool,
    pub list: Vec<u32>,
    pub grid: Vec<Vec<i16>>,
    pub pair: (u16, i32),
    pub fixed: [u8; 4],
}

/// An enum with a variant of each kind.
#[derive(Debug, Serialize, Deserialize)]
pub enum Shape {
    Empty,
    Circle(u32),
    Pair(i8, bool),
    Named { name: String, sides: Vec<u8> },
    Unit(Marker),
}

/// A unit struct.
#[derive(Debug, Serialize, Deserialize)]
pub struct Marker;

/// Maps.
#[derive(Debug, Serialize, Deserialize)]
pub struct Index {
    pub by_name: BTreeMap<String, Vec<u8>>,
    pub by_id: BTreeMap<u32, Shape>,
}

/// A recursive type through a vector and a box.
#[derive(Debug, Serialize, Deserialize)]
pub enum Tree {
    Leaf(u8),
    Node(Vec<Tree>),
    Chain(Box<Tree>),
}

/// A recursive type through an option.
#[derive(Debug, Serialize, Deserialize)]
pub struct List {
    pub value: u16,
    pub next: Option<Box<List>>,
}

/// The largest single allocation an input may cause. Inputs are a few
/// kilobytes; an allocation this large comes from a length the input
/// declared, which is what the codecs' bounds forbid.
const MAX_ALLOCATION: usize = 64 << 20;

/// The system allocator, aborting (a crash libFuzzer reports, with its
/// input) on any allocation over [`MAX_ALLOCATION`]. Without a sanitizer
/// libFuzzer cannot see allocation sizes itself.
pub struct Capped;

impl Capped {
    fn check(size: usize) {
        if size > MAX_ALLOCATION {
            // Unbuffered and without allocating.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"fuzz: an allocation over 64 MiB\n",
            );
            std::process::abort();
        }
    }
}

// SAFETY: forwards every call to `System` unchanged, after a size check.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;
