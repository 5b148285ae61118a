//! Retention: the service prunes what aged past its time, in bounded batches, and never what
//! another row still needs — queued sends, messages the client may resend or the outbox may
//! send, messages an undelivered webhook event points at, reactions and edits whose target is
//! still stored. Rows are aged by rewriting their times (the pruner reads the database's times,
//! not a clock of its own); the maintenance task runs a pass shortly after start by itself.

use std::time::Duration;

use serde_json::json;
use wa_gateway::api::Role;
use wa_gateway::service::{Retention, ServiceOptions, WebhookSettings};
use wa_gateway::sim::Simulator;
use wa_gateway::store::{AccountId, Store};

use super::messaging::eventually;
use super::rest::{Server, call, link, token};

const LIMIT: Duration = Duration::from_secs(120);
const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    wa_gateway::util::clock::now_ms() as i64
}

/// A day of retention for everything, 100 rows a batch; the maintenance task's own passes
/// start after `first_after`.
fn retention(first_after: Duration) -> ServiceOptions {
    let day = Some(Duration::from_secs(86_400));
    ServiceOptions {
        retention: Retention {
            outbox: day,
            activities: day,
            messages: day,
            group_updates: day,
            dead_webhook_events: day,
            batch: 100,
            first_after,
            every: Duration::from_secs(3600),
        },
        webhooks: WebhookSettings {
            retain: Duration::from_secs(86_400),
            ..WebhookSettings::default()
        },
        ..Default::default()
    }
}

