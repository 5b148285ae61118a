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
use wa_gateway::signal::{KeyPair, PreKey, SignedPreKey};
use wa_gateway::sim::Simulator;
use wa_gateway::socket::framing::MAX_FRAME;
use wa_gateway::socket::{ClientConfig, Incoming, NoiseSocket, TrustRoot, connect};
use wa_gateway::util::clock::SystemClock;

async fn next(s: &mut NoiseSocket) -> Node {
    match tokio::time::timeout(Duration::from_secs(10), s.incoming.recv()).await {
        Ok(Some(Incoming::Node(n))) => *n,
        other => panic!("expected a node, got {other:?}"),
    }
}

/// What a device brings to its first connection: the socket's configuration, fresh noise and
/// identity keys, an ADV secret, a signed prekey and the registration payload naming them.
pub(crate) struct RawDevice {
    pub cfg: ClientConfig,
    pub profile: ClientProfile,
    pub noise: KeyPair,
    pub identity: KeyPair,
    pub adv: [u8; 32],
    pub signed: SignedPreKey,
    pub reg: wa_gateway::proto::wa::ClientPayload,
}

impl RawDevice {
    pub(crate) fn new(sim: &Simulator) -> RawDevice {
        let cfg = ClientConfig {
            url: sim.ws_url().to_owned(),
            trust: TrustRoot::from_key(sim.root_public_key()),
            clock: Arc::new(SystemClock),
            max_frame: MAX_FRAME,
            tls: None,
        };
        let profile = ClientProfile::default();
        let identity = KeyPair::generate();
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
        RawDevice {
            cfg,
            profile,
            noise: KeyPair::generate(),
            identity,
            adv: rand::random(),
            signed,
            reg,
        }
    }
}

