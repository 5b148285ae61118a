//! The simulator's app state (CLIENT-FEATURES §3) driven by raw devices over a real loopback
//! WebSocket: the phone's key share at linking, the seeded snapshots a client's decoder takes,
//! an upload announced to the account's other device by `server_sync` and a stale one refused
//! with 409, and the phone's answers to key and fatal-recovery requests.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use wa_gateway::appstate::{
    Collection, CollectionState, MutationKeys, decode_recovery, decode_snapshot, encode,
    encode_patch,
};
use wa_gateway::binary::{Jid, Node, Server};
use wa_gateway::client::pair::{
    QrKeys, handle_pair_success, iq_result, parse_pair_device, qr_string,
};
use wa_gateway::client::payload::login_payload;
use wa_gateway::proto::wa;
use wa_gateway::signal::store::PreKeyStore;
use wa_gateway::signal::{
    EncType, IdentityTrust, LocalIdentity, MemoryStore, ProtocolAddress, SessionCipher,
};
use wa_gateway::sim::{PhoneAction, Simulator};
use wa_gateway::socket::{Incoming, NoiseSocket, connect};

const NUMBER: &str = "15550007001";

/// A linked device driven stanza by stanza, with its own Signal store to read the phone.
struct Raw {
    s: NoiseSocket,
    cipher: SessionCipher<Arc<MemoryStore>>,
    /// Stanzas read while waiting for another.
    seen: Vec<Node>,
    ids: u32,
}

impl Raw {
    async fn next(&mut self) -> Node {
        match tokio::time::timeout(Duration::from_secs(10), self.s.incoming.recv()).await {
            Ok(Some(Incoming::Node(n))) => *n,
            other => panic!("expected a node, got {other:?}"),
        }
    }

    /// Reads until `pred` holds, keeping the rest.
    async fn until(&mut self, pred: impl Fn(&Node) -> bool) -> Node {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        loop {
            let n = self.next().await;
            if pred(&n) {
                return n;
            }
            self.seen.push(n);
        }
    }

    async fn iq(&mut self, xmlns: &str, children: Vec<Node>) -> Node {
        self.ids += 1;
        let id = format!("t{}", self.ids);
        let n = Node::new("iq")
            .attr("id", id.clone())
            .attr("xmlns", xmlns.to_owned())
            .attr("type", "set")
            .attr("to", Jid::server_jid())
            .children(children);
        self.s.sender.send(&n).await.unwrap();
        self.until(|n| n.tag == "iq" && n.get_str("id").as_deref() == Some(id.as_str()))
            .await
    }

    /// The next peer message from the phone, decrypted.
    async fn read_phone(
        &mut self,
        pred: impl Fn(&wa::ProtocolMessage) -> bool,
    ) -> wa::ProtocolMessage {
        loop {
            let n = self
                .until(|n| n.tag == "message" && n.get_str("category").as_deref() == Some("peer"))
                .await;
            let enc = n.child("enc").unwrap();
            let kind = EncType::parse(&enc.get_str("type").unwrap()).unwrap();
            let phone = Jid::with_device(NUMBER, 0, Server::User);
            let d = self
                .cipher
                .decrypt(
                    &ProtocolAddress::from_jid(&phone),
                    kind,
                    enc.content_bytes().unwrap(),
                )
                .await
                .unwrap();
            let body = wa_gateway::stanza::unpad(&d.plaintext).unwrap();
            let m = wa::Message::decode(body).unwrap();
            if let Some(pm) = m.protocol_message
                && pred(&pm)
            {
                return *pm;
            }
        }
    }

    /// Sends `pm` to its own phone as a peer message.
    async fn send_phone(&mut self, pm: wa::ProtocolMessage) {
        self.send_phone_as(pm, true).await
    }

