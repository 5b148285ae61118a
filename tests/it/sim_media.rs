//! Simulated phones and media (CLIENT-FEATURES §2) against our client over loopback: every
//! kind both ways (the phone checks what it gets; our client downloads what the phone sent,
//! byte for byte), a corrupt file seen as such, a group image, the control API's media sends,
//! and the media retry answered by the account's phone.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wa_gateway::binary::Jid;
use wa_gateway::client::content::{Classified, Kind, classify};
use wa_gateway::client::media::{MediaFailure, MediaMeta, media_message, media_type_of};
use wa_gateway::client::media_ref::MediaRef;
use wa_gateway::client::messages::Outgoing;
use wa_gateway::client::messenger::RetryTarget;
use wa_gateway::client::{Client, StoredMessage};
use wa_gateway::sim::inbox::Received;
use wa_gateway::sim::server::Fault;
use wa_gateway::sim::{CdnFault, MediaData, MediaKind, MediaSend, Simulator};
use wa_gateway::stanza::group::AddressingMode;
use wa_gateway::util::hex;

use crate::media_client::{Bytes, Collect};
use crate::messaging::{Account, account, control_api, eventually, link, stored, user};

const LIMIT: Duration = Duration::from_secs(120);

/// Each kind as our client names it, as the phone sends it, and the `<enc mediatype>`.
const KINDS: [(Kind, MediaKind, &str); 7] = [
    (Kind::Image, MediaKind::Image, "image"),
    (Kind::Video, MediaKind::Video, "video"),
    (Kind::Ptv, MediaKind::Ptv, "ptv"),
    (Kind::Audio, MediaKind::Audio, "audio"),
    (Kind::Ptt, MediaKind::Ptt, "ptt"),
    (Kind::Document, MediaKind::Document, "document"),
    (Kind::Sticker, MediaKind::Sticker, "sticker"),
];

fn file(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8 ^ salt).collect()
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(&Sha256::digest(b))
}

