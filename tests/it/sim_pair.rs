//! Pairing between our client's logic and the simulator's phone/server side, with real keys:
//! the simulator's pair-success passes the client's checks, the client's reply passes the
//! simulator's, and tampering on either side is refused.

use wa_gateway::binary::{Content, Node};
use wa_gateway::client::pair::{PairError, QrKeys, handle_pair_success, qr_string};
use wa_gateway::signal::KeyPair;
use wa_gateway::sim::pair::{
    PhoneAccount, SimPairError, issue_pair_success, parse_qr, verify_pair_device_sign,
};

struct Companion {
    noise: KeyPair,
    identity: KeyPair,
    adv: [u8; 32],
}

fn companion() -> Companion {
    Companion {
        noise: KeyPair::generate(),
        identity: KeyPair::generate(),
        adv: rand::random(),
    }
}

fn phone() -> PhoneAccount {
    PhoneAccount {
        number: "15550001234".into(),
        lid: "201234567890123".into(),
        identity: KeyPair::generate(),
        platform: "android".into(),
        push_name: Some("Sim Phone".into()),
        business_name: None,
    }
}

fn qr(c: &Companion) -> String {
    qr_string(
        "2@abc+def/ghi=",
        QrKeys {
            noise_public: &c.noise.public,
            identity_public: &c.identity.public,
            adv_secret: &c.adv,
        },
        '1',
    )
}

#[test]
fn client_and_simulator_pair_with_real_signatures() {
    let c = companion();
    let p = phone();
    let scanned = parse_qr(&qr(&c)).unwrap();
    assert_eq!(scanned.identity_public, c.identity.public);
    assert_eq!(scanned.platform, Some('1'));
    let (stanza, issued) = issue_pair_success(&p, &scanned, 7, 2, "pair-1", 1_800_000_000);
    let (paired, reply) = handle_pair_success(&stanza, &c.identity, &c.adv).unwrap();
    assert_eq!(paired.jid.to_string(), "15550001234:7@s.whatsapp.net");
    assert_eq!(paired.lid.unwrap().to_string(), "201234567890123:7@lid");
    assert_eq!(paired.platform.as_deref(), Some("android"));
    assert_eq!(paired.key_index, 2);
    assert_eq!(paired.account_signature_key, p.identity.public);
    verify_pair_device_sign(&reply, &issued).unwrap();
}

#[test]
fn a_reply_signed_by_another_key_is_refused() {
    let c = companion();
    let p = phone();
    let scanned = parse_qr(&qr(&c)).unwrap();
    let (stanza, issued) = issue_pair_success(&p, &scanned, 3, 1, "pair-2", 1_800_000_000);
    // An impostor who knows the ADV secret but not the identity key cannot answer: the account
    // signature covers the QR's identity key.
    let impostor = KeyPair::generate();
    assert_eq!(
        handle_pair_success(&stanza, &impostor, &c.adv).unwrap_err(),
        PairError::AccountSignatureMismatch
    );
    // A reply whose device signature was made by another key is refused by the server.
    let (_, mut reply) = handle_pair_success(&stanza, &c.identity, &c.adv).unwrap();
    let other = {
        let c2 = Companion {
            identity: KeyPair::generate(),
            ..companion()
        };
        let scanned2 = wa_gateway::sim::pair::ScannedQr {
            identity_public: c2.identity.public,
            adv_secret: c2.adv,
            ..scanned.clone()
        };
        let (s2, _) = issue_pair_success(&p, &scanned2, 3, 1, "pair-2", 1_800_000_000);
        handle_pair_success(&s2, &c2.identity, &c2.adv).unwrap().1
    };
    let swap = |n: &mut Node, from: &Node| {
        let dev = from
            .child_path(&["pair-device-sign", "device-identity"])
            .unwrap()
            .clone();
        if let Content::Children(c) = &mut n.content
            && let Content::Children(d) = &mut c[0].content
        {
            d[0] = dev;
        }
    };
    swap(&mut reply, &other);
    assert!(matches!(
        verify_pair_device_sign(&reply, &issued).unwrap_err(),
        SimPairError::IdentityMismatch | SimPairError::BadDeviceSignature
    ));
    // An empty reply is malformed.
    assert!(matches!(
        verify_pair_device_sign(&Node::new("iq"), &issued).unwrap_err(),
        SimPairError::MalformedReply(_)
    ));
}

#[test]
fn bad_qr_strings_are_refused() {
    for bad in [
        "",
        "https://wa.me/settings/linked_devices#",
        "ref,only,three",
        "ref,AAAA,BBBB,CCCC,1",
        "ref,a,b,c,d,e,f",
    ] {
        assert!(parse_qr(bad).is_err(), "{bad:?}");
    }
    // The older 4-field form without prefix is still understood.
    let c = companion();
    let full = qr(&c);
    let body = full
        .strip_prefix("https://wa.me/settings/linked_devices#")
        .unwrap();
    let four = body.rsplit_once(',').unwrap().0;
    let scanned = parse_qr(four).unwrap();
    assert_eq!((scanned.adv_secret, scanned.platform), (c.adv, None));
}

#[test]
fn a_pair_success_naming_a_jid_we_could_not_log_in_with_is_refused() {
    let c = companion();
    let scanned = parse_qr(&qr(&c)).unwrap();
    // Properly signed, but the user does not fit a u64 (or the device is the phone itself):
    // storing it would strand the link at the next login.
    for (number, device) in [("123456789012345678901", 3u16), ("15550001234", 0)] {
        let p = PhoneAccount {
            number: number.into(),
            ..phone()
        };
        let (stanza, _) = issue_pair_success(&p, &scanned, device, 1, "pair-1", 1_800_000_000);
        assert!(
            matches!(
                handle_pair_success(&stanza, &c.identity, &c.adv),
                Err(PairError::Malformed(m)) if m.contains("device JID")
            ),
            "{number}:{device}"
        );
    }
}
