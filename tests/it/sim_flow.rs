//! A new device pairs with the simulator over a real loopback WebSocket and logs in, driven step
//! by step with the client's pure pieces (the client lifecycle wraps exactly these steps).

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use wa_gateway::binary::Node;
use wa_gateway::client::pair::{
    QrKeys, handle_pair_success, iq_result, parse_pair_device, qr_string,
};
use wa_gateway::client::payload::{
    ClientProfile, RegistrationKeys, login_payload, registration_payload,
};
use wa_gateway::signal::{KeyPair, SignedPreKey};
use wa_gateway::sim::Simulator;
use wa_gateway::socket::conn::DEFAULT_MAX_FRAME;
use wa_gateway::socket::{ClientConfig, Incoming, NoiseSocket, TrustRoot, connect};
use wa_gateway::util::clock::SystemClock;

async fn next(s: &mut NoiseSocket) -> Node {
    match tokio::time::timeout(Duration::from_secs(10), s.incoming.recv()).await {
        Ok(Some(Incoming::Node(n))) => n,
        other => panic!("expected a node, got {other:?}"),
    }
}

#[tokio::test]
async fn new_device_pairs_then_logs_in() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let cfg = ClientConfig {
            url: sim.ws_url().to_owned(),
            trust: TrustRoot::from_key(sim.root_public_key()),
            clock: Arc::new(SystemClock),
            max_frame: DEFAULT_MAX_FRAME,
        };
        let profile = ClientProfile::default();
        let noise = KeyPair::generate();
        let identity = KeyPair::generate();
        let adv: [u8; 32] = rand::random();
        let signed = SignedPreKey::generate(1, &identity, 0);
        let reg = registration_payload(
            &profile,
            RegistrationKeys {
                registration_id: 1234,
                identity: &identity.public,
                signed_pre_key_id: 1,
                signed_pre_key: &signed.key_pair.public,
                signed_pre_key_signature: &signed.signature,
            },
        );
        let (mut s, _) = connect(&cfg, noise.clone(), &reg.encode_to_vec())
            .await
            .unwrap();

        let offer = next(&mut s).await;
        let (id, refs) = parse_pair_device(&offer).expect("pair-device");
        assert_eq!(refs.len(), 6);
        s.sender.send(&iq_result(&id)).await.unwrap();
        let qr = qr_string(
            &refs[0],
            QrKeys {
                noise_public: &noise.public,
                identity_public: &identity.public,
                adv_secret: &adv,
            },
            profile.qr_platform(),
        );
        let sim2 = sim.clone();
        let scan = tokio::spawn(async move {
            sim2.scan("15550001234", &qr, Some("Alice"), Some("android"))
                .await
        });

        let stanza = next(&mut s).await;
        let (paired, reply) = handle_pair_success(&stanza, &identity, &adv).unwrap();
        s.sender.send(&reply).await.unwrap();
        let jid = scan.await.unwrap().unwrap();
        assert_eq!(jid, paired.jid);
        assert_eq!(paired.jid.user, "15550001234");
        assert_eq!(paired.platform.as_deref(), Some("android"));
        let restart = next(&mut s).await;
        assert_eq!(restart.tag, "stream:error");
        assert_eq!(restart.get_str("code").as_deref(), Some("515"));

        // Restart: a fresh handshake with the login payload.
        let login = login_payload(&profile, &paired.jid, None).unwrap();
        let (mut s, _) = connect(&cfg, noise.clone(), &login.encode_to_vec())
            .await
            .unwrap();
        let success = next(&mut s).await;
        assert_eq!(success.tag, "success", "{success}");
        assert_eq!(
            success.get_jid("lid").unwrap().user,
            paired.lid.as_ref().unwrap().user
        );
        let ping = Node::new("iq")
            .attr("id", "p1")
            .attr("xmlns", "w:p")
            .attr("type", "get")
            .attr("to", wa_gateway::binary::Jid::server_jid());
        s.sender.send(&ping).await.unwrap();
        let pong = next(&mut s).await;
        assert_eq!(
            (
                pong.get_str("type").as_deref(),
                pong.get_str("id").as_deref()
            ),
            (Some("result"), Some("p1"))
        );

        // The same login with another noise key is not the paired device.
        let (mut s, _) = connect(&cfg, KeyPair::generate(), &login.encode_to_vec())
            .await
            .unwrap();
        let refused = next(&mut s).await;
        assert_eq!(
            (refused.tag.as_ref(), refused.get_str("reason").as_deref()),
            ("failure", Some("401"))
        );

        // A registration whose signed prekey is not signed by its identity is refused.
        let mut bad = reg.clone();
        if let Some(d) = bad.device_pairing_data.as_mut() {
            d.e_skey_sig = Some(vec![0; 64]);
        }
        let (mut s, _) = connect(&cfg, KeyPair::generate(), &bad.encode_to_vec())
            .await
            .unwrap();
        let refused = next(&mut s).await;
        assert_eq!(
            (refused.tag.as_ref(), refused.get_str("reason").as_deref()),
            ("failure", Some("400"))
        );
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn scanning_an_unknown_ref_fails_clearly() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let k = KeyPair::generate();
    let qr = qr_string(
        "2@nope",
        QrKeys {
            noise_public: &k.public,
            identity_public: &k.public,
            adv_secret: &[1; 32],
        },
        '1',
    );
    let err = sim.scan("1555", &qr, None, None).await.unwrap_err();
    assert!(err.to_string().contains("expired or unknown ref"), "{err}");
}
