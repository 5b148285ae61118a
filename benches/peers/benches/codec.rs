//! Binary node codec, ours next to `wacore-binary` (whatsapp-rust's codec) in the same run.
//! Inputs: a realistic inbound 1:1 message (the "inbound message" vector recorded from
//! Baileys) and a 200-user usync device-list result. Results: benches/README.md.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use wa_gateway::binary::{Jid, Node, NodeArena, Server, decode_node, encode_node};

fn fixture_frame(name: &str) -> Vec<u8> {
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
        .find(|c| c["name"] == name)
        .unwrap();
    wa_gateway::util::hex::decode(case["frame_hex"].as_str().unwrap()).unwrap()
}

/// `<iq type=result><usync><list><user jid><devices><device-list><device id/>…` × 200, with a
/// key-index list and a LID per user, as a usync device query returns it.
fn usync_result(users: usize) -> Vec<u8> {
    let user = |i: usize| {
        let jid = Jid::new(format!("1555{:07}", i), Server::User);
        Node::new("user").attr("jid", jid).children(vec![
            Node::new("devices").children(vec![
                Node::new("device-list").children(
                    (0..3u16)
                        .map(|d| {
                            let n = Node::new("device").attr("id", d.to_string());
                            if d > 0 {
                                n.attr("key-index", (d + 1).to_string())
                            } else {
                                n
                            }
                        })
                        .collect(),
                ),
                Node::new("key-index-list")
                    .attr("ts", "1700000000")
                    .bytes(vec![7u8; 120]),
            ]),
            Node::new("lid").attr("val", Jid::new(format!("2012345{:08}", i), Server::Lid)),
        ])
    };
    let node = Node::new("iq")
        .attr("from", Jid::server_jid())
        .attr("id", "12345.678-9")
        .attr("type", "result")
        .children(vec![
            Node::new("usync")
                .attr("sid", "12345.678-10")
                .attr("mode", "query")
                .children(vec![
                    Node::new("list").children((0..users).map(user).collect()),
                ]),
        ]);
    let mut out = vec![0u8];
    encode_node(&node, &mut out).unwrap();
    out
}

fn bench_input(c: &mut Criterion, name: &str, frame: Vec<u8>) {
    let body = Bytes::copy_from_slice(&frame[1..]);
    let slice: &[u8] = &frame[1..];
    // Both decoders must accept the input, and agree on the re-encoded size.
    let ours = decode_node(&body).unwrap();
    let theirs = wacore_binary::marshal::unmarshal_ref(slice)
        .unwrap()
        .to_owned();
    let mut a = Vec::new();
    encode_node(&ours, &mut a).unwrap();
    let mut b = Vec::new();
    wacore_binary::marshal_to_vec(&theirs, &mut b).unwrap();
    assert_eq!(a.len() + 1, b.len(), "{name}: encoders disagree on size");

    let mut g = c.benchmark_group(format!("decode/{name}"));
    g.throughput(criterion::Throughput::Bytes(frame.len() as u64));
    g.bench_function("wa-gateway owned", |bch| {
        bch.iter(|| decode_node(black_box(&body)).unwrap())
    });
    // The arena is reused, as a connection's reader reuses it for every frame.
    let mut arena = NodeArena::new();
    g.bench_function("wa-gateway borrowed", |bch| {
        bch.iter(|| {
            let n = arena.decode(black_box(slice)).unwrap();
            black_box(&n);
        })
    });
    g.bench_function("wacore-binary owned", |bch| {
        bch.iter(|| {
            wacore_binary::marshal::unmarshal_ref(black_box(slice))
                .unwrap()
                .to_owned()
        })
    });
    g.bench_function("wacore-binary borrowed", |bch| {
        bch.iter(|| {
            let n = wacore_binary::marshal::unmarshal_ref(black_box(slice)).unwrap();
            black_box(&n);
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("encode/{name}"));
    g.throughput(criterion::Throughput::Bytes(frame.len() as u64));
    let mut buf = Vec::with_capacity(frame.len() + 64);
    g.bench_function("wa-gateway", |bch| {
        bch.iter(|| {
            buf.clear();
            buf.push(0);
            encode_node(black_box(&ours), &mut buf).unwrap();
        })
    });
    let mut buf = Vec::with_capacity(frame.len() + 64);
    g.bench_function("wacore-binary", |bch| {
        bch.iter(|| wacore_binary::marshal_to_vec(black_box(&theirs), &mut buf).unwrap())
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    bench_input(c, "inbound message", fixture_frame("inbound message"));
    bench_input(c, "usync 200 users", usync_result(200));
}

criterion_group!(benches, codec);
criterion_main!(benches);