async fn start() -> Simulator {
    Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// What user `number`'s app shows for message `id`, once its file was checked.
async fn phone_media(sim: &Simulator, number: &str, id: &str) -> Received {
    eventually("the phone to check the file", async || {
        sim.phone_messages(number)
            .into_iter()
            .find(|r| r.id == id && r.media.is_some())
    })
    .await
}

/// Our client's row of message `id` in `chat`, once stored.
async fn row(acct: &Account, chat: &Jid, id: &str) -> StoredMessage {
    eventually("the row", async || {
        stored(&acct.creds, chat)
            .await
            .into_iter()
            .find(|m| m.id == id)
    })
    .await
}

/// The file reference of a stored row (the store keeps it beside the row; its plaintext
/// carries it too).
fn media_of(m: &StoredMessage) -> MediaRef {
    match classify(&m.raw).unwrap() {
        Classified::Stored(c) => *c.media.expect("a media reference"),
        Classified::Protocol => panic!("{} is no content", m.id),
    }
}

async fn download(client: &Client, r: &MediaRef) -> Result<Vec<u8>, MediaFailure> {
    let mut got = Collect::default();
    client.download_media(r, 1 << 24, &mut got).await?;
    Ok(got.0)
}

/// Our client uploads `data` as `kind` and sends it to `to`: the message id.
async fn client_sends(
    client: &Client,
    to: &Jid,
    kind: Kind,
    data: &[u8],
    caption: Option<&str>,
) -> String {
    let up = client
        .upload_media(media_type_of(kind).unwrap(), &Bytes(data.to_vec()))
        .await
        .unwrap();
    let meta = MediaMeta {
        kind: Some(kind),
        mimetype: "application/octet-stream".into(),
        file_name: (kind == Kind::Document).then(|| "notes.bin".into()),
        caption: caption.map(str::to_owned),
        ..Default::default()
    };
    let m = media_message(&meta, &up).unwrap();
    client
        .send_message(to, Outgoing::message(m).unwrap(), None)
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn every_kind_our_client_sends_reaches_a_phone_verified_as_a_media_stanza() {
    tokio::time::timeout(LIMIT, async {
        let sim = start().await;
        let acct = account().await;
        let (me, bob) = ("15550201000", "15550202000");
        let (client, _events, _) = link(&sim, &acct, me).await;
        sim.set_devices(bob, 2).unwrap();
        let sends = KINDS.iter().map(|(k, _, t)| (*k, None, *t)).chain([(
            Kind::Document,
            Some("read this"),
            "document",
        )]);
        for (i, (kind, caption, mediatype)) in sends.enumerate() {
            let data = file(70_000 + i * 17, i as u8);
            let id = client_sends(&client, &user(bob), kind, &data, caption).await;
            let got = phone_media(&sim, bob, &id).await;
            let media = got.media.unwrap();
            assert!(media.verified, "{kind:?}: {:?}", media.error);
            assert_eq!(media.sha256.as_deref(), Some(sha_hex(&data).as_str()));
            assert_eq!(media.size, Some(data.len() as u64));
            assert_eq!(media.stanza_type.as_deref(), Some("media"));
            assert_eq!(media.mediatype.as_deref(), Some(mediatype), "{kind:?}");
            assert_eq!(media.caption.as_deref(), caption);
            if kind == Kind::Document {
                assert_eq!(media.file_name.as_deref(), Some("notes.bin"));
            }
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn every_kind_a_phone_sends_reaches_our_client_and_downloads_byte_for_byte() {
    tokio::time::timeout(LIMIT, async {
        let sim = start().await;
        let acct = account().await;
        let (me, bob) = ("15550211000", "15550212000");
        let (client, _events, _) = link(&sim, &acct, me).await;
        for (i, (kind, phone_kind, _)) in KINDS.iter().enumerate() {
            let data = file(50_000 + i * 33, 0x40 | i as u8);
            let mut send = MediaSend::new(*phone_kind, MediaData::Bytes(data.clone()));
            send.caption = Some(format!("caption {i}"));
            send.file_name = Some("f.pdf".into());
            let (id, info) = sim.phone_send_media(bob, me, send).await.unwrap();
            assert_eq!(info.sha256, sha_hex(&data));
            assert_eq!(info.size, data.len() as u64);
            let m = row(&acct, &user(bob), &id).await;
            assert_eq!(m.kind, *kind);
            let r = media_of(&m);
            assert_eq!(r.file_length, Some(data.len() as u64));
            assert_eq!(download(&client, &r).await.unwrap(), data, "{kind:?}");
        }
        // The file the phone sent is one the recipient's phone checked too.
        let mut doc = MediaSend::new(MediaKind::Document, MediaData::Bytes(file(999, 1)));
        doc.caption = Some("captioned".into());
        let (id, _) = sim.phone_send_media(bob, "15550213000", doc).await.unwrap();
        let seen = phone_media(&sim, "15550213000", &id).await.media.unwrap();
        assert!(seen.verified && seen.kind == "document");
        assert_eq!(seen.caption.as_deref(), Some("captioned"));
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn an_expired_file_comes_back_through_the_phones_media_retry_unless_it_is_gone() {
    tokio::time::timeout(LIMIT, async {
        let sim = start().await;
        let acct = account().await;
        let (me, bob) = ("15550221000", "15550222000");
        let (client, _events, _) = link(&sim, &acct, me).await;
        let data = file(300_001, 9);
        let mut send = MediaSend::new(MediaKind::Document, MediaData::Bytes(data.clone()));
        send.file_name = Some("report.pdf".into());
        let (id, info) = sim.phone_send_media(bob, me, send).await.unwrap();
        let m = row(&acct, &user(bob), &id).await;
        let r = media_of(&m);
        assert_eq!(
            sim.cdn_fault(&CdnFault::Expire(info.direct_path.clone())),
            1
        );
        assert!(matches!(
            download(&client, &r).await,
            Err(MediaFailure::Gone)
        ));
        let target = RetryTarget {
            id: id.clone(),
            chat: m.chat.clone(),
            from_me: false,
            participant: None,
        };
        // Our phone (it received the file too) uploads it again under a new path. Two fetches
        // of the file asking at once both get an answer (neither drops the other's wait).
        let (a, b) = tokio::join!(
            client.retry_media(target.clone(), &r),
            client.retry_media(target.clone(), &r)
        );
        let (path, other) = (a.unwrap(), b.unwrap());
        assert_ne!(path, info.direct_path);
        assert_ne!(other, info.direct_path);
        let mut again = r.clone();
        again.direct_path = Some(path);
        again.url = None;
        assert_eq!(download(&client, &again).await.unwrap(), data);

        // What we sent ourselves: our phone has it as from_me.
        let mine = file(4_000, 3);
        let sent = client_sends(&client, &user(bob), Kind::Image, &mine, None).await;
        let ours = row(&acct, &user(bob), &sent).await;
        let ours_ref = media_of(&ours);
        phone_media(&sim, me, &sent).await;
        sim.cdn_fault(&CdnFault::Expire(ours_ref.direct_path.clone().unwrap()));
        let own = RetryTarget {
            id: sent.clone(),
            chat: ours.chat.clone(),
            from_me: true,
            participant: None,
        };
        let path = client.retry_media(own, &ours_ref).await.unwrap();
        let mut again = ours_ref.clone();
        again.direct_path = Some(path);
        assert_eq!(download(&client, &again).await.unwrap(), mine);

        // A message the phone never had: error code 2.
        let unknown = RetryTarget {
            id: "3EB0000000000000000000".into(),
            ..target.clone()
        };
        assert!(matches!(
            client.retry_media(unknown, &r).await,
            Err(MediaFailure::RetryRefused(_))
        ));
        // The phone deleted its media: NOT_FOUND.
        assert_eq!(sim.fault(me, Fault::MediaDeleted(true)).await, 1);
        assert!(matches!(
            client.retry_media(target, &r).await,
            Err(MediaFailure::RetryRefused("not on the phone"))
        ));
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_corrupt_file_our_client_sent_shows_unverified_on_the_phone() {
    tokio::time::timeout(LIMIT, async {
        let sim = start().await;
        let acct = account().await;
        let (me, bob) = ("15550231000", "15550232000");
        let (client, _events, _) = link(&sim, &acct, me).await;
        sim.set_devices(bob, 2).unwrap();
        let data = file(10_000, 5);
        let up = client
            .upload_media(wa_gateway::media::MediaType::Image, &Bytes(data.clone()))
            .await
            .unwrap();
        assert_eq!(sim.cdn_fault(&CdnFault::Corrupt(up.direct_path.clone())), 1);
        let meta = MediaMeta {
            kind: Some(Kind::Image),
            mimetype: "image/jpeg".into(),
            ..Default::default()
        };
        let m = media_message(&meta, &up).unwrap();
        let id = client
            .send_message(&user(bob), Outgoing::message(m).unwrap(), None)
            .await
            .unwrap()
            .id;
        let media = phone_media(&sim, bob, &id).await.media.unwrap();
        assert!(!media.verified);
        assert_eq!(media.sha256, None);
        let error = media.error.unwrap();
        assert!(error.starts_with("fileEncSha256"), "{error}");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_phones_image_to_a_group_reaches_our_client_with_its_file() {
    tokio::time::timeout(LIMIT, async {
        let sim = start().await;
        let acct = account().await;
        let (me, bob) = ("15550241000", "15550242000");
        let (client, _events, _) = link(&sim, &acct, me).await;
        let group = sim
            .create_group("Pics", bob, &[me.into()], AddressingMode::Pn)
            .unwrap();
        let data = file(20_000, 7);
        let mut send = MediaSend::new(MediaKind::Image, MediaData::Bytes(data.clone()));
        send.caption = Some("look".into());
        let (id, _) = sim
            .phone_send_media(bob, &group.to_string(), send)
            .await
            .unwrap();
        let m = row(&acct, &group, &id).await;
        assert_eq!((m.kind, m.text.as_deref()), (Kind::Image, Some("look")));
        assert_eq!(download(&client, &media_of(&m)).await.unwrap(), data);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn the_control_api_sends_media_as_base64_or_generated_and_lists_what_phones_checked() {
    tokio::time::timeout(LIMIT, async {
        let sim = start().await;
        let control = control_api(&sim).await;
        let http = reqwest::Client::new();
        let (bob, carol) = ("15550252000", "15550253000");
        let send = async |body: Value| {
            let r = http
                .post(format!("{control}/phones/{bob}/send"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        };
        let shown = async |id: &str| {
            eventually("carol's phone to check it", async || {
                let all: Value = http
                    .get(format!("{control}/phones/{carol}/messages"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                all.as_array()?
                    .iter()
                    .find(|m| m["id"] == id && m["media"].is_object())
                    .map(|m| m["media"].clone())
            })
            .await
        };
        use base64::Engine as _;
        let data = file(3_000, 2);
        let (status, answer) = send(json!({"to": carol, "media": {
            "kind": "image",
            "base64": base64::engine::general_purpose::STANDARD.encode(&data),
            "mimetype": "image/png",
            "caption": "over http",
        }}))
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["sha256"], sha_hex(&data));
        let media = shown(answer["id"].as_str().unwrap()).await;
        assert_eq!(media["verified"], true);
        assert_eq!(media["sha256"], sha_hex(&data));
        assert_eq!(media["mimetype"], "image/png");
        assert_eq!(media["stanzaType"], "media");

        let generate = json!({"to": carol, "media": {
            "kind": "document",
            "generate": {"bytes": 1_000_000, "seed": 42},
            "fileName": "big.bin",
        }});
        let (status, first) = send(generate.clone()).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["size"], 1_000_000);
        let media = shown(first["id"].as_str().unwrap()).await;
        assert_eq!((media["verified"].clone(), media["sha256"].clone()), (json!(true), first["sha256"].clone()));
        assert_eq!(media["fileName"], "big.bin");
        // The same seed makes the same file.
        let (_, second) = send(generate).await;
        assert_eq!(second["sha256"], first["sha256"]);

        for bad in [
            json!({"to": carol, "media": {"kind": "image"}}),
            json!({"to": carol, "media": {"kind": "image", "base64": "AA==", "generate": {"bytes": 1}}}),
            json!({"to": carol, "media": {"kind": "hologram", "base64": "AA=="}}),
            json!({"to": carol, "text": "hi", "media": {"kind": "image", "base64": "AA=="}}),
            json!({"to": carol, "media": {"kind": "document", "generate": {"bytes": 0}}}),
        ] {
            let (status, answer) = send(bad.clone()).await;
            assert_eq!(status, 400, "{bad} → {answer}");
        }
    })
    .await
    .expect("in time");
}
