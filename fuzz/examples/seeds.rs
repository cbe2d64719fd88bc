//! Writes the seed corpus of the codec targets: one value of each payload
//! type, in each codec, plus the hostile payloads the bounds were made for.
//! Run from the repository's root:
//!
//! ```text
//! RUSTFLAGS="--cfg fuzzing" cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;

use topicbus::codec::{Bincode, Codec, Json, Postcard};
use topicbus_fuzz::{Index, List, Marker, Numbers, Shape, Strings, Tree};

fn main() {
    write::<Json>("decode_json");
    write::<Postcard>("decode_postcard");
    write::<Bincode>("decode_bincode");
}

fn write<C: Codec>(target: &str) {
    let dir = Path::new("fuzz/seeds").join(target);
    std::fs::create_dir_all(&dir).expect("seed folder");
    let put = |name: &str, bytes: Vec<u8>| {
        std::fs::write(dir.join(name), bytes).expect("seed written");
    };
    macro_rules! seed {
        ($name:literal, $value:expr) => {
            put($name, C::encode(&$value).expect("a seed encodes"))
        };
    }
    seed!("strings", strings());
    seed!("numbers", numbers());
    seed!("shapes", shapes());
    seed!("index", index());
    seed!("tree", tree());
    seed!("list", list(5));
    seed!("units", vec![(); 3]);
    // Deeper than the limit, as the payloads that overflowed the stack.
    seed!("deep_list", list(200));
    if C::NAME == "json" {
        put("deep_arrays", b"[".repeat(300));
    } else {
        // Tree::Chain 300 times: variant 2, one byte each in both formats.
        let mut chain = vec![2; 300];
        chain.extend([0, 7]);
        put("deep_chain", chain);
    }
    if C::NAME == "bincode" {
        // A string that says it is 2^50 bytes long (varint tag `fd`).
        let mut bomb = vec![0xfd];
        bomb.extend_from_slice(&(1u64 << 50).to_le_bytes());
        put("length_bomb", bomb);
    }
}

fn strings() -> Strings {
    Strings {
        name: "ml.embed.request".into(),
        tags: vec!["a".into(), "ünïcode ✓".into(), String::new()],
        note: Some("note".into()),
        blob: CString::new("blob").expect("no NUL"),
        initial: 'ß',
    }
}

fn numbers() -> Numbers {
    Numbers {
        small: 7,
        big: u64::MAX,
        signed: -1 << 40,
        wide: 1 << 100,
        ratio: 0.25,
        flag: true,
        list: vec![1, 300, 70_000],
        grid: vec![vec![1, -2], vec![], vec![3]],
        pair: (65_535, -7),
        fixed: [1, 2, 3, 4],
    }
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape::Empty,
        Shape::Circle(3),
        Shape::Pair(-1, true),
        Shape::Named {
            name: "square".into(),
            sides: vec![4, 4, 4, 4],
        },
        Shape::Unit(Marker),
    ]
}

fn index() -> Index {
    Index {
        by_name: BTreeMap::from([("k".into(), vec![1, 2]), ("l".into(), vec![])]),
        by_id: BTreeMap::from([(1, Shape::Circle(1)), (2, Shape::Empty)]),
    }
}

fn tree() -> Tree {
    Tree::Node(vec![
        Tree::Leaf(1),
        Tree::Chain(Box::new(Tree::Node(vec![Tree::Leaf(2), Tree::Leaf(3)]))),
    ])
}

fn list(nodes: u16) -> List {
    (1..nodes).fold(
        List {
            value: 0,
            next: None,
        },
        |next, value| List {
            value,
            next: Some(Box::new(next)),
        },
    )
}
