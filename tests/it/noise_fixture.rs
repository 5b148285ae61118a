//! fixtures/noise_xx.json: a Baileys 7 handshake with fixed keys. Replayed as the initiator it
//! gives the identical frames and transport keys; the recorded server frames decrypt and the
//! client frames are reproduced. Replayed as the responder, our ServerHello is the recorded one.

use bytes::Bytes;
use wa_gateway::binary::decode_frame;
use wa_gateway::signal::KeyPair;
use wa_gateway::socket::cert::verify_chain;
use wa_gateway::socket::framing::write_frame;
use wa_gateway::socket::noise::{Initiator, Responder};
use wa_gateway::socket::{CONN_HEADER, CertError, HandshakeError, TrustRoot};
use wa_gateway::util::hex;

use crate::common::{fixture, hex32, hexf};

/// A time inside the recorded certificates' validity (1700000000 ..= 4102444800).
const NOW: u64 = 1_750_000_000;

fn key(f: &serde_json::Value, name: &str) -> KeyPair {
    let k = &f["keys"][name];
    let kp = KeyPair::from_private(hex32(k, "private"));
    assert_eq!(kp.public, hex32(k, "public"), "{name} public key");
    kp
}

/// AES-256-GCM as the transport uses it (nonce: 8 zero bytes ‖ counter BE, no AD), computed
/// here independently of the socket code: ciphertext ‖ tag.
fn gcm(key: &[u8; 32], counter: u32, plain: &[u8]) -> Vec<u8> {
    use aes_gcm::aead::{Aead, KeyInit};
    let mut nonce = [0u8; 12];
    nonce[8..].copy_from_slice(&counter.to_be_bytes());
    aes_gcm::Aes256Gcm::new(key.into())
        .encrypt(&nonce.into(), plain)
        .unwrap()
}

/// The transport keys are the recorded ones: what `send` encrypts next is what the recorded
/// write key gives, and what the recorded read key produces, `recv` decrypts. (The cipher keeps
/// no readable copy of its key.)
fn assert_transport_keys(
    cipher: &mut wa_gateway::socket::noise::TransportCipher,
    write: &[u8; 32],
    read: &[u8; 32],
) {
    let probe = b"transport key probe";
    let mut out = Vec::new();
    let n = cipher.send.counter();
    cipher.send.encrypt_frame(probe, &mut out).unwrap();
    assert_eq!(unframe(&out), gcm(write, n, probe), "write key");
    let n = cipher.recv.counter();
    assert_eq!(
        cipher.recv.decrypt(&gcm(read, n, probe)).unwrap(),
        probe,
        "read key"
    );
}

/// Strips the 3-byte length (and checks it).
fn unframe(frame: &[u8]) -> &[u8] {
    let len = (usize::from(frame[0]) << 16) | (usize::from(frame[1]) << 8) | usize::from(frame[2]);
    assert_eq!(len, frame.len() - 3);
    &frame[3..]
}

#[test]
fn initiator_replay_reproduces_frames_and_keys() {
    let f = fixture("noise_xx.json");
    assert_eq!(hexf(&f, "header_hex"), CONN_HEADER);
    let frames = &f["frames"];
    let trust = TrustRoot::from_key(hex32(&f["keys"]["cert_root"], "public"));

    let (state, hello) = Initiator::new(
        &CONN_HEADER,
        key(&f, "client_static"),
        key(&f, "client_ephemeral"),
    )
    .client_hello();
    let mut frame1 = CONN_HEADER.to_vec();
    write_frame(&mut frame1, &hello).unwrap();
    assert_eq!(
        hex::encode(&frame1),
        frames["client_hello_hex"].as_str().unwrap()
    );

    let server_hello = hexf(frames, "server_hello_hex");
    let state = state
        .read_server_hello(unframe(&server_hello), &trust, NOW)
        .unwrap();
    assert_eq!(state.chain().leaf_serial, 2);
    let (finish, mut cipher) = state.client_finish(&hexf(&f, "client_payload_hex"));
    let mut frame3 = Vec::new();
    write_frame(&mut frame3, &finish).unwrap();
    assert_eq!(
        hex::encode(&frame3),
        frames["client_finish_hex"].as_str().unwrap()
    );

    for t in f["transport"].as_array().unwrap() {
        let plain = hexf(t, "plaintext_hex");
        let frame = hexf(t, "frame_hex");
        match t["direction"].as_str().unwrap() {
            "server_to_client" => {
                assert_eq!(
                    u64::from(cipher.recv.counter()),
                    t["counter"].as_u64().unwrap()
                );
                assert_eq!(cipher.recv.decrypt(unframe(&frame)).unwrap(), plain);
            }
            _ => {
                assert_eq!(
                    u64::from(cipher.send.counter()),
                    t["counter"].as_u64().unwrap()
                );
                let mut out = Vec::new();
                cipher.send.encrypt_frame(&plain, &mut out).unwrap();
                assert_eq!(hex::encode(&out), hex::encode(&frame));
            }
        }
        // Every recorded plaintext is a valid node frame.
        decode_frame(Bytes::from(plain)).unwrap();
    }
    let keys = &f["transport_keys"];
    assert_transport_keys(
        &mut cipher,
        &hex32(keys, "client_write_hex"),
        &hex32(keys, "client_read_hex"),
    );
}

