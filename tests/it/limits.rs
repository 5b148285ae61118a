//! Reach-out limits and privacy tokens: the NCT salt's storage rule, the cstoken on the wire
//! (what the simulator received), tctoken issuance across buckets, the simulator's
//! `require_cstoken` refusal, capping state over REST and the outbox's cold-send gate.

use wa_gateway::client::{CredsStore, MemoryCreds};
use wa_gateway::store::Store;

/// The backfill-only rule (CLIENT-FEATURES §1.1, whatsapp-rust): a history salt applies only
/// with no salt stored and no `nct_salt_sync` ever seen.
async fn salt_rule<S: CredsStore>(fresh: impl Fn() -> S) {
    // Backfill into nothing applies, and a second history salt does not overwrite it.
    let s = fresh();
    assert!(s.nct_salt().await.unwrap().is_none());
    assert!(s.backfill_nct_salt(b"history-1").await.unwrap());
    assert_eq!(s.nct_salt().await.unwrap().unwrap().bytes(), b"history-1");
    assert!(!s.backfill_nct_salt(b"history-2").await.unwrap());
    assert_eq!(s.nct_salt().await.unwrap().unwrap().bytes(), b"history-1");
    // A synced SET replaces it; history never overwrites the synced value.
    s.set_nct_salt(Some(b"synced")).await.unwrap();
    assert!(!s.backfill_nct_salt(b"history-3").await.unwrap());
    assert_eq!(s.nct_salt().await.unwrap().unwrap().bytes(), b"synced");
    // A REMOVE clears it, and history does not resurrect it.
    s.set_nct_salt(None).await.unwrap();
    assert!(s.nct_salt().await.unwrap().is_none());
    assert!(!s.backfill_nct_salt(b"history-4").await.unwrap());
    assert!(s.nct_salt().await.unwrap().is_none());
    // An empty history salt is nothing.
    let t = fresh();
    assert!(!t.backfill_nct_salt(b"").await.unwrap());
    assert!(t.nct_salt().await.unwrap().is_none());
    // A logout wipe forgets the salt and the seen flag: the next link backfills again.
    s.set_nct_salt(Some(b"synced")).await.unwrap();
    s.wipe().await.unwrap();
    assert!(s.nct_salt().await.unwrap().is_none());
    assert!(s.backfill_nct_salt(b"history-5").await.unwrap());
    // Debug never shows it.
    let shown = format!("{:?}", s.nct_salt().await.unwrap());
    assert!(
        !shown.contains("history") && !shown.contains("104"),
        "{shown}"
    );
}

#[tokio::test]
async fn the_history_salt_is_backfill_only_in_memory_and_in_sqlite() {
    salt_rule(MemoryCreds::default).await;
    let store = Store::open("sqlite::memory:").await.unwrap();
    let mut accounts = Vec::new();
    for i in 0..4 {
        let id = store.account("sub", &format!("salt-{i}")).await.unwrap();
        accounts.push(store.creds(id));
    }
    let accounts = std::sync::Mutex::new(accounts);
    salt_rule(|| accounts.lock().unwrap().pop().unwrap()).await;
}

use std::sync::Arc;
use std::time::Duration;

use wa_gateway::binary::Jid;
use wa_gateway::client::{AttachedToken, Client, Event, MessageStatus, SendError, Warmth};
use wa_gateway::sim::Simulator;
use wa_gateway::sim::server::Fault;
use wa_gateway::stanza::group::AddressingMode;

use crate::messaging::{Account, account, eventually, link, next_event, options, user};

const LIMIT: Duration = Duration::from_secs(90);