#[tokio::test]
async fn new_device_pairs_then_logs_in() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let RawDevice {
            cfg,
            profile,
            noise,
            identity,
            adv,
            signed,
            reg,
        } = RawDevice::new(&sim);
        let (mut s, _) = connect(&cfg, noise.clone(), &reg.encode_to_vec())
            .await
            .unwrap();

        let offer = next(&mut s).await;
        let (id, refs) = parse_pair_device(&offer).expect("pair-device");
        assert_eq!(refs.len(), 6);
        let qr_keys = QrKeys {
            noise_public: &noise.public,
            identity_public: &identity.public,
            adv_secret: &adv,
        };
        // A scan before the companion acknowledged the offer waits for the ack.
        let qr = qr_string(&refs[0], qr_keys, profile.qr_platform());
        let sim2 = sim.clone();
        let scan = tokio::spawn(async move {
            sim2.scan("15550001234", &qr, Some("Alice"), Some("android"))
                .await
        });
        // Nothing reaches the companion until it acknowledges the offer.
        if let Ok(early) = tokio::time::timeout(Duration::from_millis(500), s.incoming.recv()).await
        {
            panic!("the server sent {early:?} before the pair-device ack");
        }
        s.sender.send(&iq_result(&id)).await.unwrap();

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

        // The post-login iqs a reference client sends get the server's answers.
        let ask = |id: &str, xmlns: &str, ty: &str, children: Vec<Node>| {
            let n = Node::new("iq")
                .attr("id", id.to_owned())
                .attr("xmlns", xmlns.to_owned())
                .attr("type", ty.to_owned())
                .attr("to", wa_gateway::binary::Jid::server_jid());
            if children.is_empty() {
                n
            } else {
                n.children(children)
            }
        };
        s.sender
            .send(&ask("a1", "passive", "set", vec![Node::new("active")]))
            .await
            .unwrap();
        assert_eq!(
            next(&mut s).await.get_str("type").as_deref(),
            Some("result")
        );
        let offline = next(&mut s).await;
        assert_eq!(offline.tag, "ib", "{offline}");
        assert_eq!(
            offline
                .child("offline")
                .and_then(|o| o.get_str("count"))
                .as_deref(),
            Some("0")
        );
        s.sender
            .send(&ask("d1", "encrypt", "get", vec![Node::new("digest")]))
            .await
            .unwrap();
        let none = next(&mut s).await;
        assert_eq!(
            none.get_str("type").as_deref(),
            Some("error"),
            "no bundle yet: {none}"
        );
        let keys: Vec<PreKey> = (1..=3)
            .map(|id| PreKey {
                id,
                key_pair: KeyPair::generate(),
            })
            .collect();
        let upload =
            wa_gateway::client::prekeys::upload_node(1234, &identity.public, &keys, &signed)
                .attr("id", "u1");
        s.sender.send(&upload).await.unwrap();
        assert_eq!(
            next(&mut s).await.get_str("type").as_deref(),
            Some("result")
        );
        // Keys published: the phone opens a session and greets its companion (consuming a key).
        let greeting = next(&mut s).await;
        assert_eq!(greeting.tag, "message", "{greeting}");
        assert_eq!(greeting.get_str("category").as_deref(), Some("peer"));
        assert_eq!(greeting.get_str("notify").as_deref(), Some("Alice"));
        let enc = greeting.child("enc").expect("enc");
        assert_eq!(enc.get_str("type").as_deref(), Some("pkmsg"));
        // Then the history bootstrap, still a pkmsg: the companion has not answered yet.
        let history = next(&mut s).await;
        assert_eq!(history.tag, "message", "{history}");
        assert_eq!(
            history
                .child("enc")
                .and_then(|e| e.get_str("type"))
                .as_deref(),
            Some("pkmsg")
        );
        // Then the phone's app-state sync key share (CLIENT-FEATURES §3.3).
        let share = next(&mut s).await;
        assert_eq!(share.tag, "message", "{share}");
        assert_eq!(share.get_str("category").as_deref(), Some("peer"));
        s.sender
            .send(&ask("d2", "encrypt", "get", vec![Node::new("digest")]))
            .await
            .unwrap();
        let digest = next(&mut s).await;
        let d = digest.child("digest").expect("digest");
        assert_eq!(
            d.child("identity")
                .and_then(Node::content_bytes)
                .map(|b| b.to_vec()),
            Some(identity.public.to_vec())
        );
        assert_eq!(
            d.child("registration")
                .and_then(Node::content_bytes)
                .map(|b| b.to_vec()),
            Some(1234u32.to_be_bytes().to_vec())
        );
        assert_eq!(d.child("list").map(|l| l.child_nodes().len()), Some(2));
        for (id, xmlns, child) in [
            ("q1", "privacy", "privacy"),
            ("q2", "blocklist", "list"),
            ("q3", "abt", "props"),
        ] {
            s.sender.send(&ask(id, xmlns, "get", vec![])).await.unwrap();
            let r = next(&mut s).await;
            assert_eq!(r.get_str("id").as_deref(), Some(id));
            assert!(r.child(child).is_some(), "{r}");
        }
        s.sender
            .send(&ask("x1", "w:unknown", "get", vec![]))
            .await
            .unwrap();
        let r = next(&mut s).await;
        assert_eq!(
            r.child("error").and_then(|e| e.get_str("code")).as_deref(),
            Some("501")
        );

        // App state: the phone seeded critical_block (its push name) at linking, so a snapshot
        // comes back for it; regular is empty, at version 0 with nothing to serve.
        let sync = Node::new("sync").children(vec![
            Node::new("collection")
                .attr("name", "critical_block")
                .attr("version", "0")
                .attr("return_snapshot", "true"),
            Node::new("collection")
                .attr("name", "regular")
                .attr("version", "0")
                .attr("return_snapshot", "true"),
        ]);
        s.sender
            .send(&ask("as1", "w:sync:app:state", "set", vec![sync]))
            .await
            .unwrap();
        let r = next(&mut s).await;
        let names: Vec<String> = r
            .child("sync")
            .map(|s| {
                s.child_nodes()
                    .iter()
                    .map(|c| c.get_str("name").unwrap().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(names, ["critical_block", "regular"], "{r}");
        let cols = r.child("sync").unwrap().child_nodes();
        assert!(cols[0].child("snapshot").is_some(), "{r}");
        assert_eq!(cols[1].get_str("version").as_deref(), Some("0"));
        assert!(cols[1].child_nodes().is_empty(), "{r}");

        // usync: the phone's LID and devices (0 and our new 1), by JID and by number; a number
        // the simulator does not know is not on WhatsApp.
        let usync = Node::new("usync")
            .attr("sid", "s1")
            .attr("mode", "query")
            .attr("context", "message")
            .children(vec![
                Node::new("query").children(vec![
                    Node::new("devices").attr("version", "2"),
                    Node::new("lid"),
                    Node::new("contact"),
                ]),
                Node::new("list").children(vec![
                    Node::new("user").attr("jid", paired.jid.to_non_ad()),
                    Node::new("user").children(vec![
                        Node::new("contact").bytes(b"+1 555-000-1234".to_vec()),
                    ]),
                    Node::new("user")
                        .children(vec![Node::new("contact").bytes(b"+19995550000".to_vec())]),
                ]),
            ]);
        s.sender
            .send(&ask("us1", "usync", "get", vec![usync]))
            .await
            .unwrap();
        let r = next(&mut s).await;
        let users = r
            .child("usync")
            .and_then(|u| u.child("list"))
            .map(|l| l.child_nodes().to_vec())
            .expect("usync list");
        assert_eq!(users.len(), 3, "{r}");
        for u in &users[..2] {
            assert_eq!(u.get_jid("jid").unwrap().user, "15550001234");
            let lid = u.child("lid").and_then(|l| l.get_jid("val")).unwrap();
            assert_eq!(Some(lid.user), paired.lid.as_ref().map(|l| l.user.clone()));
            let ids: Vec<String> = u
                .child("devices")
                .and_then(|d| d.child("device-list"))
                .map(|l| {
                    l.child_nodes()
                        .iter()
                        .map(|d| d.get_str("id").unwrap().into_owned())
                        .collect()
                })
                .unwrap();
            // The phone, the user's simulated companion, the linked client.
            assert_eq!(ids, ["0", "1", "2"]);
            assert_eq!(
                u.child("contact")
                    .and_then(|c| c.get_str("type"))
                    .as_deref(),
                Some("in")
            );
        }
        assert_eq!(
            users[2]
                .child("contact")
                .and_then(|c| c.get_str("type"))
                .as_deref(),
            Some("out")
        );
        assert!(users[2].child("devices").is_none());

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

#[tokio::test]
async fn a_companion_that_never_acknowledges_pair_device_is_dropped() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let cfg = ClientConfig {
        url: sim.ws_url().to_owned(),
        trust: TrustRoot::from_key(sim.root_public_key()),
        clock: Arc::new(SystemClock),
        max_frame: MAX_FRAME,
        tls: None,
    };
    let (noise, identity) = (KeyPair::generate(), KeyPair::generate());
    let signed = SignedPreKey::generate(1, &identity, 0);
    let reg = registration_payload(
        &ClientProfile::default(),
        RegistrationKeys {
            registration_id: 7,
            identity: &identity.public,
            signed_pre_key_id: 1,
            signed_pre_key: &signed.key_pair.public,
            signed_pre_key_signature: &signed.signature,
        },
    );
    let (mut s, _) = connect(&cfg, noise.clone(), &reg.encode_to_vec())
        .await
        .unwrap();
    let (_, refs) = parse_pair_device(&next(&mut s).await).unwrap();
    let qr = qr_string(
        &refs[0],
        QrKeys {
            noise_public: &noise.public,
            identity_public: &identity.public,
            adv_secret: &[3; 32],
        },
        '1',
    );
    // Ten seconds of simulator time pass on the paused clock without an ack.
    tokio::time::pause();
    let err = sim.scan("15550001235", &qr, None, None).await.unwrap_err();
    assert!(err.to_string().contains("never acknowledged"), "{err}");
    tokio::time::resume();
    match tokio::time::timeout(Duration::from_secs(10), s.incoming.recv()).await {
        Ok(Some(Incoming::Closed(_)) | None) => {}
        other => panic!("expected the stream to close, got {other:?}"),
    }
    assert!(sim.linked_devices("15550001235").is_empty());
}

#[tokio::test]
async fn silent_sockets_hold_at_most_the_handshake_slots_and_then_let_clients_in() {
    use wa_gateway::sim::server::MAX_HANDSHAKES;
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = sim
            .ws_url()
            .trim_start_matches("ws://")
            .trim_end_matches("/ws/chat")
            .to_owned();
        // Every handshake slot taken by a socket that never says a word.
        let mut silent = Vec::new();
        for _ in 0..MAX_HANDSHAKES {
            silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cfg = ClientConfig {
            url: sim.ws_url().to_owned(),
            trust: TrustRoot::from_key(sim.root_public_key()),
            clock: Arc::new(SystemClock),
            max_frame: MAX_FRAME,
            tls: None,
        };
        let reg = wa_gateway::client::payload::registration_payload(
            &ClientProfile::default(),
            RegistrationKeys {
                registration_id: 1,
                identity: &KeyPair::generate().public,
                signed_pre_key_id: 1,
                signed_pre_key: &[1; 32],
                signed_pre_key_signature: &[2; 64],
            },
        )
        .encode_to_vec();
        // A real client waits for a slot: its handshake does not complete meanwhile.
        let waiting = tokio::spawn({
            let cfg = cfg.clone();
            let reg = reg.clone();
            async move { connect(&cfg, KeyPair::generate(), &reg).await.map(|_| ()) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !waiting.is_finished(),
            "a handshake ran beyond the slot limit"
        );
        assert_eq!(sim.connections_accepted(), 0);
        // The silent sockets go; the waiting client gets its slot and completes.
        drop(silent);
        waiting.await.unwrap().unwrap();
        connect(&cfg, KeyPair::generate(), &reg).await.unwrap();
    })
    .await
    .expect("finished in time");
}
