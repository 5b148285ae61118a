//! Every kind of message a user sends is kept, listed and announced (issue 21), tried as a new
//! user would: link over REST, have a simulated user send kinds through the simulator's control
//! API, then read `GET …/messages`, the SQL view and the webhook events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use prost::Message as _;
use serde_json::{Value, json};
use wa_gateway::api::Role;
use wa_gateway::binary::Jid;
use wa_gateway::client::Event;
use wa_gateway::client::content::Kind;
use wa_gateway::proto::wa;
use wa_gateway::service::{Pacing, ServiceOptions, WebhookSettings};
use wa_gateway::sim::Simulator;
use wa_gateway::sim::compose::{Compose, Edit, Reaction, Revoke};
use wa_gateway::stanza::group::AddressingMode;
use wa_gateway::store::Store;

use super::messaging::{account, control_api, eventually, link as link_client, next_event};
use super::rest::{Server, call, link, token};

const LIMIT: Duration = Duration::from_secs(120);

/// A webhook receiver that keeps every body it gets (signatures are checked in webhooks.rs).
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                g.lock()
                    .unwrap()
                    .push(serde_json::from_slice::<Value>(&body).unwrap());
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn service_options() -> ServiceOptions {
    ServiceOptions {
        pacing: Pacing {
            per_minute: 6000,
            burst: 50,
            chat_gap: Duration::ZERO,
            ..Pacing::default()
        },
        webhooks: WebhookSettings {
            // The receiver is on loopback (refused by default).
            allow_private: true,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(400),
            ..Default::default()
        },
        unpaced: vec!["sub1".into()],
        ..Default::default()
    }
}