#[test]
fn responder_replay_reproduces_server_hello_and_reads_the_payload() {
    let f = fixture("noise_xx.json");
    let frames = &f["frames"];
    let responder = Responder::new(
        &CONN_HEADER,
        key(&f, "server_static"),
        key(&f, "server_ephemeral"),
        hexf(&f, "cert_chain_hex"),
    );
    let client_hello = hexf(frames, "client_hello_hex");
    let (state, server_hello) = responder
        .read_client_hello(unframe(&client_hello[4..]))
        .unwrap();
    let mut frame2 = Vec::new();
    write_frame(&mut frame2, &server_hello).unwrap();
    assert_eq!(
        hex::encode(&frame2),
        frames["server_hello_hex"].as_str().unwrap()
    );

    let mut done = state
        .read_client_finish(unframe(&hexf(frames, "client_finish_hex")))
        .unwrap();
    assert_eq!(
        done.client_static,
        hex32(&f["keys"]["client_static"], "public")
    );
    assert_eq!(done.payload, hexf(&f, "client_payload_hex"));
    let keys = &f["transport_keys"];
    assert_transport_keys(
        &mut done.cipher,
        &hex32(keys, "client_read_hex"),
        &hex32(keys, "client_write_hex"),
    );
}

#[test]
fn recorded_chain_verifies_and_whatsapp_root_refuses_it() {
    let f = fixture("noise_xx.json");
    let chain = hexf(&f, "cert_chain_hex");
    let server = hex32(&f["keys"]["server_static"], "public");
    let trust = TrustRoot::from_key(hex32(&f["keys"]["cert_root"], "public"));
    verify_chain(&chain, &server, &trust, NOW).unwrap();
    assert_eq!(
        verify_chain(&chain, &server, &TrustRoot::default(), NOW),
        Err(CertError::UntrustedRoot)
    );

    // The same refusal happens inside the handshake, before anything is sent.
    let frames = &f["frames"];
    let (state, _) = Initiator::new(
        &CONN_HEADER,
        key(&f, "client_static"),
        key(&f, "client_ephemeral"),
    )
    .client_hello();
    let server_hello = hexf(frames, "server_hello_hex");
    let err = state
        .read_server_hello(unframe(&server_hello), &TrustRoot::default(), NOW)
        .err()
        .unwrap();
    assert_eq!(err, HandshakeError::Cert(CertError::UntrustedRoot));
}

#[test]
fn tampered_server_hello_fails_to_decrypt() {
    let f = fixture("noise_xx.json");
    let trust = TrustRoot::from_key(hex32(&f["keys"]["cert_root"], "public"));
    let server_hello = hexf(&f["frames"], "server_hello_hex");
    for i in [40usize, 80, 200, server_hello.len() - 1] {
        let (state, _) = Initiator::new(
            &CONN_HEADER,
            key(&f, "client_static"),
            key(&f, "client_ephemeral"),
        )
        .client_hello();
        let mut bad = server_hello.clone();
        bad[i] ^= 1;
        assert!(
            state.read_server_hello(unframe(&bad), &trust, NOW).is_err(),
            "byte {i}"
        );
    }
}

#[test]
fn registration_payload_builder_reproduces_the_recorded_client_payload() {
    use prost::Message;
    use wa_gateway::client::payload::{ClientProfile, RegistrationKeys, registration_payload};
    use wa_gateway::proto::wa::ClientPayload;
    use wa_gateway::proto::wa::device_props::PlatformType;

    let f = fixture("noise_xx.json");
    let recorded = hexf(&f, "client_payload_hex");
    let parsed = ClientPayload::decode(&recorded[..]).unwrap();
    let reg = parsed.device_pairing_data.clone().unwrap();
    let identity: [u8; 32] = reg.e_ident.clone().unwrap().try_into().unwrap();
    let skey: [u8; 32] = reg.e_skey_val.clone().unwrap().try_into().unwrap();
    let sig: [u8; 64] = reg.e_skey_sig.clone().unwrap().try_into().unwrap();
    // The signed prekey in Baileys' registration is signed by its identity key.
    assert!(wa_gateway::signal::xeddsa_verify(
        &identity,
        &wa_gateway::signal::curve::with_type(&skey),
        &sig
    ));

    // Baileys' profile: browser ["Ubuntu", "Chrome", "22.04.4"], WA Web 2.3000.1015901307.
    let profile = ClientProfile {
        wa_version: [2, 3000, 1_015_901_307],
        os: "Ubuntu".into(),
        os_version: [10, 15, 7],
        platform_type: PlatformType::Chrome,
        require_full_sync: false,
        language: "en".into(),
        country: "US".into(),
    };
    let ours = registration_payload(
        &profile,
        RegistrationKeys {
            registration_id: u32::from_be_bytes(reg.e_regid.clone().unwrap().try_into().unwrap()),
            identity: &identity,
            signed_pre_key_id: 1,
            signed_pre_key: &skey,
            signed_pre_key_signature: &sig,
        },
    );
    assert_eq!(hex::encode(&ours.encode_to_vec()), hex::encode(&recorded));
}
