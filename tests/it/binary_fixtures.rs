//! fixtures/binary_nodes.json: bytes written by Baileys 7 (dictionary v3). Every node decodes to
//! the listed node, every compressed variant too, and every node encodes to the identical bytes.

use bytes::Bytes;
use wa_gateway::binary::{NodeArena, decode_frame, encode_frame};
use wa_gateway::util::hex;

use crate::common::{fixture, hexf, node_from_json};

#[test]
fn every_node_decodes_and_encodes_byte_for_byte() {
    let f = fixture("binary_nodes.json");
    let nodes = f["nodes"].as_array().expect("nodes");
    assert!(!nodes.is_empty(), "the fixture lists nodes");
    let mut compressed = 0;
    for case in nodes {
        let name = case["name"].as_str().unwrap();
        let expected = node_from_json(&case["node"]);
        let frame = hexf(case, "frame_hex");

        let decoded =
            decode_frame(Bytes::from(frame.clone())).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}: decode");
        let mut arena = NodeArena::new();
        let view = arena
            .decode(&frame[1..])
            .unwrap_or_else(|e| panic!("{name} (borrowed): {e}"));
        assert_eq!(
            view.to_owned_node(None),
            expected,
            "{name}: borrowed decode"
        );

        let encoded = encode_frame(&expected).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(hex::encode(&encoded), hex::encode(&frame), "{name}: encode");

        if case.get("compressed_frame_hex").is_some() {
            compressed += 1;
            let z = hexf(case, "compressed_frame_hex");
            assert_eq!(z[0], 2, "{name}: compressed flag");
            let decoded =
                decode_frame(Bytes::from(z)).unwrap_or_else(|e| panic!("{name} (zlib): {e}"));
            assert_eq!(decoded, expected, "{name}: compressed decode");
        }
    }
    // Every listed compressed variant was checked (none silently skipped).
    let listed = nodes
        .iter()
        .filter(|c| c.get("compressed_frame_hex").is_some())
        .count();
    assert_eq!(compressed, listed);
}

#[test]
fn truncations_and_corruptions_of_fixture_frames_are_errors_not_panics() {
    let f = fixture("binary_nodes.json");
    for case in f["nodes"].as_array().unwrap().iter().take(20) {
        let frame = hexf(case, "frame_hex");
        for cut in 0..frame.len() {
            assert!(decode_frame(Bytes::from(frame[..cut].to_vec())).is_err());
        }
        let mut extra = frame.clone();
        extra.push(0);
        assert!(
            decode_frame(Bytes::from(extra)).is_err(),
            "trailing byte accepted"
        );
        for i in 1..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0xa5;
            let _ = decode_frame(Bytes::from(bad));
        }
    }
}
