//! Helpers shared by the integration tests.

use std::path::PathBuf;

use bytes::Bytes;
use wa_gateway::binary::{Content, Jid, Node, Value};
use wa_gateway::util::hex;

/// Loads `fixtures/<name>` (copied unchanged from ../shared/fixtures).
pub fn fixture(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Hex field of a JSON object.
pub fn hexf(v: &serde_json::Value, key: &str) -> Vec<u8> {
    let s = v[key].as_str().unwrap_or_else(|| panic!("missing {key}"));
    hex::decode(s).unwrap_or_else(|| panic!("{key} is not hex"))
}

/// A fixed-size hex field.
pub fn hex32(v: &serde_json::Value, key: &str) -> [u8; 32] {
    hexf(v, key).try_into().expect("32 bytes")
}

/// How the recording client (Baileys) types a string: JID if it has an `@` and parses as one.
pub fn value_of(s: &str) -> Value {
    if s.contains('@')
        && let Ok(j) = s.parse::<Jid>()
    {
        return Value::Jid(j);
    }
    Value::Str(s.to_owned().into())
}

/// A node from the fixtures' JSON form.
pub fn node_from_json(v: &serde_json::Value) -> Node {
    let mut n = Node::new(v["tag"].as_str().expect("tag").to_owned());
    for (k, val) in v["attrs"].as_object().expect("attrs") {
        n.attrs.push((
            k.clone().into(),
            value_of(val.as_str().expect("attr string")),
        ));
    }
    n.content = match &v["content"] {
        serde_json::Value::Null => Content::None,
        serde_json::Value::Array(children) => {
            Content::Children(children.iter().map(node_from_json).collect())
        }
        c if c.get("bytes_hex").is_some() => Content::Bytes(Bytes::from(hexf(c, "bytes_hex"))),
        c => Content::Text(value_of(c["string"].as_str().expect("string content"))),
    };
    n
}

/// A fresh identity with registration id `reg`.
pub fn identity(reg: u32) -> wa_gateway::signal::LocalIdentity {
    wa_gateway::signal::LocalIdentity {
        key_pair: wa_gateway::signal::KeyPair::generate(),
        registration_id: reg,
    }
}

/// `owner`'s bundle with signed prekey `signed` (id 1) and no one-time prekey.
pub fn signed_bundle(
    owner: &wa_gateway::signal::LocalIdentity,
    signed: &wa_gateway::signal::KeyPair,
) -> wa_gateway::signal::PreKeyBundle {
    wa_gateway::signal::PreKeyBundle {
        registration_id: owner.registration_id,
        pre_key: None,
        signed_pre_key_id: 1,
        signed_pre_key: signed.public,
        signed_pre_key_signature: owner
            .key_pair
            .sign(&wa_gateway::signal::curve::with_type(&signed.public)),
        identity_key: owner.key_pair.public,
    }
}

/// Alice's and Bob's records after Alice's first message reached Bob and Bob's answer reached
/// Alice: a real, acknowledged session each (Alice now sends plain `msg`s).
pub fn session_pair() -> (
    wa_gateway::signal::SessionRecord,
    wa_gateway::signal::SessionRecord,
) {
    use wa_gateway::signal::{
        CiphertextMessage, KeyPair, OsKeys, PreKeySignalMessage, SessionRecord, SignalMessage,
        initiate,
    };
    let (alice, bob) = (identity(1), identity(2));
    let signed = KeyPair::generate();
    let mut a = SessionRecord::new();
    a.promote(initiate(&alice, &signed_bundle(&bob, &signed), &mut OsKeys).unwrap());
    let CiphertextMessage::PreKey(first) = a.encrypt(b"hi").unwrap() else {
        panic!("first message is a pkmsg")
    };
    let m = PreKeySignalMessage::decode(&first).unwrap();
    let mut b = SessionRecord::new();
    b.decrypt_pre_key(&m, &bob, Some(&signed), None, &mut OsKeys)
        .unwrap();
    let answer = SignalMessage::decode(b.encrypt(b"hello").unwrap().bytes()).unwrap();
    assert_eq!(a.decrypt(&answer, &mut OsKeys).unwrap(), b"hello");
    (a, b)
}

/// The text of the QR code in a `data:image/png;base64,…` URL (as the client renders QR codes).
pub fn decode_png_data_url(url: &str) -> String {
    use base64::Engine;
    let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
    let png_bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    img.detect_grids()[0].decode().unwrap().1
}
