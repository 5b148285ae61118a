//! Media crypto against Baileys (`fixtures/baileys/media.json`, recorded by
//! `tools/fixtures/media.mjs`): every expected value (keys, upload bodies, hashes, tokens, retry
//! ciphertexts, the whole rmr receipt node) is what Baileys produced, and the decryptor reads
//! Baileys' recorded bodies, not ours. Baileys verifies nothing on download (CLIENT-FEATURES
//! §2.5); our decryptor does, so tampered copies of its bodies must fail with the right error.

use serde_json::Value;
use sha2::{Digest, Sha256};
use wa_gateway::binary::{Content, Jid, Node};
use wa_gateway::media::cipher::{self, Decryptor, Encryptor, Expect};
use wa_gateway::media::retry;
use wa_gateway::media::{MediaError, MediaKeys, MediaType, expand};
use wa_gateway::proto::wa::MediaRetryNotification;
use wa_gateway::stanza;
use wa_gateway::util::hex;

use crate::common::{fixture, hex32, hexf, value_of};

fn media() -> Value {
    fixture("baileys/media.json")
}

fn media_type(name: &str) -> MediaType {
    MediaType::parse(name).unwrap_or_else(|| panic!("unknown media type {name}"))
}

/// The fixture's large-plaintext rule: block i of the stream is SHA-256(`{seed}/{i}`).
fn seeded(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(&Sha256::digest(format!("{seed}/{i}")));
        i += 1;
    }
    out.truncate(len);
    out
}

struct Upload {
    name: String,
    keys: MediaKeys,
    plain: Vec<u8>,
    v: Value,
}

fn uploads() -> Vec<Upload> {
    let m = media();
    m["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let ty = media_type(v["media_type"].as_str().unwrap());
            let plain = match v.get("plaintext_rule") {
                Some(rule) => seeded(
                    rule["seed"].as_str().unwrap(),
                    rule["length"].as_u64().unwrap() as usize,
                ),
                None => hexf(v, "plaintext_hex"),
            };
            Upload {
                name: v["name"].as_str().unwrap().to_owned(),
                keys: expand(&hex32(v, "media_key_hex"), ty),
                plain,
                v: v.clone(),
            }
        })
        .collect()
}

fn expect_of(v: &Value) -> Expect {
    Expect {
        file_sha256: hex32(v, "file_sha256_hex"),
        file_enc_sha256: Some(hex32(v, "file_enc_sha256_hex")),
        max_plain: v["file_length"].as_u64().unwrap(),
    }
}

/// Checks a body against the vector: the whole body, or its SHA-256 for the large one.
fn assert_body(u: &Upload, body: &[u8], how: &str) {
    let v = &u.v;
    assert_eq!(
        body.len() as u64,
        v["enc_length"].as_u64().unwrap(),
        "{} {how}",
        u.name
    );
    if v.get("body_hex").is_some() {
        assert_eq!(body, hexf(v, "body_hex"), "{} {how}", u.name);
    } else {
        let digest: [u8; 32] = Sha256::digest(body).into();
        assert_eq!(digest, hex32(v, "body_sha256_hex"), "{} {how}", u.name);
    }
    assert_eq!(
        &body[body.len() - 10..],
        hexf(v, "mac_hex"),
        "{} {how}",
        u.name
    );
}

/// Checks what the encryptor reports against the vector's hashes, lengths and upload token.
fn assert_encrypted(u: &Upload, done: &cipher::Encrypted, how: &str) {
    let v = &u.v;
    let at = |field: &str| format!("{} {how}: {field}", u.name);
    assert_eq!(
        done.file_sha256,
        hex32(v, "file_sha256_hex"),
        "{}",
        at("file_sha256")
    );
    assert_eq!(
        done.file_enc_sha256,
        hex32(v, "file_enc_sha256_hex"),
        "{}",
        at("file_enc_sha256")
    );
    assert_eq!(
        done.file_length,
        v["file_length"].as_u64().unwrap(),
        "{}",
        at("file_length")
    );
    assert_eq!(
        done.enc_length,
        v["enc_length"].as_u64().unwrap(),
        "{}",
        at("enc_length")
    );
    assert_eq!(
        done.upload_token(),
        v["upload_token"].as_str().unwrap(),
        "{}",
        at("upload_token")
    );
}

#[test]
fn keys_match_baileys_get_media_keys() {
    for u in uploads() {
        assert_eq!(u.keys.iv.to_vec(), hexf(&u.v, "iv_hex"), "{}", u.name);
        assert_eq!(
            u.keys.cipher_key[..],
            hexf(&u.v, "cipher_key_hex"),
            "{}",
            u.name
        );
        assert_eq!(u.keys.mac_key[..], hexf(&u.v, "mac_key_hex"), "{}", u.name);
    }
}

