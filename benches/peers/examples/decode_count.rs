//! The callgrind driver behind benches/README.md's instruction counts: decodes the fixtures'
//! "inbound message" frame N times with one decoder. Instructions per decode are
//! (Ir at N − Ir at 0) / N, which stays put on a noisy shared machine:
//!
//! ```text
//! cargo build --release -p wa-gateway-peers --example decode_count
//! for d in owned borrowed wacore-owned wacore-borrowed; do for n in 0 100000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/decode_count $d $n 2>&1 | grep 'refs:'
//! done; done
//! ```

use std::hint::black_box;

use bytes::Bytes;
use wa_gateway::binary::{NodeArena, decode_node};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "owned".into());
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/binary_nodes.json"
    );
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let case = f["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "inbound message")
        .expect("the inbound message vector");
    let frame = wa_gateway::util::hex::decode(case["frame_hex"].as_str().unwrap()).unwrap();
    let body = Bytes::copy_from_slice(&frame[1..]);
    let slice: &[u8] = &frame[1..];
    let mut arena = NodeArena::new();
    for _ in 0..n {
        match which.as_str() {
            "owned" => drop(black_box(decode_node(black_box(&body)).unwrap())),
            "borrowed" => {
                let v = arena.decode(black_box(slice)).unwrap();
                black_box(v.tag());
            }
            "wacore-owned" => drop(black_box(
                wacore_binary::marshal::unmarshal_ref(black_box(slice))
                    .unwrap()
                    .to_owned(),
            )),
            "wacore-borrowed" => {
                black_box(wacore_binary::marshal::unmarshal_ref(black_box(slice)).unwrap());
            }
            other => {
                panic!("unknown decoder {other} (owned, borrowed, wacore-owned, wacore-borrowed)")
            }
        }
    }
}
