//! fixtures/pairing.json (Baileys 7): the QR string for its keys, its pair-success accepted and
//! answered with the listed reply (device signature verified, then the rest byte for byte), and
//! both must_fail stanzas refused — including the one Baileys itself accepts because its
//! signature check discards the result.

use base64::Engine;
use bytes::Bytes;
use prost::Message;
use wa_gateway::binary::{Content, decode_frame, encode_frame};
use wa_gateway::client::pair::{
    PairError, QrKeys, handle_pair_success, pair_error_reply, qr_string,
};
use wa_gateway::client::qr::qr_png;
use wa_gateway::proto::wa::AdvSignedDeviceIdentity;
use wa_gateway::signal::{KeyPair, xeddsa_verify};
use wa_gateway::util::hex;

use crate::common::{fixture, hex32, hexf};

struct Keys {
    noise: KeyPair,
    identity: KeyPair,
    adv: [u8; 32],
    account: [u8; 32],
}

fn keys(f: &serde_json::Value) -> Keys {
    let k = &f["keys"];
    let pair = |name: &str| {
        let kp = KeyPair::from_private(hex32(&k[name], "private"));
        assert_eq!(kp.public, hex32(&k[name], "public"), "{name}");
        kp
    };
    let adv = base64::engine::general_purpose::STANDARD
        .decode(k["adv_secret_key_base64"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    Keys {
        noise: pair("noise"),
        identity: pair("identity"),
        adv,
        account: hex32(&k["phone_account"], "public"),
    }
}

/// The QR platform digit our profile gives for the browser the fixture was recorded with
/// (`[os, browser, version]`).
fn recorded_platform(f: &serde_json::Value) -> char {
    use wa_gateway::client::payload::ClientProfile;
    use wa_gateway::proto::wa::device_props::PlatformType;
    let name = f["browser"][1]
        .as_str()
        .expect("browser: [os, name, version]");
    let platform_type = PlatformType::from_str_name(&name.to_uppercase())
        .unwrap_or_else(|| panic!("unknown browser {name}"));
    ClientProfile {
        platform_type,
        ..ClientProfile::default()
    }
    .qr_platform()
}

#[test]
fn qr_string_matches() {
    let f = fixture("pairing.json");
    let k = keys(&f);
    let qr = qr_string(
        f["ref"].as_str().unwrap(),
        QrKeys {
            noise_public: &k.noise.public,
            identity_public: &k.identity.public,
            adv_secret: &k.adv,
        },
        recorded_platform(&f),
    );
    assert_eq!(qr, f["qr"].as_str().unwrap());
}

#[test]
fn qr_png_decodes_to_the_qr_string() {
    let f = fixture("pairing.json");
    let text = f["qr"].as_str().unwrap();
    let png_bytes = qr_png(text).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, content) = grids[0].decode().unwrap();
    assert_eq!(content, text);
}

#[test]
fn pair_success_is_verified_and_answered_with_the_recorded_reply() {
    let f = fixture("pairing.json");
    let k = keys(&f);
    let stanza = decode_frame(Bytes::from(hexf(&f, "pair_success_frame_hex"))).unwrap();
    let (paired, reply) = handle_pair_success(&stanza, &k.identity, &k.adv).unwrap();
    let e = &f["expected"];
    assert_eq!(paired.jid.to_string(), e["jid"].as_str().unwrap());
    assert_eq!(
        paired.lid.as_ref().unwrap().to_string(),
        e["lid"].as_str().unwrap()
    );
    assert_eq!(paired.platform.as_deref(), e["platform"].as_str());
    assert_eq!(paired.business_name.as_deref(), e["business_name"].as_str());
    assert_eq!(
        u64::from(paired.key_index),
        e["key_index"].as_u64().unwrap()
    );
    assert_eq!(paired.account_signature_key, k.account);

    // Our device signature is ours (random nonce): verify it, then swap in the recorded one
    // and the whole reply must be the recorded bytes.
    let dev = reply
        .child_path(&["pair-device-sign", "device-identity"])
        .unwrap();
    let signed = AdvSignedDeviceIdentity::decode(&dev.content_bytes().unwrap()[..]).unwrap();
    assert!(
        signed.account_signature_key.is_none(),
        "reply must not carry the account key"
    );
    let details = signed.details.clone().unwrap();
    let msg = [&[6u8, 1][..], &details, &k.identity.public, &k.account].concat();
    let sig: [u8; 64] = signed.device_signature.clone().unwrap().try_into().unwrap();
    assert!(xeddsa_verify(&k.identity.public, &msg, &sig));
    let recorded_sig: [u8; 64] = hexf(&f, "reply_device_signature_hex").try_into().unwrap();
    assert!(
        xeddsa_verify(&k.identity.public, &msg, &recorded_sig),
        "recorded signature verifies too"
    );

    let mut with_recorded = signed.clone();
    with_recorded.device_signature = Some(recorded_sig.to_vec());
    let mut reply = reply;
    if let Content::Children(c) = &mut reply.content
        && let Content::Children(d) = &mut c[0].content
    {
        d[0].content = Content::Bytes(with_recorded.encode_to_vec().into());
    }
    assert_eq!(
        hex::encode(&encode_frame(&reply).unwrap()),
        f["reply_frame_hex"].as_str().unwrap()
    );

    // What we persist keeps the account key (it goes out later as <device-identity>).
    let stored = AdvSignedDeviceIdentity::decode(&paired.signed_identity[..]).unwrap();
    assert_eq!(
        stored.account_signature_key.as_deref(),
        Some(&k.account[..])
    );
}

#[test]
fn must_fail_stanzas_are_refused() {
    let f = fixture("pairing.json");
    let k = keys(&f);
    let cases = f["must_fail"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let stanza = decode_frame(Bytes::from(hexf(case, "stanza_frame_hex"))).unwrap();
        let err = handle_pair_success(&stanza, &k.identity, &k.adv).unwrap_err();
        let expected = match name {
            "bad hmac" => PairError::HmacMismatch,
            "bad account signature" => PairError::AccountSignatureMismatch,
            other => panic!("unknown case {other}"),
        };
        assert_eq!(err, expected, "{name}");
        let reply = pair_error_reply("1", &err);
        assert_eq!(reply.get_str("type").unwrap(), "error");
        assert_eq!(
            reply.child("error").unwrap().get_str("code").unwrap(),
            "401"
        );
    }
}

#[test]
fn a_different_identity_or_secret_is_refused() {
    let f = fixture("pairing.json");
    let k = keys(&f);
    let stanza = decode_frame(Bytes::from(hexf(&f, "pair_success_frame_hex"))).unwrap();
    assert_eq!(
        handle_pair_success(&stanza, &k.identity, &[0; 32]).unwrap_err(),
        PairError::HmacMismatch
    );
    assert_eq!(
        handle_pair_success(&stanza, &KeyPair::generate(), &k.adv).unwrap_err(),
        PairError::AccountSignatureMismatch
    );
}