#[test]
fn encryptor_reproduces_baileys_bodies_in_any_chunking() {
    for u in uploads() {
        if let Some(sha) = u.v.get("plaintext_sha256_hex") {
            let digest: [u8; 32] = Sha256::digest(&u.plain).into();
            assert_eq!(hex32(&u.v, "plaintext_sha256_hex"), digest, "{sha}");
        }
        let (body, done) = cipher::encrypt(&u.keys, &u.plain);
        assert_body(&u, &body, "one-shot");
        assert_encrypted(&u, &done, "one-shot");

        for chunk in [1usize, 7, 16, 4096] {
            let mut enc = Encryptor::new(&u.keys);
            let mut body = Vec::new();
            for piece in u.plain.chunks(chunk) {
                enc.update(piece, &mut body);
            }
            let streamed = enc.finish(&mut body);
            let how = format!("chunks of {chunk}");
            assert_body(&u, &body, &how);
            assert_encrypted(&u, &streamed, &how);
        }
    }
}

/// Baileys' upload body for a vector: `body_hex` as recorded, or, for the large vector that
/// stores only `body_sha256_hex`, the one body with that SHA-256 (and `enc_length`), which
/// [`assert_body`] checks before it is used.
fn baileys_body(u: &Upload) -> Vec<u8> {
    if u.v.get("body_hex").is_some() {
        return hexf(&u.v, "body_hex");
    }
    let (body, _) = cipher::encrypt(&u.keys, &u.plain);
    assert_body(u, &body, "large body rebuilt from its SHA-256");
    body
}

/// Checks recovered plaintext against the vector's `plaintext_hex` or, for the large vector,
/// its rule and `plaintext_sha256_hex`.
fn assert_plain(u: &Upload, plain: &[u8], how: &str) {
    match u.v.get("plaintext_hex") {
        Some(_) => assert_eq!(plain, hexf(&u.v, "plaintext_hex"), "{} {how}", u.name),
        None => {
            assert_eq!(plain, u.plain, "{} {how}", u.name);
            let digest: [u8; 32] = Sha256::digest(plain).into();
            assert_eq!(
                digest,
                hex32(&u.v, "plaintext_sha256_hex"),
                "{} {how}",
                u.name
            );
        }
    }
    assert_eq!(
        plain.len() as u64,
        u.v["file_length"].as_u64().unwrap(),
        "{} {how}",
        u.name
    );
}

/// The decryptor reads the bodies Baileys wrote: it must verify them against Baileys' own
/// `fileSha256`/`fileEncSha256`/MAC (any mismatch is an error) and give back its plaintext.
#[test]
fn decryptor_recovers_baileys_plaintexts_in_any_chunking() {
    for u in uploads() {
        let body = baileys_body(&u);
        let file_length = u.v["file_length"].as_u64().unwrap();
        let plain = cipher::decrypt(&u.keys, &body, expect_of(&u.v)).unwrap();
        assert_plain(&u, &plain, "one-shot");
        for chunk in [1usize, 7, 16, 4096] {
            let how = format!("chunks of {chunk}");
            let mut dec = Decryptor::new(&u.keys, expect_of(&u.v));
            let mut out = Vec::new();
            for piece in body.chunks(chunk) {
                dec.update(piece, &mut out)
                    .unwrap_or_else(|e| panic!("{} {how}: {e:?}", u.name));
            }
            let verified = dec
                .finish(&mut out)
                .unwrap_or_else(|e| panic!("{} {how}: {e:?}", u.name));
            assert_plain(&u, &out, &how);
            assert_eq!(verified.file_length, file_length, "{} {how}", u.name);
        }
    }
}

#[test]
fn tampered_baileys_bodies_fail_with_the_specific_error() {
    let all = uploads();
    let u = all.iter().find(|u| u.name == "image").unwrap();
    let body = hexf(&u.v, "body_hex");
    let exp = expect_of(&u.v);
    let without_enc_hash = Expect {
        file_enc_sha256: None,
        ..exp
    };
    let run = |b: &[u8], e: Expect| cipher::decrypt(&u.keys, b, e);

    let mut ct = body.clone();
    ct[100] ^= 0x01;
    assert_eq!(run(&ct, exp), Err(MediaError::EncHashMismatch));
    assert_eq!(run(&ct, without_enc_hash), Err(MediaError::BadMac));

    let mut mac = body.clone();
    let last = mac.len() - 1;
    mac[last] ^= 0x80;
    assert_eq!(run(&mac, exp), Err(MediaError::EncHashMismatch));
    assert_eq!(run(&mac, without_enc_hash), Err(MediaError::BadMac));

    // Truncating or extending by a block keeps the length valid: the MAC catches it.
    assert_eq!(
        run(&body[..body.len() - 16], without_enc_hash),
        Err(MediaError::BadMac)
    );
    assert!(matches!(
        run(&body[..body.len() - 1], exp),
        Err(MediaError::BadLength { .. })
    ));
    assert_eq!(run(&body[..10], exp), Err(MediaError::TooShort { len: 10 }));
    let mut appended = body.clone();
    appended.extend_from_slice(&[0; 16]);
    assert!(matches!(
        run(&appended, exp),
        Err(MediaError::TooLarge { .. })
    ));
    let roomy = Expect {
        max_plain: 1 << 20,
        ..without_enc_hash
    };
    assert_eq!(run(&appended, roomy), Err(MediaError::BadMac));

    let mut wrong_plain = exp;
    wrong_plain.file_sha256[31] ^= 1;
    assert_eq!(run(&body, wrong_plain), Err(MediaError::HashMismatch));

    // Another media type's keys (same media key, other HKDF info) do not verify Baileys' body.
    let other = match media_type(u.v["media_type"].as_str().unwrap()) {
        MediaType::Document => MediaType::Image,
        _ => MediaType::Document,
    };
    let other_keys = expand(&hex32(&u.v, "media_key_hex"), other);
    let wrong = cipher::decrypt(&other_keys, &body, without_enc_hash);
    assert_eq!(wrong, Err(MediaError::BadMac));
}