/// `POST /phones/{from}/send` on the control API; the message id.
async fn phone_send(http: &reqwest::Client, control: &str, from: &str, body: Value) -> String {
    let r = http
        .post(format!("{control}/phones/{from}/send"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{body} → {status} {v}");
    v["id"].as_str().unwrap().to_owned()
}

/// The history, keyed by WhatsApp id.
async fn history(http: &reqwest::Client, base: &str, admin: &str) -> HashMap<String, Value> {
    let (code, v) = call(
        http,
        reqwest::Method::GET,
        &format!("{base}/messages?limit=100"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let id = m["messageId"].as_str().unwrap().rsplit('_').next().unwrap();
            (id.to_owned(), m.clone())
        })
        .collect()
}

fn events_about(got: &Mutex<Vec<Value>>, event: &str, id: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|e| {
            e["event"] == json!(event)
                && e["data"]["messageId"]
                    .as_str()
                    .is_some_and(|m| m.ends_with(&format!("_{id}")))
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_kind_a_user_sends_is_kept_listed_and_announced_with_its_type() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let control = control_api(&sim).await;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start_opts(&sim, &db, service_options()).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, bob) = ("15553000001", "15553000002");
        let (hook, got) = receiver().await;
        let (code, v) = call(
            &http,
            reqwest::Method::PUT,
            &format!("{base}/webhook"),
            Some(&admin),
            Some(json!({ "url": hook, "secret": "kinds-secret-0123456789" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        link(&sim, &http, &admin, &base, me).await;
        let r = http
            .post(format!("{control}/phones/{bob}/devices"))
            .json(&json!({ "count": 1 }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());

        // Our text first, so bob can react to it.
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "Our offer" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let ours = v["data"]["messageId"]
            .as_str()
            .unwrap()
            .rsplit('_')
            .next()
            .unwrap()
            .to_owned();

        let send = |body: Value| phone_send(&http, &control, bob, body);
        let location = send(json!({ "to": me, "location": {
            "latitude": 52.516275, "longitude": 13.377704,
            "name": "Brandenburger Tor", "address": "Pariser Platz" } }))
        .await;
        let contact = send(json!({ "to": me, "contact": {
            "name": "Alice Example", "number": "15557654321" } }))
        .await;
        let sticker = send(json!({ "to": me, "sticker": true })).await;
        let ephemeral =
            send(json!({ "to": me, "text": "gone tomorrow", "ephemeral": 86400 })).await;
        let view_once = send(json!({ "to": me, "location": {
            "latitude": 1.5, "longitude": 2.5 }, "viewOnce": true }))
        .await;
        let poll = send(json!({ "to": me, "poll": {
            "name": "Lunch?", "options": ["Pizza", "Sushi"], "selectable": 1 } }))
        .await;
        let reply = send(json!({ "to": me, "text": "about that",
            "reply": { "id": ours, "participant": format!("{me}@s.whatsapp.net") } }))
        .await;
        // A field no build knows yet (999) beside a context info.
        let mut unknown = wa::Message {
            message_context_info: Some(wa::MessageContextInfo::default()),
            ..Default::default()
        }
        .encode_to_vec();
        unknown.extend([0xba, 0x3e, 0x03, b'n', b'e', b'w']);
        let unknown_id = send(json!({ "to": me,
            "proto": base64::engine::general_purpose::STANDARD.encode(&unknown) }))
        .await;
        let typo = send(json!({ "to": me, "text": "teh price" })).await;
        let regret = send(json!({ "to": me, "text": "forget it" })).await;
        let reaction = send(json!({ "to": me, "reaction": { "id": ours, "emoji": "👍" } })).await;
        send(json!({ "to": me, "edit": { "id": typo, "text": "the price" } })).await;
        send(json!({ "to": me, "revoke": { "id": regret } })).await;

        let h = eventually("every kind in the history", async || {
            let h = history(&http, &base, &admin).await;
            let done = h.get(&regret).is_some_and(|m| m["revoked"] == json!(true))
                && h.get(&typo).is_some_and(|m| m["editedAt"].is_string())
                && h.get(&ours)
                    .is_some_and(|m| m["reactions"].as_array().is_some_and(|r| !r.is_empty()))
                && h.contains_key(&unknown_id);
            done.then_some(h)
        })
        .await;
        let kind = |id: &str| (h[id]["type"].clone(), h[id]["hasMedia"].clone());
        assert_eq!(kind(&location), (json!("location"), json!(false)));
        assert_eq!(h[&location]["content"]["latitude"], json!(52.516275));
        assert_eq!(h[&location]["content"]["name"], json!("Brandenburger Tor"));
        assert_eq!(kind(&contact), (json!("vcard"), json!(false)));
        assert_eq!(
            h[&contact]["content"]["displayName"],
            json!("Alice Example")
        );
        assert!(
            h[&contact]["message"]
                .as_str()
                .unwrap()
                .contains("waid=15557654321")
        );
        assert_eq!(kind(&sticker), (json!("sticker"), json!(true)));
        assert_eq!(h[&sticker]["content"]["mimetype"], json!("image/webp"));
        assert_eq!(kind(&ephemeral), (json!("chat"), json!(false)));
        assert_eq!(h[&ephemeral]["message"], json!("gone tomorrow"));
        assert_eq!(h[&ephemeral]["ephemeral"], json!(true));
        assert_eq!(h[&ephemeral]["content"]["expirationSeconds"], json!(86400));
        assert_eq!(kind(&view_once).0, json!("location"));
        assert_eq!(h[&view_once]["viewOnce"], json!(true));
        assert_eq!(kind(&poll).0, json!("poll_creation"));
        assert_eq!(h[&poll]["content"]["options"], json!(["Pizza", "Sushi"]));
        assert_eq!(h[&reply]["content"]["quoted"]["id"], json!(ours));
        assert_eq!(kind(&unknown_id).0, json!("unknown"));
        assert_eq!(h[&unknown_id]["content"]["fields"], json!([999]));
        // The reaction is its own row and on its target; the edit and revoke only on theirs.
        assert_eq!(kind(&reaction).0, json!("reaction"));
        assert_eq!(h[&reaction]["content"]["targetId"], json!(ours));
        let r = &h[&ours]["reactions"];
        assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
        assert_eq!(r[0]["emoji"], json!("👍"));
        assert_eq!(r[0]["from"], json!(format!("{bob}@c.us")));
        assert_eq!(h[&typo]["message"], json!("the price"));
        assert_eq!(h[&regret]["type"], json!("revoked"));
        assert_eq!(h[&regret]["message"], Value::Null);
        let listed_protocol = h
            .values()
            .filter(|m| m["type"] == json!("edit") || m["type"] == json!("revoke"))
            .count();
        assert_eq!(
            listed_protocol, 0,
            "edits and revokes show through their target"
        );

        // Each announced with its kind, once.
        let received = |id: &str| events_about(&got, "message.received", id);
        eventually("the webhook events", async || {
            let ok = !events_about(&got, "message.revoked", &regret).is_empty()
                && !events_about(&got, "message.edited", &typo).is_empty()
                && !events_about(&got, "message.reaction", &ours).is_empty()
                && !received(&unknown_id).is_empty();
            ok.then_some(())
        })
        .await;
        for (id, kind) in [
            (&location, "location"),
            (&contact, "vcard"),
            (&sticker, "sticker"),
            (&ephemeral, "chat"),
            (&poll, "poll_creation"),
            (&unknown_id, "unknown"),
        ] {
            let e = received(id);
            assert_eq!(e.len(), 1, "{kind}: {e:?}");
            assert_eq!(e[0]["data"]["type"], json!(kind));
            assert_eq!(e[0]["data"]["content"], h[id]["content"]);
        }
        assert!(
            received(&reaction).is_empty(),
            "a reaction is not a new message"
        );
        let e = &events_about(&got, "message.reaction", &ours)[0]["data"];
        assert_eq!(
            (e["emoji"].clone(), e["by"].clone()),
            (json!("👍"), json!(format!("{bob}@c.us")))
        );
        let e = &events_about(&got, "message.edited", &typo)[0]["data"];
        assert_eq!(e["message"]["message"], json!("the price"));
        let e = &events_about(&got, "message.revoked", &regret)[0]["data"];
        assert_eq!(e["message"]["type"], json!("revoked"));

        // The SQL view shows the same.
        let side = Store::open(&db).await.unwrap();
        let rows = sqlx::query(
            "SELECT messageId, type, hasMedia, content, ephemeral, viewOnce, revoked, \
             editedAt FROM whatsappmessages WHERE agentId = 'agent1'",
        )
        .fetch_all(side.pool())
        .await
        .unwrap();
        assert_eq!(rows.len(), h.len(), "the view lists what history lists");
        for r in &rows {
            use sqlx::Row;
            let id: String = r.get("messageId");
            let m = &h[&id];
            assert_eq!(json!(r.get::<String, _>("type")), m["type"], "{id}");
            assert_eq!(json!(r.get::<bool, _>("hasMedia")), m["hasMedia"], "{id}");
            assert_eq!(json!(r.get::<bool, _>("ephemeral")), m["ephemeral"], "{id}");
            assert_eq!(json!(r.get::<bool, _>("viewOnce")), m["viewOnce"], "{id}");
            assert_eq!(json!(r.get::<bool, _>("revoked")), m["revoked"], "{id}");
            assert_eq!(
                json!(r.get::<Option<String>, _>("editedAt")),
                m["editedAt"],
                "{id}"
            );
            let content: Value = serde_json::from_str(&r.get::<String, _>("content")).unwrap();
            assert_eq!(content, m["content"], "{id}");
        }
        side.close().await;
        server.stop().await;
    })
    .await
    .expect("in time");
}

/// `who` sends `c` to `group` through the simulator; the message id.
async fn group_send(sim: &Simulator, who: &str, group: &Jid, c: Compose) -> String {
    let chat = group.to_string();
    let m = c.build(&chat, 1_700_000_000_000).unwrap();
    sim.phone_send_message(who, &chat, &m.plain, m.admin)
        .await
        .unwrap()
}

fn text(t: &str) -> Compose {
    Compose {
        text: Some(t.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn in_groups_only_admins_delete_others_messages_and_only_authors_edit() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob, carol) = ("15553100001", "15553100002", "15553100003");
        let (client, mut events, _) = link_client(&sim, &a, me).await;
        sim.set_devices(bob, 1).unwrap();
        sim.set_devices(carol, 1).unwrap();
        // Bob creates it: he is its super admin, carol a member.
        let group = sim
            .create_group("Kinds", bob, &[me.into(), carol.into()], AddressingMode::Pn)
            .unwrap();
        next_event(&mut events, |e| matches!(e, Event::GroupUpdate(_))).await;
        let jid = |n: &str| format!("{n}@s.whatsapp.net");

        let c1 = group_send(&sim, carol, &group, text("carol one")).await;
        let b1 = group_send(&sim, bob, &group, text("bob one")).await;
        // The admin removes carol's message; carol's tries on bob's do nothing.
        let admin_revoke = Compose {
            revoke: Some(Revoke {
                id: c1.clone(),
                participant: Some(jid(carol)),
            }),
            ..Default::default()
        };
        group_send(&sim, bob, &group, admin_revoke).await;
        let member_revoke = Compose {
            revoke: Some(Revoke {
                id: b1.clone(),
                participant: Some(jid(bob)),
            }),
            ..Default::default()
        };
        group_send(&sim, carol, &group, member_revoke).await;
        let foreign_edit = Compose {
            edit: Some(Edit {
                id: b1.clone(),
                text: "carol was here".into(),
            }),
            ..Default::default()
        };
        group_send(&sim, carol, &group, foreign_edit).await;
        let react = Compose {
            reaction: Some(Reaction {
                id: b1.clone(),
                emoji: "🎉".into(),
                from_me: false,
                participant: Some(jid(bob)),
            }),
            ..Default::default()
        };
        group_send(&sim, carol, &group, react).await;
        // The server keeps the chat's order: once this is stored, all before it was handled.
        let last = group_send(&sim, carol, &group, text("last")).await;
        let rows = eventually("the last message", async || {
            let rows = client.messages(Some(&group), 100, 0).await.unwrap();
            rows.iter().any(|r| r.id == last).then_some(rows)
        })
        .await;
        let row = |id: &str| rows.iter().find(|r| r.id == id).unwrap().clone();
        assert_eq!(
            row(&c1).kind,
            Kind::Revoked,
            "an admin deletes a member's message"
        );
        assert_eq!(row(&c1).text, None);
        let b = row(&b1);
        assert_eq!(
            b.kind,
            Kind::Chat,
            "a member cannot delete the admin's message"
        );
        assert_eq!(b.text.as_deref(), Some("bob one"), "nor edit it");
        assert_eq!(b.edited_at, None);
        assert_eq!(b.reactions.len(), 1, "but may react to it");
        assert_eq!(b.reactions[0].emoji, "🎉");
        client.stop();
    })
    .await
    .expect("in time");
}
