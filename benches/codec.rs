//! The codec layer (`topicbus::codec::{Json, Bincode, Postcard}`) against
//! calling serde_json, bincode 2 (serde layer, standard config) and postcard
//! directly: encode to a new `Vec`, encode into a reused buffer, and decode
//! the ~100-byte struct. Target: codec <= 1.1x the direct call.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{Event, Goal, MakeEvent};
use criterion::{BenchmarkId, Criterion, Throughput};
use topicbus::codec::{Bincode, Codec, Json, Postcard};

/// Operations per ratio-loop sample.
const OPS: usize = 20_000;

type EncodeFn = fn(&Event) -> Vec<u8>;
type EncodeIntoFn = fn(&Event, &mut Vec<u8>);
type DecodeFn = fn(&[u8]) -> Event;

/// One format: the codec's functions and the direct ones.
struct Format {
    name: &'static str,
    codec_encode: EncodeFn,
    direct_encode: EncodeFn,
    codec_encode_into: EncodeIntoFn,
    direct_encode_into: EncodeIntoFn,
    codec_decode: DecodeFn,
    direct_decode: DecodeFn,
}

fn codec_encode<C: Codec>(v: &Event) -> Vec<u8> {
    C::encode(v).expect("encode")
}

fn codec_encode_into<C: Codec>(v: &Event, out: &mut Vec<u8>) {
    C::encode_into(v, out).expect("encode")
}

fn codec_decode<C: Codec>(bytes: &[u8]) -> Event {
    C::decode(bytes).expect("decode")
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

const FORMATS: [Format; 3] = [
    Format {
        name: "json",
        codec_encode: codec_encode::<Json>,
        direct_encode: |v| serde_json::to_vec(v).expect("encode"),
        codec_encode_into: codec_encode_into::<Json>,
        direct_encode_into: |v, out| serde_json::to_writer(out, v).expect("encode"),
        codec_decode: codec_decode::<Json>,
        direct_decode: |b| serde_json::from_slice(b).expect("decode"),
    },
    Format {
        name: "bincode",
        codec_encode: codec_encode::<Bincode>,
        direct_encode: |v| bincode::serde::encode_to_vec(v, bincode_config()).expect("encode"),
        codec_encode_into: codec_encode_into::<Bincode>,
        direct_encode_into: |v, out| {
            bincode::serde::encode_into_std_write(v, out, bincode_config()).expect("encode");
        },
        codec_decode: codec_decode::<Bincode>,
        direct_decode: |b| {
            bincode::serde::decode_from_slice(b, bincode_config())
                .expect("decode")
                .0
        },
    },
    Format {
        name: "postcard",
        codec_encode: codec_encode::<Postcard>,
        direct_encode: |v| postcard::to_allocvec(v).expect("encode"),
        codec_encode_into: codec_encode_into::<Postcard>,
        direct_encode_into: |v, out| {
            let buf = std::mem::take(out);
            *out = postcard::to_extend(v, buf).expect("encode");
        },
        codec_decode: codec_decode::<Postcard>,
        direct_decode: |b| postcard::from_bytes(b).expect("decode"),
    },
];

fn sample() -> Event {
    Event::make(1_234_567)
}

fn check_formats() {
    let v = sample();
    for f in &FORMATS {
        let a = (f.codec_encode)(&v);
        let b = (f.direct_encode)(&v);
        assert_eq!(a, b, "{}: codec and direct encodings differ", f.name);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        (f.codec_encode_into)(&v, &mut x);
        (f.direct_encode_into)(&v, &mut y);
        assert_eq!(x, a);
        assert_eq!(y, a);
        assert_eq!((f.codec_decode)(&a), v);
        assert_eq!((f.direct_decode)(&a), v);
        println!("{}: {} bytes encoded", f.name, a.len());
    }
}

fn benches(c: &mut Criterion) {
    let v = sample();
    for f in &FORMATS {
        let bytes = (f.codec_encode)(&v);
        let mut group = c.benchmark_group(format!("codec/{}", f.name));
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new("encode", "topicbus"), |b| {
            b.iter(|| (f.codec_encode)(black_box(&v)));
        });
        group.bench_function(BenchmarkId::new("encode", "direct"), |b| {
            b.iter(|| (f.direct_encode)(black_box(&v)));
        });
        let mut buf = Vec::with_capacity(256);
        group.bench_function(BenchmarkId::new("encode_into", "topicbus"), |b| {
            b.iter(|| {
                buf.clear();
                (f.codec_encode_into)(black_box(&v), &mut buf);
                black_box(buf.len())
            });
        });
        group.bench_function(BenchmarkId::new("encode_into", "direct"), |b| {
            b.iter(|| {
                buf.clear();
                (f.direct_encode_into)(black_box(&v), &mut buf);
                black_box(buf.len())
            });
        });
        group.bench_function(BenchmarkId::new("decode", "topicbus"), |b| {
            b.iter(|| (f.codec_decode)(black_box(&bytes)));
        });
        group.bench_function(BenchmarkId::new("decode", "direct"), |b| {
            b.iter(|| (f.direct_decode)(black_box(&bytes)));
        });
        group.finish();
    }
}

fn time_ops(mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..OPS {
        op();
    }
    start.elapsed()
}

fn ratios() {
    let rounds = common::ratio_rounds().max(21);
    let v = sample();
    let mut results = Vec::new();
    for f in &FORMATS {
        let bytes = (f.codec_encode)(&v);
        let goal = Goal::TimeAtMost(1.1);
        results.push(common::compare(
            &format!("codec/{}/encode", f.name),
            OPS as u64,
            goal,
            rounds,
            || time_ops(|| drop(black_box((f.codec_encode)(black_box(&v))))),
            || time_ops(|| drop(black_box((f.direct_encode)(black_box(&v))))),
        ));
        let mut buf_a = Vec::with_capacity(256);
        let mut buf_b = Vec::with_capacity(256);
        results.push(common::compare(
            &format!("codec/{}/encode_into", f.name),
            OPS as u64,
            goal,
            rounds,
            || {
                time_ops(|| {
                    buf_a.clear();
                    (f.codec_encode_into)(black_box(&v), &mut buf_a);
                    black_box(buf_a.len());
                })
            },
            || {
                time_ops(|| {
                    buf_b.clear();
                    (f.direct_encode_into)(black_box(&v), &mut buf_b);
                    black_box(buf_b.len());
                })
            },
        ));
        results.push(common::compare(
            &format!("codec/{}/decode", f.name),
            OPS as u64,
            goal,
            rounds,
            || time_ops(|| drop(black_box((f.codec_decode)(black_box(&bytes))))),
            || time_ops(|| drop(black_box((f.direct_decode)(black_box(&bytes))))),
        ));
    }
    common::summary(&results);
}

fn main() {
    check_formats();
    common::run(benches, ratios);
}