#[test]
fn retry_requests_match_baileys() {
    let m = media();
    for r in m["retry_requests"].as_array().unwrap() {
        let key = hex32(r, "media_key_hex");
        let id = r["message_id"].as_str().unwrap();
        let iv: [u8; 12] = hexf(r, "iv_hex").try_into().unwrap();
        let ct = hexf(r, "ciphertext_hex");
        assert_eq!(retry::retry_key(&key)[..], hexf(r, "retry_key_hex"));
        assert_eq!(retry::encrypt_request(&key, id, iv), ct, "{id}");
        assert_eq!(retry::decrypt_request(&key, id, &ct, &iv), Ok(()));
        assert_eq!(
            retry::decrypt_request(&key, "3EB0OTHER", &ct, &iv),
            Err(MediaError::RetryDecrypt)
        );

        // The whole node Baileys sends, built by our builder from the vector's inputs: the
        // message id, our own JID (`me`), and the IV and ciphertext of the request sealed above.
        // The fixture records the message key (chat, from_me, participant) only inside its
        // `<rmr>`, so those three inputs are read from there.
        let want = receipt_from_json(&r["receipt"]);
        let rmr = want.child("rmr").expect("fixture receipt has <rmr>");
        let chat = rmr.get_jid("jid").expect("<rmr jid>");
        let from_me = match rmr.get_str("from_me").as_deref() {
            Some("true") => true,
            Some("false") => false,
            other => panic!("{id}: <rmr from_me={other:?}>"),
        };
        let participant = rmr.get_jid("participant");
        let me: Jid = r["me"].as_str().unwrap().parse().unwrap();
        let ours = stanza::media::media_retry_receipt(
            id,
            &me,
            &chat,
            from_me,
            participant.as_ref(),
            &retry::encrypt_request(&key, id, iv),
            &iv,
        );
        assert_eq!(ours, want, "{id}");
    }
}

/// A node in this fixture's JSON form (`content`: null, children, or binary as a hex string),
/// with attribute values typed as Baileys types them (JID when it parses as one).
fn receipt_from_json(v: &Value) -> Node {
    let mut n = Node::new(v["tag"].as_str().expect("tag").to_owned());
    for (k, val) in v["attrs"].as_object().expect("attrs") {
        n.attrs.push((
            k.clone().into(),
            value_of(val.as_str().expect("attr string")),
        ));
    }
    n.content = match &v["content"] {
        Value::Null => Content::None,
        Value::Array(children) => {
            Content::Children(children.iter().map(receipt_from_json).collect())
        }
        Value::String(h) => Content::Bytes(hex::decode(h).expect("hex content").into()),
        other => panic!("unexpected content {other}"),
    };
    n
}

#[test]
fn retry_notifications_match_baileys() {
    let m = media();
    for n in m["retry_notifications"].as_array().unwrap() {
        let key = hex32(n, "media_key_hex");
        let id = n["message_id"].as_str().unwrap();
        let iv: [u8; 12] = hexf(n, "iv_hex").try_into().unwrap();
        let ct = hexf(n, "ciphertext_hex");
        let read = retry::decrypt_notification(&key, id, &ct, &iv).unwrap();
        let want = &n["baileys_read"];
        assert_eq!(read.stanza_id.as_deref(), want["stanza_id"].as_str());
        assert_eq!(read.direct_path.as_deref(), want["direct_path"].as_str());
        assert_eq!(read.result.map(i64::from), want["result"].as_i64());
        // Sealing Baileys' plaintext again with its IV gives its ciphertext byte for byte.
        let plain: MediaRetryNotification =
            prost::Message::decode(hexf(n, "plaintext_hex").as_slice()).unwrap();
        assert_eq!(retry::encrypt_notification(&key, id, &plain, iv), ct);
        let mut bad = ct.clone();
        bad[0] ^= 1;
        let tampered = retry::decrypt_notification(&key, id, &bad, &iv);
        assert_eq!(tampered, Err(MediaError::RetryDecrypt));
    }
}