    /// As a peer message (`category="peer"`), or as an ordinary message to ourselves.
    async fn send_phone_as(&mut self, pm: wa::ProtocolMessage, peer: bool) {
        let m = wa::Message {
            protocol_message: Some(Box::new(pm)),
            ..Default::default()
        };
        let phone = Jid::with_device(NUMBER, 0, Server::User);
        let ct = self
            .cipher
            .encrypt(
                &ProtocolAddress::from_jid(&phone),
                &wa_gateway::stanza::pad(m.encode_to_vec()),
            )
            .await
            .unwrap();
        self.ids += 1;
        let mut n = Node::new("message")
            .attr("id", format!("3EB0PEER{}", self.ids))
            .attr("to", Jid::new(NUMBER, Server::User))
            .attr("type", "text");
        if peer {
            n = n.attr("category", "peer").attr("push_priority", "high");
        }
        let n = n.children(vec![
            Node::new("enc")
                .attr("v", "2")
                .attr("type", ct.enc_type())
                .bytes(ct.bytes().to_vec()),
        ]);
        self.s.sender.send(&n).await.unwrap();
    }
}

/// Pairs a new device with `NUMBER`'s phone, logs it in, publishes its keys and goes active.
async fn link(sim: &Simulator) -> Raw {
    let crate::sim_flow::RawDevice {
        cfg,
        profile,
        noise,
        identity,
        adv,
        signed,
        reg,
    } = crate::sim_flow::RawDevice::new(sim);
    let (mut s, _) = connect(&cfg, noise.clone(), &reg.encode_to_vec())
        .await
        .unwrap();
    let next = async |s: &mut NoiseSocket| match tokio::time::timeout(
        Duration::from_secs(10),
        s.incoming.recv(),
    )
    .await
    {
        Ok(Some(Incoming::Node(n))) => *n,
        other => panic!("expected a node, got {other:?}"),
    };
    let offer = next(&mut s).await;
    let (id, refs) = parse_pair_device(&offer).unwrap();
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
    let scan = tokio::spawn(async move { sim2.scan(NUMBER, &qr, Some("Alice"), None).await });
    let (paired, reply) = handle_pair_success(&next(&mut s).await, &identity, &adv).unwrap();
    s.sender.send(&reply).await.unwrap();
    scan.await.unwrap().unwrap();
    assert_eq!(next(&mut s).await.get_str("code").as_deref(), Some("515"));
    let login = login_payload(&profile, &paired.jid, None).unwrap();
    let (s, _) = connect(&cfg, noise, &login.encode_to_vec()).await.unwrap();
    let store = Arc::new(MemoryStore::new(LocalIdentity {
        key_pair: identity.clone(),
        registration_id: 1234,
    }));
    store.put_signed_pre_key(&signed);
    let keys = store.create_pre_keys(5).await.unwrap();
    let mut raw = Raw {
        s,
        cipher: SessionCipher::new(store, IdentityTrust::AcceptChanges),
        seen: Vec::new(),
        ids: 0,
    };
    assert_eq!(raw.next().await.tag, "success");
    let active = raw.iq("passive", vec![Node::new("active")]).await;
    assert_eq!(active.get_str("type").as_deref(), Some("result"));
    raw.until(|n| n.tag == "ib" && n.child("offline").is_some())
        .await;
    let upload = wa_gateway::client::prekeys::upload_node(1234, &identity.public, &keys, &signed)
        .attr("id", "up");
    raw.s.sender.send(&upload).await.unwrap();
    raw.until(|n| n.get_str("id").as_deref() == Some("up"))
        .await;
    raw
}

fn fetch(name: &str, version: Option<u64>) -> Node {
    let mut n = Node::new("collection").attr("name", name.to_owned());
    match version {
        Some(v) => {
            n = n
                .attr("version", v.to_string())
                .attr("return_snapshot", "false")
        }
        None => n = n.attr("return_snapshot", "true"),
    }
    n
}

fn sync(collections: Vec<Node>) -> Vec<Node> {
    vec![Node::new("sync").children(collections)]
}

fn keys_of(share: &wa::ProtocolMessage) -> (Vec<u8>, MutationKeys) {
    let k = &share.app_state_sync_key_share.as_ref().unwrap().keys[0];
    (
        k.key_id.as_ref().unwrap().key_id.clone().unwrap(),
        MutationKeys::expand(k.key_data.as_ref().unwrap().key_data.as_deref().unwrap()),
    )
}

fn is_share(pm: &wa::ProtocolMessage) -> bool {
    pm.r#type == Some(wa::protocol_message::Type::AppStateSyncKeyShare as i32)
}