async fn sim() -> Simulator {
    Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Waits until the history bootstrap's NCT salt is stored.
async fn salted(a: &Account) {
    eventually("the NCT salt from the history bootstrap", async || {
        a.creds.nct_salt().await.unwrap().map(|_| ())
    })
    .await;
}

/// The stanza the simulator logged for message `id`.
fn logged(sim: &Simulator, id: &str) -> wa_gateway::sim::stanza_log::Logged {
    sim.message_log()
        .into_iter()
        .rfind(|l| l.id == id)
        .expect("the stanza reached the server")
}

#[tokio::test]
async fn a_cstoken_goes_to_cold_users_only_and_a_valid_tctoken_replaces_it() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let a = account().await;
        let (me, stranger, friend) = ("15550080000", "15550081000", "15550082000");
        let (client, mut events, _) = link(&sim, &a, me).await;
        sim.set_devices(stranger, 1).unwrap();
        sim.set_devices(friend, 1).unwrap();
        salted(&a).await;

        // A cold stranger: no tctoken held, a LID learnt by usync, the salt held → cstoken.
        assert_eq!(client.warmth(&user(stranger)).await, Warmth::Cold);
        let sent = client.send_text(&user(stranger), "hello").await.unwrap();
        let l = logged(&sim, &sent.id);
        assert!(l.cstoken && !l.tctoken, "{l:?}");

        // Our own account never gets one (whatsapp-rust's rule), nor a group.
        assert_eq!(client.warmth(&user(me)).await, Warmth::NotApplicable);
        let own = client.send_text(&user(me), "note to self").await.unwrap();
        let l = logged(&sim, &own.id);
        assert!(!l.cstoken && !l.tctoken, "{l:?}");
        let group = sim
            .create_group("Club", me, &[stranger.into()], AddressingMode::Pn)
            .unwrap();
        let g = client.send_text(&group, "to the group").await.unwrap();
        let l = logged(&sim, &g.id);
        assert!(!l.cstoken && !l.tctoken, "{l:?}");

        // The friend writes first: its tctoken reaches us, it is warm, and the tctoken goes
        // instead of a cstoken.
        let hi = sim.phone_send(friend, me, "hi").await.unwrap();
        next_event(&mut events, |e| matches!(e, Event::PrivacyToken { .. })).await;
        next_event(
            &mut events,
            |e| matches!(e, Event::Message(m) if m.id == hi),
        )
        .await;
        assert_eq!(client.warmth(&user(friend)).await, Warmth::Warm);
        let back = client.send_text(&user(friend), "hello back").await.unwrap();
        let l = logged(&sim, &back.id);
        assert!(l.tctoken && !l.cstoken, "{l:?}");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn require_cstoken_lets_a_salted_first_message_through_and_463s_without_one() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let a = account().await;
        let (me, x, y, z) = ("15550083000", "15550083001", "15550083002", "15550083003");
        let (client, _events, _) = link(&sim, &a, me).await;
        for n in [x, y, z] {
            sim.set_devices(n, 1).unwrap();
        }
        salted(&a).await;
        assert_eq!(sim.fault(me, Fault::RequireCsToken(true)).await, 1);

        // With the salt the phone shared, the server's HMAC check passes.
        let ok = client.send_text(&user(x), "first contact").await.unwrap();
        assert_eq!(ok.status, MessageStatus::ServerAck);
        assert_eq!(sim.phone_messages(x).len(), 1);

        // A wrong salt: a cstoken that does not verify is refused (we attached one).
        a.creds
            .set_nct_salt(Some(b"not the account's salt"))
            .await
            .unwrap();
        let err = client.send_text(&user(y), "hello?").await.unwrap_err();
        let SendError::Refused { code, attached, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*code, *attached), (463, Some(AttachedToken::CsToken)));

        // The salt removed (an `nct_salt_sync` REMOVE): nothing to attach, 463, and it says
        // no token went with it.
        a.creds.set_nct_salt(None).await.unwrap();
        let err = client.send_text(&user(z), "hello?").await.unwrap_err();
        let SendError::Refused { code, attached, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*code, *attached), (463, None));
        assert!(sim.phone_messages(y).is_empty() && sim.phone_messages(z).is_empty());

        // A contact that wrote to us is warm: our answer needs no cstoken.
        let hi = sim.phone_send(y, me, "it's y").await.unwrap();
        eventually("y's message", async || {
            a.creds
                .messages(None, 50, 0)
                .await
                .unwrap()
                .into_iter()
                .find(|m| m.id == hi)
        })
        .await;
        let answer = client.send_text(&user(y), "hi y").await.unwrap();
        assert_eq!(answer.status, MessageStatus::ServerAck);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn our_tctoken_is_issued_once_per_bucket() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let a = account().await;
        let (me, x) = ("15550084000", "15550084001");
        let clock =
            wa_gateway::util::clock::FixedClock::new(wa_gateway::util::clock::now_ms() / 1000);
        let mut opts = options(&sim);
        opts.socket.clock = Arc::new(clock.clone());
        let (client, mut events) = Client::start(opts, a.creds.clone());
        let Event::QrCode { code, .. } =
            next_event(&mut events, |e| matches!(e, Event::QrCode { .. })).await
        else {
            unreachable!()
        };
        sim.scan(me, &code, Some("Me"), None).await.unwrap();
        client
            .wait_for(|s| *s == wa_gateway::client::ConnState::Connected)
            .await;
        sim.set_devices(x, 1).unwrap();
        let week = wa_gateway::stanza::privacy::TC_BUCKET_SECS;
        let now = wa_gateway::util::clock::now_ms() / 1000;
        let x_pn = Jid::new(x, wa_gateway::binary::Server::User);

        client.send_text(&x_pn, "one").await.unwrap();
        let issued = |sim: &Simulator| {
            sim.token_issues(me)
                .into_iter()
                .filter(|(h, _)| h == x)
                .count()
        };
        eventually("the first issue", async || {
            (issued(&sim) == 1).then_some(())
        })
        .await;
        // The same bucket: no second issue.
        let two = client.send_text(&x_pn, "two").await.unwrap();
        assert_eq!(two.status, MessageStatus::ServerAck);
        assert_eq!(issued(&sim), 1);
        // Into the next bucket: issued again, with the new time.
        let next = (now / week + 1) * week + 5;
        clock.set(next);
        client.send_text(&x_pn, "three").await.unwrap();
        eventually("the second issue", async || {
            (issued(&sim) == 2).then_some(())
        })
        .await;
        assert_eq!(sim.token_issues(me).last().map(|(_, t)| *t), Some(next));
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_cold_send_is_held_while_capped_and_goes_when_the_cap_lifts_and_refuse_answers_at_once() {
    use crate::rest::{Server, call, link as rest_link, token};
    use reqwest::Method;
    use serde_json::json;
    use wa_gateway::api::auth::Role;
    use wa_gateway::stanza::mex::NewChatCapping;

    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start_opts(&sim, &db, Default::default()).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/sub1/agent1", server.url);
        let (me, cold1, cold2) = ("15550085000", "15550085001", "15550085002");
        sim.set_devices(cold1, 1).unwrap();
        sim.set_devices(cold2, 1).unwrap();
        rest_link(&sim, &http, &admin, &base, me).await;

        // Nothing bars new chats yet; the policy is the default.
        let (code, v) = call(
            &http,
            Method::GET,
            &format!("{base}/limits"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["coldSend"], json!("hold"));
        assert_eq!(v["data"]["newChatsBarred"], json!(false));

        // WhatsApp caps the account (its devices are told): the limits say so.
        let now = wa_gateway::util::clock::now_ms() / 1000;
        let capped = NewChatCapping {
            total_quota: Some(3),
            used_quota: Some(3),
            cycle_start: Some(now - 60),
            cycle_end: Some(now + 86_400),
            capping_status: Some("CAPPED".into()),
            ..Default::default()
        };
        sim.set_capping(me, Some(capped.clone())).unwrap();
        let limits = eventually("the capping over REST", async || {
            let (_, v) = call(
                &http,
                Method::GET,
                &format!("{base}/limits"),
                Some(&admin),
                None,
            )
            .await;
            (v["data"]["newChatsBarred"] == json!(true)).then_some(v)
        })
        .await;
        assert_eq!(limits["data"]["barredReason"], json!("capped"));
        assert_eq!(limits["data"]["newChatCapping"]["totalQuota"], json!(3));
        assert_eq!(limits["data"]["newChatCapping"]["remaining"], json!(0));
        assert_eq!(
            limits["data"]["newChatCapping"]["cappingStatus"],
            json!("CAPPED")
        );

        // A send to a cold contact is held, not sent.
        let (code, v) = call(
            &http,
            Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": cold1, "message": "first contact" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["status"], json!("held"), "{v}");
        assert_eq!(v["data"]["hold"]["reason"], json!("capped"));
        assert!(v["data"]["hold"]["until"].is_string(), "{v}");
        assert!(sim.phone_messages(cold1).is_empty());

        // The cap lifts (the control API): the held send goes.
        let control = crate::messaging::control_api(&sim).await;
        let (code, _) = call_plain(
            &http,
            &format!("{control}/phones/{me}/capping"),
            json!({ "off": true }),
        )
        .await;
        assert_eq!(code, 200);
        eventually("the held send delivered", async || {
            (!sim.phone_messages(cold1).is_empty()).then_some(())
        })
        .await;

        // Refuse mode: capped again, a cold send is refused at once with why and until.
        server
            .service
            .set_cold_send(wa_gateway::service::limits::ColdSend::Refuse);
        sim.set_capping(me, Some(capped)).unwrap();
        eventually("capped again", async || {
            let (_, v) = call(
                &http,
                Method::GET,
                &format!("{base}/limits"),
                Some(&admin),
                None,
            )
            .await;
            (v["data"]["newChatsBarred"] == json!(true)).then_some(())
        })
        .await;
        let (code, v) = call(
            &http,
            Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": cold2, "message": "hello?" })),
        )
        .await;
        assert_eq!(code, 429, "{v}");
        assert_eq!(v["error"]["code"], json!("new_chat_cap_reached"), "{v}");
        assert!(sim.phone_messages(cold2).is_empty());
        server.stop().await;
    })
    .await
    .expect("in time");
}

/// A POST of JSON to the simulator's control API (not the gateway's: no OpenAPI check).
async fn call_plain(
    http: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = http.post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}