async fn exec(store: &Store, sql: &str) {
    sqlx::query(sql).execute(store.pool()).await.unwrap();
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Stores a message row of `account` in chat `c@s.whatsapp.net`, dated (and stored) `age_ms` ago.
#[allow(clippy::too_many_arguments)]
async fn message(
    store: &Store,
    account: AccountId,
    id: &str,
    from_me: bool,
    status: &str,
    kind: &str,
    target: Option<&str>,
    age_ms: i64,
) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO messages (account_id, chat, sender, id, from_me, ts, body, raw, status, \
         type, target_id, created_ms) VALUES (?, 'c@s.whatsapp.net', 'c@s.whatsapp.net', ?, ?, \
         ?, 'text', x'00', ?, ?, ?, ?) RETURNING pk",
    )
    .bind(account)
    .bind(id)
    .bind(from_me)
    .bind((now_ms() - age_ms) / 1000)
    .bind(status)
    .bind(kind)
    .bind(target)
    .bind(now_ms() - age_ms)
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// Stores a webhook event of `account` in `state`, about `message_pk`, made `age_ms` ago (and,
/// when delivered or dead, delivered or dead since then); a pending one is not due for days.
async fn event(store: &Store, account: AccountId, state: &str, message_pk: i64, age_ms: i64) {
    let at = now_ms() - age_ms;
    let next = if state == "pending" {
        now_ms() + 10 * DAY_MS
    } else {
        at
    };
    sqlx::query(
        "INSERT INTO webhook_events (account_id, id, kind, chat, message_pk, state, next_ms, \
         since_ms, created_ms, delivered_ms) VALUES (?, ?, 'message.received', \
         'c@s.whatsapp.net', ?, ?, ?, ?, ?, ?)",
    )
    .bind(account)
    .bind(wa_gateway::util::ids::ulid())
    .bind(message_pk)
    .bind(state)
    .bind(next)
    .bind(at)
    .bind(at)
    .bind((state == "delivered").then_some(at))
    .execute(store.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn old_rows_go_in_batches_and_rows_still_needed_stay() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        // The maintenance task stays out of the way: this test runs the passes itself.
        let server = Server::start_opts(&sim, &db, retention(Duration::from_secs(3600))).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let live = format!("{}/api/whatsapp/subr/live", server.url);
        let (me, bob) = ("15559400001", "15559400002");
        sim.set_devices(bob, 2).unwrap();
        let side = Store::open(&db).await.unwrap();

        // A live agent's real traffic: a send (outbox row, message, receipts) and an answer
        // (message, activity); then all of it is two days old.
        link(&sim, &http, &admin, &live, me).await;
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{live}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "old news" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        sim.phone_send(bob, me, "old answer").await.unwrap();
        let l = side.find_account("subr", "live").await.unwrap().unwrap();
        eventually("the answer stored and our message receipted", async || {
            let receipts = count(
                &side,
                &format!(
                    "SELECT COUNT(*) FROM message_receipts r JOIN messages m ON m.pk = \
                     r.message_pk WHERE m.account_id = {l}"
                ),
            )
            .await;
            let received = count(
                &side,
                &format!("SELECT COUNT(*) FROM messages WHERE account_id = {l} AND from_me = 0"),
            )
            .await;
            (receipts > 0 && received == 1).then_some(())
        })
        .await;
        exec(&side, &format!(
            "UPDATE messages SET ts = ts - 2 * 86400 WHERE account_id = {l}"
        ))
        .await;
        exec(&side, &format!(
            "UPDATE outbox SET created_ms = created_ms - 2 * {DAY_MS} WHERE account_id = {l}"
        ))
        .await;
        exec(&side, &format!(
            "UPDATE activities SET at_ms = at_ms - 2 * {DAY_MS} WHERE agent_id = 'live'"
        ))
        .await;

        // An idle agent's rows, each case of what goes and what stays.
        let i = side.account("subr", "idle").await.unwrap();
        let old = 2 * DAY_MS;
        // 250 old activities (three batches of 100) and a fresh one.
        for n in 0..250 {
            exec(&side, &format!(
                "INSERT INTO activities (subaccount_id, agent_id, kind, category, details, at_ms) \
                 VALUES ('subr', 'idle', 'old_{n}', 'chat', '{{}}', {})", now_ms() - old
            ))
            .await;
        }
        exec(&side, &format!(
            "INSERT INTO activities (subaccount_id, agent_id, kind, category, details, at_ms) \
             VALUES ('subr', 'idle', 'fresh', 'chat', '{{}}', {})", now_ms()
        ))
        .await;
        // Finished sends go when old; a queued one never; a fresh one stays.
        for (n, state, age) in [
            ("done", "done", old),
            ("failed", "failed", old),
            ("cancelled", "cancelled", old),
            ("expired", "expired", old),
            ("QUEUED", "queued", old),
            ("fresh", "done", 0),
        ] {
            exec(&side, &format!(
                "INSERT INTO outbox (account_id, idem_key, message_id, to_jid, body, state, \
                 created_ms) VALUES ({i}, 'key-{n}', '{n}', 'c@s.whatsapp.net', 'x', '{state}', {})",
                now_ms() - age
            ))
            .await;
        }
        let plain = message(&side, i, "PLAIN", true, "read", "chat", None, old).await;
        for d in 0..3 {
            exec(&side, &format!(
                "INSERT INTO message_receipts (message_pk, device, status, t) VALUES \
                 ({plain}, 'c:{d}@s.whatsapp.net', 'read', 1)"
            ))
            .await;
        }
        message(&side, i, "PENDING", true, "pending", "chat", None, old).await;
        message(&side, i, "QUEUED", true, "server_ack", "chat", None, old).await;
        let held = message(&side, i, "HELD", false, "received", "chat", None, old).await;
        event(&side, i, "pending", held, old).await;
        let dead_held = message(&side, i, "DEADHELD", false, "received", "chat", None, old).await;
        event(&side, i, "failed", dead_held, 0).await;
        let told = message(&side, i, "TOLD", false, "received", "chat", None, old).await;
        event(&side, i, "delivered", told, old).await;
        let told_recently = message(&side, i, "TOLDNOW", false, "received", "chat", None, old).await;
        event(&side, i, "delivered", told_recently, 0).await;
        let dead_old = message(&side, i, "DEADOLD", false, "received", "chat", None, old).await;
        event(&side, i, "failed", dead_old, old).await;
        message(&side, i, "TARGET", false, "received", "chat", None, old).await;
        message(&side, i, "REACTION", false, "received", "reaction", Some("TARGET"), old).await;
        message(&side, i, "ORPHAN", false, "received", "revoke", Some("NEVER"), old).await;
        message(&side, i, "FRESH", false, "received", "chat", None, 0).await;
        for (id, t) in [("old", (now_ms() - old) / 1000), ("fresh", now_ms() / 1000)] {
            exec(&side, &format!(
                "INSERT INTO group_updates (account_id, group_jid, id, seq, t, action, \
                 participants) VALUES ({i}, 'g@g.us', '{id}', 0, {t}, 'add', '')"
            ))
            .await;
        }

        let r = server.service.prune().await.unwrap();
        assert!(r.activities >= 250 && r.batches >= 8, "{r:?}");
        assert_eq!(r.dead_webhook_events, 1, "{r:?}");
        assert_eq!((r.delivered_webhook_events, r.group_updates), (1, 1), "{r:?}");
        assert!(r.receipts >= 3, "{r:?}");

        // The live agent's old traffic is gone, receipts with it.
        for table in ["messages", "outbox"] {
            let n = count(&side, &format!("SELECT COUNT(*) FROM {table} WHERE account_id = {l}")).await;
            assert_eq!(n, 0, "{table} of the live agent");
        }
        let n = count(&side, "SELECT COUNT(*) FROM activities WHERE agent_id = 'live'").await;
        assert_eq!(n, 0);
        let receipts = count(
            &side,
            "SELECT COUNT(*) FROM message_receipts WHERE message_pk NOT IN \
             (SELECT pk FROM messages)",
        )
        .await;
        assert_eq!(receipts, 0, "no receipt outlives its message");

        // The idle agent keeps exactly what is still needed, and what is fresh.
        let ids = async |table: &str, column: &str| -> Vec<String> {
            sqlx::query_scalar(&format!(
                "SELECT {column} FROM {table} WHERE account_id = {i} ORDER BY {column}"
            ))
            .fetch_all(side.pool())
            .await
            .unwrap()
        };
        assert_eq!(
            ids("messages", "id").await,
            ["DEADHELD", "FRESH", "HELD", "PENDING", "QUEUED", "REACTION"],
            "kept: a pending one, one a queued send names, two an undelivered event needs, a \
             reaction whose target was there when it was looked at, a fresh one"
        );
        assert_eq!(ids("outbox", "message_id").await, ["QUEUED", "fresh"]);
        assert_eq!(ids("webhook_events", "state").await, ["delivered", "failed", "pending"]);
        assert_eq!(ids("group_updates", "id").await, ["fresh"]);
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT kind FROM activities WHERE agent_id = 'idle'",
        )
        .fetch_all(side.pool())
        .await
        .unwrap();
        assert_eq!(kinds, ["fresh"]);

        // The next pass: the reaction follows its target; nothing else moves.
        let r = server.service.prune().await.unwrap();
        assert_eq!((r.messages, r.total()), (1, 1), "{r:?}");
        assert_eq!(
            ids("messages", "id").await,
            ["DEADHELD", "FRESH", "HELD", "PENDING", "QUEUED"]
        );

        // The live agent carries on: a new send, listed alone.
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{live}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "new news" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let (_, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{live}/messages"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(v["data"]["count"], json!(1), "{v}");
        side.close().await;
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn the_maintenance_task_prunes_shortly_after_start_by_itself() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let side = Store::open(&db).await.unwrap();
        side.account("subt", "a").await.unwrap();
        for (kind, at) in [("old", now_ms() - 2 * DAY_MS), ("new", now_ms())] {
            exec(&side, &format!(
                "INSERT INTO activities (subaccount_id, agent_id, kind, category, details, at_ms) \
                 VALUES ('subt', 'a', '{kind}', 'chat', '{{}}', {at})"
            ))
            .await;
        }
        let server = Server::start_opts(&sim, &db, retention(Duration::from_millis(200))).await;
        eventually("the old activity pruned", async || {
            (count(&side, "SELECT COUNT(*) FROM activities WHERE kind = 'old'").await == 0)
                .then_some(())
        })
        .await;
        assert_eq!(
            count(&side, "SELECT COUNT(*) FROM activities WHERE kind = 'new'").await,
            1
        );
        side.close().await;
        server.stop().await;
    })
    .await
    .expect("in time");
}