/// Downloads a `<snapshot>` from the simulator's CDN and decrypts it as a client does.
fn snapshot(sim: &Simulator, c: &Node) -> wa::SyncdSnapshot {
    let r = wa::ExternalBlobReference::decode(
        &c.child("snapshot").unwrap().content_bytes().unwrap()[..],
    )
    .unwrap();
    let body = sim.media_bytes(r.direct_path.as_deref().unwrap()).unwrap();
    let key: [u8; 32] = r.media_key.as_deref().unwrap().try_into().unwrap();
    let keys = wa_gateway::media::expand(&key, wa_gateway::media::MediaType::AppState);
    let plain = wa_gateway::media::cipher::decrypt(
        &keys,
        &body,
        wa_gateway::media::cipher::Expect {
            file_sha256: r.file_sha256.as_deref().unwrap().try_into().unwrap(),
            file_enc_sha256: r.file_enc_sha256.as_deref().map(|h| h.try_into().unwrap()),
            max_plain: 1 << 20,
        },
    )
    .unwrap();
    wa::SyncdSnapshot::decode(&plain[..]).unwrap()
}

#[tokio::test]
async fn linking_shares_the_key_and_the_seeded_collections_decode() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut a = link(&sim).await;
        let share = a.read_phone(is_share).await;
        let (key_id, keys) = keys_of(&share);
        let held = sim.app_state_keys(NUMBER);
        assert_eq!(held.len(), 1);
        assert_eq!(key_id, held[0].0, "the key the phone holds");
        let lookup = |id: &[u8]| (id == key_id.as_slice()).then(|| keys.clone());
        // All five in one iq (Baileys batches them); whatsmeow omits the version.
        let names = sim.app_state_collections();
        let ans = a
            .iq(
                "w:sync:app:state",
                sync(names.iter().map(|n| fetch(n, None)).collect()),
            )
            .await;
        let cols = ans.child("sync").unwrap().child_nodes().to_vec();
        assert_eq!(cols.len(), 5, "{ans}");
        let mut seen = Vec::new();
        for c in &cols {
            let name = c.get_str("name").unwrap().into_owned();
            if c.child("snapshot").is_none() {
                assert_eq!(c.get_str("version").as_deref(), Some("0"), "{c}");
                continue;
            }
            let coll = Collection::from_name(&name).unwrap();
            let applied = decode_snapshot(coll, &snapshot(&sim, c), &lookup).unwrap();
            assert_eq!(applied.version, 1);
            seen.extend(applied.mutations.into_iter().map(|m| (m.index, m.data)));
        }
        let value = |index: &[&str]| {
            seen.iter()
                .find(|(i, _)| i.iter().map(String::as_str).eq(index.iter().copied()))
                .and_then(|(_, d)| d.value.clone())
                .unwrap_or_else(|| {
                    panic!(
                        "no {index:?} in {:?}",
                        seen.iter().map(|s| &s.0).collect::<Vec<_>>()
                    )
                })
        };
        assert_eq!(
            value(&["setting_pushName"])
                .push_name_setting
                .unwrap()
                .name
                .as_deref(),
            Some("Alice")
        );
        let salt = value(&["nct_salt_sync"])
            .nct_salt_sync_action
            .unwrap()
            .salt
            .unwrap();
        assert_eq!(
            Some(salt),
            sim.nct_salt(NUMBER),
            "the salt the sim checks cstokens with"
        );
        let bob = value(&["contact", "19995550101@s.whatsapp.net"])
            .contact_action
            .unwrap();
        let bob_lid = sim.lid_of("19995550101").unwrap();
        assert_eq!(bob.lid_jid, Some(format!("{bob_lid}@lid")));
        assert!(bob.full_name.is_some());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_upload_is_announced_to_the_other_device_and_a_stale_one_gets_409() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut a = link(&sim).await;
        let (key_id, keys) = keys_of(&a.read_phone(is_share).await);
        let mut b = link(&sim).await;
        b.read_phone(is_share).await;
        // A archives a chat at version 0 of regular_low (empty): accepted as version 1.
        let chat = Jid::new("15550009999", Server::User);
        let (c, muts) = encode::archive(&chat, true, wa::SyncActionMessageRange::default());
        let state = CollectionState::default();
        let (patch, _) = encode_patch(
            c,
            &state,
            &key_id,
            &keys,
            &muts,
            1_700_000_000_000,
            &mut rand::random,
        );
        let up = |v: u64, p: &wa::SyncdPatch| {
            sync(vec![
                fetch("regular_low", Some(v))
                    .children(vec![Node::new("patch").bytes(p.encode_to_vec())]),
            ])
        };
        let ans = a.iq("w:sync:app:state", up(0, &patch)).await;
        let col = ans.child("sync").unwrap().child_nodes()[0].clone();
        assert_eq!(
            (col.get_str("type"), col.get_str("version").as_deref()),
            (None, Some("1")),
            "{ans}"
        );
        // B is told; A, the sender, is not.
        let note = b.until(|n| n.tag == "notification").await;
        assert_eq!(note.get_str("type").as_deref(), Some("server_sync"));
        let announced = note.child("collection").unwrap();
        assert_eq!(announced.get_str("name").as_deref(), Some("regular_low"));
        assert_eq!(announced.get_str("version").as_deref(), Some("1"));
        // The phone read it.
        let view = sim.app_state(NUMBER, "regular_low").unwrap();
        assert!(
            view.records
                .iter()
                .any(|r| r.index == ["archive", "15550009999@s.whatsapp.net"]
                    && r.value == serde_json::json!({ "archived": true }))
        );
        // B, still at 0, uploads a mute of its own to regular_low... stale: 409 with patch 1.
        let (_, muts) = encode::pin(&chat, true);
        let (stale, _) = encode_patch(
            c,
            &state,
            &key_id,
            &keys,
            &muts,
            1_700_000_000_001,
            &mut rand::random,
        );
        let ans = b.iq("w:sync:app:state", up(0, &stale)).await;
        let col = ans.child("sync").unwrap().child_nodes()[0].clone();
        assert_eq!(col.get_str("type").as_deref(), Some("error"), "{ans}");
        assert_eq!(
            col.child("error").unwrap().get_str("code").as_deref(),
            Some("409")
        );
        let missing: Vec<u64> = col
            .child("patches")
            .unwrap()
            .child_nodes()
            .iter()
            .map(|p| {
                wa::SyncdPatch::decode(&p.content_bytes().unwrap()[..])
                    .unwrap()
                    .version
                    .unwrap()
                    .version
                    .unwrap()
            })
            .collect();
        assert_eq!(missing, [1]);
        // The phone mutes a chat: both devices are told.
        let (name, version) = sim
            .app_state_action(
                NUMBER,
                &PhoneAction::Mute {
                    chat: chat.clone(),
                    until_ms: Some(-1),
                },
            )
            .unwrap();
        assert_eq!((name, version), ("regular_high", 2));
        for d in [&mut a, &mut b] {
            let note = d
                .until(|n| {
                    n.tag == "notification"
                        && n.child("collection")
                            .and_then(|c| c.get_str("name"))
                            .as_deref()
                            == Some("regular_high")
                })
                .await;
            assert_eq!(
                note.child("collection")
                    .unwrap()
                    .get_str("version")
                    .as_deref(),
                Some("2")
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_phone_answers_key_requests_and_fatal_recovery_requests() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut a = link(&sim).await;
        let (key_id, keys) = keys_of(&a.read_phone(is_share).await);
        // A key request for the phone's key and an unknown one: the known one comes back.
        a.send_phone(wa::ProtocolMessage {
            r#type: Some(wa::protocol_message::Type::AppStateSyncKeyRequest as i32),
            app_state_sync_key_request: Some(wa::AppStateSyncKeyRequest {
                key_ids: vec![
                    wa::AppStateSyncKeyId {
                        key_id: Some(vec![9, 9, 9]),
                    },
                    wa::AppStateSyncKeyId {
                        key_id: Some(key_id.clone()),
                    },
                ],
            }),
            ..Default::default()
        })
        .await;
        let again = a.read_phone(is_share).await;
        let shared = &again.app_state_sync_key_share.as_ref().unwrap().keys;
        assert_eq!(shared.len(), 1);
        assert_eq!(keys_of(&again).0, key_id);
        // The phone changes regular_high, then A asks for a recovery copy of it: first in an
        // ordinary message to itself (not a peer message: the phone does not answer it, as
        // WhatsApp answers only `category="peer"`), then as a peer message.
        sim.app_state_action(NUMBER, &PhoneAction::NctSalt(Some(vec![7; 16])))
            .unwrap();
        let recovery = |name: &str| wa::ProtocolMessage {
            r#type: Some(wa::protocol_message::Type::PeerDataOperationRequestMessage as i32),
            peer_data_operation_request_message: Some(wa::PeerDataOperationRequestMessage {
                peer_data_operation_request_type: Some(
                    wa::PeerDataOperationRequestType::CompanionSyncdSnapshotFatalRecovery as i32,
                ),
                syncd_collection_fatal_recovery_request: Some(
                    wa::peer_data_operation_request_message::SyncDCollectionFatalRecoveryRequest {
                        collection_name: Some(name.into()),
                        timestamp: Some(1_700_000_000),
                    },
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        a.send_phone_as(recovery("regular_low"), false).await;
        a.send_phone(recovery("regular_high")).await;
        let resp = a
            .read_phone(|pm| {
                pm.r#type
                    == Some(
                        wa::protocol_message::Type::PeerDataOperationRequestResponseMessage as i32,
                    )
            })
            .await;
        let result = &resp
            .peer_data_operation_request_response_message
            .unwrap()
            .peer_data_operation_result[0];
        let r = result
            .syncd_snapshot_fatal_recovery_response
            .clone()
            .unwrap();
        assert_eq!(r.is_compressed, Some(true));
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&r.collection_snapshot.unwrap()[..])
            .read_to_end(&mut plain)
            .unwrap();
        let rec = wa::SyncdSnapshotRecovery::decode(&plain[..]).unwrap();
        // The first answer is the peer request's: the ordinary message got none.
        assert_eq!(rec.collection_name.as_deref(), Some("regular_high"));
        let lookup = |id: &[u8]| (id == key_id.as_slice()).then(|| keys.clone());
        let applied = decode_recovery(Collection::RegularHigh, &rec, &lookup).unwrap();
        assert_eq!(applied.version, 2);
        let salt = applied.mutations.iter().find_map(|m| {
            m.data
                .value
                .as_ref()?
                .nct_salt_sync_action
                .as_ref()?
                .salt
                .clone()
        });
        assert_eq!(salt, Some(vec![7; 16]));
        assert_eq!(sim.nct_salt(NUMBER), Some(vec![7; 16]));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_control_api_changes_reads_and_damages_a_collection() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let control = crate::messaging::control_api(&sim).await;
        let http = reqwest::Client::new();
        let post = async |path: &str, body: serde_json::Value| {
            let r = http.post(format!("{control}{path}")).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        };
        let base = format!("/phones/{NUMBER}/appstate");
        for (body, collection, version) in [
            (serde_json::json!({ "action": "archive", "chat": "15550000042" }), "regular_low", 1),
            (serde_json::json!({ "action": "mute", "chat": "15550000042", "until": 1_900_000_000_000i64 }), "regular_high", 2),
            (serde_json::json!({ "action": "contact", "jid": "15550000042", "fullName": "Zed Zero" }), "critical_unblock_low", 2),
            (serde_json::json!({ "action": "remove_nct_salt" }), "regular_high", 3),
        ] {
            let (status, v) = post(&base, body).await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(v, serde_json::json!({ "collection": collection, "version": version }));
        }
        assert_eq!(sim.nct_salt(NUMBER), None, "removed");
        let get = |c: &str| {
            let (http, url) = (http.clone(), format!("{control}{base}/{c}"));
            async move {
                let r = http.get(url).send().await.unwrap();
                (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
            }
        };
        let (status, low) = get("regular_low").await;
        assert_eq!(status, 200);
        assert_eq!(low["version"], 1);
        let records = low["records"].as_array().unwrap();
        let archived = records
            .iter()
            .find(|r| r["index"] == serde_json::json!(["archive", "15550000042@s.whatsapp.net"]))
            .unwrap();
        assert_eq!(archived["value"], serde_json::json!({ "archived": true }));
        assert_eq!(archived["version"], 3);
        let (_, contacts) = get("critical_unblock_low").await;
        let zed = contacts["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["index"][1] == "15550000042@s.whatsapp.net")
            .unwrap();
        let lid = sim.lid_of("15550000042").unwrap();
        assert_eq!(zed["value"]["contact"]["lid"], format!("{lid}@lid"));
        assert_eq!(zed["value"]["contact"]["fullName"], "Zed Zero");
        // Damage, and refusals that name what is wrong.
        let (status, _) = post(&format!("{base}/regular_low/faults"), serde_json::json!({ "fault": "corrupt_patch" })).await;
        assert_eq!(status, 200);
        let (status, _) = post(&format!("{base}/regular/faults"), serde_json::json!({ "fault": "drop_patch" })).await;
        assert_eq!(status, 404, "nothing stored in regular");
        for (path, body) in [
            (base.clone(), serde_json::json!({ "action": "archive" })),
            (base.clone(), serde_json::json!({ "action": "explode", "chat": "1" })),
            (base.clone(), serde_json::json!({ "action": "set_nct_salt", "salt": "zz" })),
            (format!("{base}/regular_low/faults"), serde_json::json!({ "fault": "melt" })),
        ] {
            let (status, v) = post(&path, body).await;
            assert_eq!(status, 400, "{v}");
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
        let (status, _) = get("regular_mid").await;
        assert_eq!(status, 404);
    })
    .await
    .unwrap();
}

/// The server's ack of message `id`.
async fn ack_of(a: &mut Raw, id: &str) -> Node {
    a.until(|n| n.tag == "ack" && n.get_str("id").as_deref() == Some(id))
        .await
}

#[tokio::test]
async fn a_peer_message_to_another_user_is_refused_not_relayed() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let other = "15550007002";
        sim.set_devices(other, 1).unwrap();
        let mut a = link(&sim).await;
        // The phone's key share arrives first (our own phone's peer message).
        a.read_phone(is_share).await;
        let enc = || {
            Node::new("enc")
                .attr("v", "2")
                .attr("type", "msg")
                .bytes(vec![1, 2, 3])
        };
        let peer = |id: &str, to: Jid| {
            Node::new("message")
                .attr("id", id.to_owned())
                .attr("to", to)
                .attr("type", "text")
                .attr("category", "peer")
        };
        // Addressed to another user: refused with an error ack, and never relayed.
        a.s.sender
            .send(&peer("3EB0PEERX1", Jid::new(other, Server::User)).children(vec![enc()]))
            .await
            .unwrap();
        let ack = ack_of(&mut a, "3EB0PEERX1").await;
        assert_eq!(ack.get_str("error").as_deref(), Some("400"), "{ack}");
        // Addressed to us but fanned out to another user's device: refused too.
        let fanned = peer("3EB0PEERX2", Jid::new(NUMBER, Server::User)).children(vec![
            Node::new("participants").children(vec![
                Node::new("to")
                    .attr("jid", Jid::with_device(other, 0, Server::User))
                    .children(vec![enc()]),
            ]),
        ]);
        a.s.sender.send(&fanned).await.unwrap();
        let ack = ack_of(&mut a, "3EB0PEERX2").await;
        assert_eq!(ack.get_str("error").as_deref(), Some("400"), "{ack}");
        // A peer message to our own phone is still accepted (the next one the device sends:
        // its ack comes after the refusals', so nothing of theirs is pending).
        a.send_phone(wa::ProtocolMessage {
            r#type: Some(wa::protocol_message::Type::AppStateSyncKeyRequest as i32),
            app_state_sync_key_request: Some(wa::AppStateSyncKeyRequest { key_ids: vec![] }),
            ..Default::default()
        })
        .await;
        let id = format!("3EB0PEER{}", a.ids);
        let ack = ack_of(&mut a, &id).await;
        assert_eq!(ack.get_str("error"), None, "{ack}");
        // The log keeps both as refused.
        let wires: Vec<_> = sim
            .message_log()
            .into_iter()
            .filter(|m| m.id.starts_with("3EB0PEERX"))
            .collect();
        assert_eq!(wires.len(), 2, "both logged as sent");
        assert!(wires.iter().all(|m| m.error == Some(400)), "{wires:?}");
    })
    .await
    .unwrap();
}
