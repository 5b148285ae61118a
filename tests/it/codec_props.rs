//! Property tests of the node codec: encode→decode is the identity for arbitrary nodes and
//! JIDs, and arbitrary bytes decode to Ok or Err, never a panic.

use bytes::Bytes;
use proptest::prelude::*;
use wa_gateway::binary::token::{DOUBLE_BYTE, SINGLE_BYTE};
use wa_gateway::binary::{
    Content, Jid, Node, NodeArena, Server, Value, decode_frame, decode_node, encode_frame,
    encode_node,
};

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        (1usize..236).prop_map(|i| SINGLE_BYTE[i].to_owned()),
        (0usize..4, 0usize..256).prop_map(|(d, i)| DOUBLE_BYTE[d][i].to_owned()),
    ]
}

/// Strings of every wire class: tokens, nibble, hex, raw (incl. empty and non-ASCII).
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        token(),
        "[0-9.-]{1,140}",
        "[0-9A-F]{1,140}",
        ".{0,40}",
        "[a-z@:.]{0,20}",
    ]
}

/// Strings that decode as strings when used as content (token or packed).
fn content_string() -> impl Strategy<Value = String> {
    prop_oneof![token(), "[0-9.-]{1,127}", "[0-9A-F]{1,127}"]
}

fn other_server() -> impl Strategy<Value = Server> {
    "[a-z]{1,10}(\\.[a-z]{1,5})?".prop_filter_map("known server", |s| match Server::parse(&s) {
        Server::Other(s) => Some(Server::Other(s)),
        _ => None,
    })
}

pub fn any_jid() -> impl Strategy<Value = Jid> {
    let user = prop_oneof![
        Just(String::new()),
        "[0-9]{1,20}",
        "[0-9]{5,15}-[0-9]{10}",
        "[a-z]{1,8}"
    ];
    prop_oneof![
        (
            user.clone(),
            0u16..256,
            prop_oneof![
                Just(Server::User),
                Just(Server::Lid),
                Just(Server::Hosted),
                Just(Server::HostedLid)
            ]
        )
            .prop_map(|(u, d, s)| Jid::with_device(u, d, s)),
        (user.clone(), 2u8..128, 0u16..256).prop_map(|(u, a, d)| Jid {
            agent: a,
            ..Jid::with_device(u, d, Server::User)
        }),
        (user.clone(), any::<u16>()).prop_map(|(u, d)| Jid::with_device(u, d, Server::Messenger)),
        (user.clone(), any::<u16>(), any::<u16>()).prop_map(|(u, d, i)| Jid {
            integrator: i,
            ..Jid::with_device(u, d, Server::Interop)
        }),
        (
            user,
            prop_oneof![
                Just(Server::Group),
                Just(Server::Broadcast),
                Just(Server::LegacyUser),
                Just(Server::Newsletter),
                Just(Server::Call),
                Just(Server::Bot),
                other_server()
            ]
        )
            .prop_map(|(u, s)| Jid::new(u, s)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any_string().prop_map(|s| Value::Str(s.into())),
        any_jid().prop_map(Value::Jid)
    ]
}

fn leaf() -> impl Strategy<Value = Node> {
    let tag = prop_oneof![token(), "[a-z:_-]{1,12}"];
    let content = prop_oneof![
        Just(Content::None),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| Content::Bytes(Bytes::from(b))),
        content_string().prop_map(|s| Content::Text(Value::Str(s.into()))),
        any_jid().prop_map(|j| Content::Text(Value::Jid(j))),
        Just(Content::Children(vec![])),
    ];
    (
        tag,
        proptest::collection::vec((any_string(), value()), 0..6),
        content,
    )
        .prop_map(|(tag, attrs, content)| Node {
            tag: tag.into(),
            attrs: attrs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            content,
        })
}

fn any_node() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        (leaf(), proptest::collection::vec(inner, 0..8)).prop_map(|(mut n, c)| {
            n.content = Content::Children(c);
            n
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn nodes_round_trip(node in any_node()) {
        let frame = encode_frame(&node).unwrap();
        prop_assert_eq!(decode_frame(Bytes::from(frame)).unwrap(), node);
    }

    #[test]
    fn jids_round_trip(jid in any_jid()) {
        let node = Node::new("x").attr("jid", jid.clone()).text(jid.clone());
        let mut out = Vec::new();
        encode_node(&node, &mut out).unwrap();
        let back = decode_node(&Bytes::from(out)).unwrap();
        prop_assert_eq!(back.get("jid"), Some(&Value::Jid(jid.clone())));
        // The string form parses back to the same JID where the form is unambiguous.
        if !jid.user.is_empty() && jid.integrator == 0 && !matches!(jid.server, Server::Other(_)) {
            prop_assert_eq!(jid.to_string().parse::<Jid>().unwrap(), jid);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(Bytes::from(data.clone()));
        let owned = decode_node(&Bytes::from(data.clone()));
        // The borrowed decoder accepts exactly what the owned one accepts, with equal content.
        let mut arena = NodeArena::new();
        let borrowed = arena.decode(&data);
        prop_assert_eq!(owned.is_ok(), borrowed.is_ok());
        if let (Ok(o), Ok(b)) = (owned, borrowed) {
            prop_assert_eq!(b.to_owned_node(None), o);
        }
    }

    #[test]
    fn borrowed_decode_agrees_on_valid_nodes(node in any_node()) {
        let mut out = Vec::new();
        encode_node(&node, &mut out).unwrap();
        let frame = Bytes::from(out);
        let mut arena = NodeArena::new();
        let view = arena.decode(&frame).unwrap();
        prop_assert_eq!(view.to_owned_node(Some(&frame)), node.clone());
        for (k, v) in &node.attrs {
            let got = view.get(k).unwrap();
            // First attribute with that key (keys may repeat in generated nodes).
            let first = node.get(k).unwrap();
            prop_assert!(got.eq_str(&first.as_str()));
            let _ = v;
        }
    }

    #[test]
    fn mutated_frames_never_panic(node in any_node(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut frame = encode_frame(&node).unwrap();
        for (i, x) in flips {
            let n = frame.len();
            frame[i % n] ^= x;
        }
        let owned = decode_frame(Bytes::from(frame.clone()));
        let mut arena = NodeArena::new();
        let borrowed = arena.decode(&frame[1..]);
        if frame[0] & 2 == 0 {
            prop_assert_eq!(owned.is_ok(), borrowed.is_ok());
        }
    }
}
