//! Reach-out refusals over REST (issue 23): a 463 is explained by what would lift it
//! (`privacy_token_required` vs `account_restricted` under a time-lock, `privacy_token_rejected`
//! when a token went and no lock is known) in the send answer, the message row and the status
//! webhook, and never retried; a held send expires at the send TTL;
//! a new chat's use of the capping quota shows in `GET …/limits`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use wa_gateway::api::auth::Role;
use wa_gateway::client::CredsStore;
use wa_gateway::service::ServiceOptions;
use wa_gateway::sim::Simulator;
use wa_gateway::sim::server::Fault;
use wa_gateway::stanza::mex::NewChatCapping;
use wa_gateway::store::Store;

use crate::contact_ids::{Hook, options, row, set_hook};
use crate::messaging::eventually;
use crate::rest::{Server as Gateway, call, link, token};

const LIMIT: Duration = Duration::from_secs(120);

async fn sim() -> Simulator {
    Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Removes (sub1, `agent`)'s NCT salt once the phone shared it (an `nct_salt_sync` REMOVE,
/// as the phone may send): no cstoken can go with a first message after that.
async fn without_salt(db: &str, agent: &str) {
    let store = Store::open(db).await.unwrap();
    let creds = store.creds(store.account("sub1", agent).await.unwrap());
    eventually("the NCT salt from the history bootstrap", async || {
        creds.nct_salt().await.unwrap().map(|_| ())
    })
    .await;
    creds.set_nct_salt(None).await.unwrap();
}

/// Replaces (sub1, `agent`)'s NCT salt, once the phone shared it, by one the account does not
/// have: the cstoken that goes with a first message then does not verify.
async fn stale_salt(db: &str, agent: &str) {
    let store = Store::open(db).await.unwrap();
    let creds = store.creds(store.account("sub1", agent).await.unwrap());
    eventually("the NCT salt from the history bootstrap", async || {
        creds.nct_salt().await.unwrap().map(|_| ())
    })
    .await;
    creds
        .set_nct_salt(Some(b"not the account's salt"))
        .await
        .unwrap();
}

async fn send(
    http: &reqwest::Client,
    admin: &str,
    base: &str,
    to: &str,
    text: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let mut r = http
        .post(format!("{base}/send"))
        .bearer_auth(admin)
        .json(&json!({ "to": to, "message": text }));
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A send answered 422 (refused by WhatsApp, final): its answer.
async fn refused(http: &reqwest::Client, admin: &str, base: &str, to: &str, text: &str) -> Value {
    let (code, v) = call(
        http,
        Method::POST,
        &format!("{base}/send"),
        Some(admin),
        Some(json!({ "to": to, "message": text })),
    )
    .await;
    assert_eq!(code, 422, "{v}");
    v
}

#[tokio::test]
async fn a_463_says_what_lifts_it_a_time_lock_makes_it_account_restricted_and_it_is_never_retried()
{
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Gateway::start_opts(&sim, &db, options()).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let plain = format!("{}/api/whatsapp/sub1/plain", server.url);
        let locked = format!("{}/api/whatsapp/sub1/locked", server.url);
        let (p, l, x, y) = ("15550092000", "15550092100", "15550092001", "15550092002");
        sim.set_devices(x, 1).unwrap();
        sim.set_devices(y, 1).unwrap();
        let hook = Hook::start().await;
        set_hook(&http, &admin, &plain, &hook).await;
        set_hook(&http, &admin, &locked, &hook).await;

        // No time-lock: first contacts need a token, and there is none to send.
        assert_eq!(sim.fault(p, Fault::RequireCsToken(true)).await, 1);
        link(&sim, &http, &admin, &plain, p).await;
        without_salt(&db, "plain").await;
        let v = refused(&http, &admin, &plain, x, "hello x").await;
        assert_eq!(v["error"]["code"], json!("privacy_token_required"), "{v}");
        assert!(
            v["error"]["remedy"].as_str().unwrap().contains("NCT salt"),
            "{v}"
        );
        assert_eq!(v["error"]["until"], Value::Null, "{v}");
        let said = v["message"].as_str().unwrap();
        assert!(
            said.contains("must write to this account first") && said.contains("NCT salt"),
            "{said}"
        );
        let r = row(&http, &admin, &plain, "hello x").await;
        assert_eq!(r["status"], json!("failed"), "{r}");
        assert_eq!(r["errorCode"], json!(463), "{r}");
        assert_eq!(r["error"]["code"], json!("privacy_token_required"), "{r}");
        assert!(r["error"]["remedy"].as_str().unwrap().contains("NCT salt"));
        let id = r["messageId"].clone();
        let w = eventually("the failed status webhook", async || {
            hook.find("message.status", |d| d["messageId"] == id)
        })
        .await;
        assert_eq!(w["data"]["errorCode"], json!(463), "{w}");
        assert_eq!(
            w["data"]["error"]["code"],
            json!("privacy_token_required"),
            "{w}"
        );

        // Time-locked before it linked (so its client was never told): the 463 makes the
        // client ask, and the refusal is the lock, with its end.
        assert_eq!(sim.fault(l, Fault::ReachOutLock(true)).await, 1);
        link(&sim, &http, &admin, &locked, l).await;
        without_salt(&db, "locked").await;
        let v = refused(&http, &admin, &locked, y, "hello y").await;
        assert_eq!(v["error"]["code"], json!("account_restricted"), "{v}");
        let until = v["error"]["until"].as_str().unwrap();
        assert!(until.starts_with("20") && until.ends_with('Z'), "{v}");
        assert!(
            v["error"]["remedy"].as_str().unwrap().contains(until),
            "{v}"
        );
        let said = v["message"].as_str().unwrap();
        assert!(said.contains("time-lock until 20"), "{said}");
        let (_, limits) = call(
            &http,
            Method::GET,
            &format!("{locked}/limits"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(
            limits["data"]["barredReason"],
            json!("timelocked"),
            "{limits}"
        );
        let until = limits["data"]["barredUntil"].clone();
        let r = row(&http, &admin, &locked, "hello y").await;
        assert_eq!(r["errorCode"], json!(463), "{r}");
        assert_eq!(r["error"]["code"], json!("account_restricted"), "{r}");
        assert!(r["error"]["until"].is_string(), "{r}");
        if until.is_string() {
            assert_eq!(r["error"]["until"], until, "{r} {limits}");
        }
        let remedy = r["error"]["remedy"].as_str().unwrap();
        assert!(
            remedy.starts_with(&format!(
                "time-lock until {}",
                r["error"]["until"].as_str().unwrap()
            )),
            "{remedy}"
        );
        let id = r["messageId"].clone();
        let w = eventually("the failed status webhook", async || {
            hook.find("message.status", |d| d["messageId"] == id)
        })
        .await;
        assert_eq!(
            w["data"]["error"]["code"],
            json!("account_restricted"),
            "{w}"
        );

        // Never retried: a retry would come from the same outbox before its next row (the
        // drain tries a row again before it moves on). So a later send through each outbox,
        // to a contact now warm (it wrote first), is waited for until its recipient has it;
        // then the refused stanzas must still have gone out once each.
        for (base, me, them, marker) in [
            (&plain, p, x, "hello again x"),
            (&locked, l, y, "hello again y"),
        ] {
            let wrote = format!("{them} writes first");
            sim.phone_send(them, me, &wrote).await.unwrap();
            row(&http, &admin, base, &wrote).await;
            let (code, v) = send(&http, &admin, base, them, marker, None).await;
            assert_eq!(code, 200, "{v}");
            eventually("the later send delivered", async || {
                sim.phone_messages(them)
                    .iter()
                    .any(|m| m.text.as_deref() == Some(marker))
                    .then_some(())
            })
            .await;
        }
        assert!(
            sim.phone_messages(y)
                .iter()
                .all(|m| m.text.as_deref() != Some("hello y")),
            "the refused send never reached y"
        );
        for (base, text) in [(&plain, "hello x"), (&locked, "hello y")] {
            let r = row(&http, &admin, base, text).await;
            let wire_id = r["messageId"].as_str().unwrap().rsplit('_').next().unwrap();
            let sent = sim
                .message_log()
                .into_iter()
                .filter(|m| m.id == wire_id)
                .count();
            assert_eq!(sent, 1, "{text} went out {sent} times");
        }
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_463_although_a_token_went_and_no_time_lock_is_not_called_a_time_lock() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Gateway::start_opts(&sim, &db, options()).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/stale", server.url);
        let (me, x) = ("15550095000", "15550095001");
        sim.set_devices(x, 1).unwrap();
        let hook = Hook::start().await;
        set_hook(&http, &admin, &base, &hook).await;
        assert_eq!(sim.fault(me, Fault::RequireCsToken(true)).await, 1);
        link(&sim, &http, &admin, &base, me).await;
        stale_salt(&db, "stale").await;
        let v = refused(&http, &admin, &base, x, "hello with a stale cstoken").await;
        // A cstoken went (the server saw it), and no time-lock is active.
        let wire = sim
            .message_log()
            .into_iter()
            .find(|m| m.error == Some(463))
            .expect("the refused stanza");
        assert!(wire.cstoken, "a cstoken went with it");
        let (_, l) = call(
            &http,
            Method::GET,
            &format!("{base}/limits"),
            Some(&admin),
            None,
        )
        .await;
        assert_ne!(l["data"]["barredReason"], json!("timelocked"), "{l}");
        assert_eq!(v["error"]["code"], json!("privacy_token_rejected"), "{v}");
        assert_eq!(v["error"]["until"], Value::Null, "{v}");
        let remedy = v["error"]["remedy"].as_str().unwrap();
        assert!(!remedy.contains("time-lock until"), "{remedy}");
        assert!(remedy.contains("NCT salt"), "{remedy}");
        let r = row(&http, &admin, &base, "hello with a stale cstoken").await;
        assert_eq!(r["errorCode"], json!(463), "{r}");
        assert_eq!(r["error"]["code"], json!("privacy_token_rejected"), "{r}");
        // The status webhook (often rendered before the outbox records the result) agrees.
        let id = r["messageId"].clone();
        let w = eventually("the failed status webhook", async || {
            hook.find("message.status", |d| d["messageId"] == id)
        })
        .await;
        assert_eq!(
            w["data"]["error"]["code"],
            json!("privacy_token_rejected"),
            "{w}"
        );
        server.stop().await;
    })
    .await
    .expect("in time");
}

fn capping(total: u64, used: u64, status: &str) -> NewChatCapping {
    let now = wa_gateway::util::clock::now_ms() / 1000;
    NewChatCapping {
        total_quota: Some(total),
        used_quota: Some(used),
        cycle_start: Some(now - 60),
        cycle_end: Some(now + 86_400),
        capping_status: Some(status.into()),
        ..Default::default()
    }
}

async fn limits(http: &reqwest::Client, admin: &str, base: &str) -> Value {
    let (code, v) = call(
        http,
        Method::GET,
        &format!("{base}/limits"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v
}

#[tokio::test]
async fn a_held_send_expires_at_the_send_ttl_and_says_so() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let opts = ServiceOptions {
            send_ttl: Some(Duration::from_secs(5)),
            ..options()
        };
        let server = Gateway::start_opts(&sim, &db, opts).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, cold, later) = ("15550093000", "15550093001", "15550093002");
        sim.set_devices(cold, 1).unwrap();
        sim.set_devices(later, 1).unwrap();
        let hook = Hook::start().await;
        set_hook(&http, &admin, &base, &hook).await;
        link(&sim, &http, &admin, &base, me).await;
        sim.set_capping(me, Some(capping(3, 3, "CAPPED"))).unwrap();
        eventually("capped over REST", async || {
            let v = limits(&http, &admin, &base).await;
            (v["data"]["newChatsBarred"] == json!(true)).then_some(())
        })
        .await;

        let (code, v) = send(&http, &admin, &base, cold, "held then expired", Some("k1")).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["status"], json!("held"), "{v}");
        let mid = v["data"]["messageId"].clone();
        // Past the TTL the same request answers that it expired, and a status event says so.
        let v = eventually("the held send expired", async || {
            let (code, v) = send(&http, &admin, &base, cold, "held then expired", Some("k1")).await;
            (code == 409).then_some(v)
        })
        .await;
        assert_eq!(v["error"]["code"], json!("send_expired"), "{v}");
        let w = eventually("the expired status webhook", async || {
            hook.find("message.status", |d| d["messageId"] == mid)
        })
        .await;
        assert_eq!(w["data"]["status"], json!("expired"), "{w}");
        assert_eq!(w["data"]["error"]["code"], json!("send_expired"), "{w}");
        assert_eq!(w["data"]["toPn"], json!(format!("{cold}@c.us")), "{w}");
        // The cap lifting later sends nothing of it: it is gone, not held. A send held after
        // it is released by the lift, in the pass that would release the expired one too; the
        // older one would then go first (the outbox sends in order), so once the later one
        // has arrived, the expired one would have.
        let (code, v) = send(&http, &admin, &base, later, "held then released", None).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["status"], json!("held"), "{v}");
        sim.set_capping(me, None).unwrap();
        eventually("the later held send delivered", async || {
            sim.phone_messages(later)
                .iter()
                .any(|m| m.text.as_deref() == Some("held then released"))
                .then_some(())
        })
        .await;
        assert!(sim.phone_messages(cold).is_empty());
        let wire_id = mid.as_str().unwrap().rsplit('_').next().unwrap();
        assert!(
            sim.message_log().iter().all(|m| m.id != wire_id),
            "the expired send went out"
        );
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_new_chat_uses_the_capping_quota_and_the_limits_show_it() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Gateway::start_opts(&sim, &db, options()).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, cold) = ("15550094000", "15550094001");
        sim.set_devices(cold, 1).unwrap();
        link(&sim, &http, &admin, &base, me).await;
        sim.set_capping(me, Some(capping(5, 1, "NONE"))).unwrap();
        eventually("the capping over REST", async || {
            let v = limits(&http, &admin, &base).await;
            (v["data"]["newChatCapping"]["usedQuota"] == json!(1)).then_some(())
        })
        .await;

        let (code, v) = send(&http, &admin, &base, cold, "a new chat", None).await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["status"], json!("server_ack"), "{v}");
        // The server counts it and tells the account's devices.
        let v = eventually("the used count up by one", async || {
            let v = limits(&http, &admin, &base).await;
            (v["data"]["newChatCapping"]["usedQuota"] == json!(2)).then_some(v)
        })
        .await;
        assert_eq!(v["data"]["newChatCapping"]["remaining"], json!(3), "{v}");
        assert_eq!(sim.capping(me).unwrap().used_quota, Some(2));
        // A second message to the same contact is no new chat.
        let (code, _) = send(&http, &admin, &base, cold, "the same chat", None).await;
        assert_eq!(code, 200);
        assert_eq!(sim.capping(me).unwrap().used_quota, Some(2));
        server.stop().await;
    })
    .await
    .expect("in time");
}
