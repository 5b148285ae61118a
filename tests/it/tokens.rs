//! The token tables written into src/binary/token.rs equal the shared token table (v3), carried
//! in the repository as fixtures/tokens.json (a copy of shared/protocol/tokens.json, which is
//! checked against it whenever the shared folder is beside the repository).

use wa_gateway::binary::token::{DICT_VERSION, DOUBLE_BYTE, SINGLE_BYTE, Token, lookup};
use wa_gateway::socket::CONN_HEADER;

#[test]
fn tables_match_shared_protocol_tokens() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("fixtures/tokens.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the token table is expected at {}: {e}", path.display()));
    // The shared original, when present, is the same table.
    if let Ok(shared) = std::fs::read_to_string(root.join("../shared/protocol/tokens.json")) {
        let a: serde_json::Value = serde_json::from_str(&shared).unwrap();
        let b: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            a, b,
            "fixtures/tokens.json differs from shared/protocol/tokens.json"
        );
    }
    let t: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(t["dict_version"].as_u64(), Some(u64::from(DICT_VERSION)));
    let single: Vec<&str> = t["single"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(single, SINGLE_BYTE.to_vec());
    let double = t["double"].as_array().unwrap();
    assert_eq!(double.len(), 4);
    for (d, list) in double.iter().enumerate() {
        let list: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(list, DOUBLE_BYTE[d].to_vec(), "dictionary {d}");
    }
}

#[test]
fn lookup_inverts_the_tables_and_header_announces_their_version() {
    assert_eq!(CONN_HEADER, [b'W', b'A', 6, DICT_VERSION]);
    for (i, s) in SINGLE_BYTE.iter().enumerate().skip(1) {
        assert_eq!(lookup(s), Some(Token::Single(i as u8)));
    }
    for (d, dict) in DOUBLE_BYTE.iter().enumerate() {
        for (i, s) in dict.iter().enumerate() {
            assert_eq!(
                lookup(s),
                Some(Token::Double {
                    dict: d as u8,
                    index: i as u8
                })
            );
        }
    }
    assert_eq!(lookup(""), None);
    assert_eq!(lookup("definitely-not-a-token"), None);
    // PROTOCOL.md §4.7 handy indices.
    assert_eq!(lookup("s.whatsapp.net"), Some(Token::Single(3)));
    assert_eq!(
        lookup("pair-device"),
        Some(Token::Double {
            dict: 1,
            index: 238
        })
    );
}
