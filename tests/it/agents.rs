//! Agents as a whole over the REST API: a subaccount's cap on agents (a new one past it is
//! refused, existing ones carry on), and removing an agent with every row stored for it —
//! checked table by table, over whatever tables the migrations made, so a table added later
//! is checked too.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Row;
use wa_gateway::api::Role;
use wa_gateway::service::{Pacing, ServiceOptions, WebhookSettings};
use wa_gateway::sim::Simulator;
use wa_gateway::stanza::group::AddressingMode;
use wa_gateway::store::{AccountId, Store};

use super::messaging::eventually;
use super::rest::{Server, assert_envelope, call, link, token};

const LIMIT: Duration = Duration::from_secs(120);

/// Rows of `account` (subaccount `sub`, agent `agent`) in every table of the database: tables
/// keyed by account, receipts of its messages (`pks`), its activities, its `accounts` row.
async fn rows_of(
    store: &Store,
    account: AccountId,
    sub: &str,
    agent: &str,
    pks: &[i64],
) -> BTreeMap<String, i64> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name NOT LIKE '_sqlx%'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info({t})"))
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        let has = |c: &str| columns.iter().any(|x| x == c);
        let pks = serde_json::to_string(pks).unwrap();
        let (sql, binds): (String, Vec<Value>) = if t == "accounts" {
            (
                "SELECT COUNT(*) FROM accounts WHERE id = ?".into(),
                vec![json!(account)],
            )
        } else if has("account_id") {
            (
                format!("SELECT COUNT(*) FROM {t} WHERE account_id = ?"),
                vec![json!(account)],
            )
        } else if has("message_pk") {
            (
                format!(
                    "SELECT COUNT(*) FROM {t} WHERE message_pk IN (SELECT value FROM json_each(?))"
                ),
                vec![json!(pks)],
            )
        } else if has("subaccount_id") && has("agent_id") {
            (
                format!("SELECT COUNT(*) FROM {t} WHERE subaccount_id = ? AND agent_id = ?"),
                vec![json!(sub), json!(agent)],
            )
        } else {
            // Facts about the database itself (`store_meta`): nobody's.
            assert_eq!(
                t, "store_meta",
                "a table with no owner column: decide what it holds"
            );
            continue;
        };
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for b in binds {
            q = match b {
                Value::Number(n) => q.bind(n.as_i64().unwrap()),
                Value::String(s) => q.bind(s),
                _ => unreachable!(),
            };
        }
        out.insert(t, q.fetch_one(store.pool()).await.unwrap());
    }
    out
}

fn service_options() -> ServiceOptions {
    ServiceOptions {
        pacing: Pacing {
            per_minute: 6000,
            burst: 50,
            // A second message to one chat waits a minute: a request can be left waiting.
            chat_gap: Duration::from_secs(60),
            wait: Duration::from_secs(20),
            ..Pacing::default()
        },
        // The webhooks below point at a closed loopback port: their events stay queued.
        webhooks: WebhookSettings {
            allow_private: true,
            ..WebhookSettings::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn removing_an_agent_logs_it_out_and_deletes_every_row_of_it_and_nothing_else() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start_opts(&sim, &db, service_options()).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let subd = format!("{}/api/whatsapp/subd", server.url);
        let (doomed, keeper) = (format!("{subd}/doomed"), format!("{subd}/keeper"));
        let (me, other, bob, dave) = ("15559300001", "15559300002", "15559300003", "15559300004");
        sim.set_devices(bob, 2).unwrap();

        // Two agents of one subaccount, each linked, with a webhook, messages both ways,
        // receipts; the doomed one is also in a group and has sent to it.
        for (base, number) in [(&doomed, me), (&keeper, other)] {
            link(&sim, &http, &admin, base, number).await;
            let (code, v) = call(
                &http,
                reqwest::Method::PUT,
                &format!("{base}/webhook"),
                Some(&admin),
                Some(
                    json!({ "url": "http://127.0.0.1:9/hook", "secret": "a-secret-of-16-chars+" }),
                ),
            )
            .await;
            assert_eq!(code, 200, "{v}");
            let (code, v) = call(
                &http,
                reqwest::Method::POST,
                &format!("{base}/send"),
                Some(&admin),
                Some(json!({ "to": bob, "message": "hello bob" })),
            )
            .await;
            assert_eq!(code, 200, "{v}");
            sim.phone_send(bob, number, "hello agent").await.unwrap();
        }
        let group = sim
            .create_group("Doomed's", me, &[bob.into()], AddressingMode::Pn)
            .unwrap();
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{doomed}/send"),
            Some(&admin),
            Some(json!({ "to": group.to_string(), "message": "hello group" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        sim.group_members(&group, &[dave.into()], &[], false)
            .await
            .unwrap();

        let side = Store::open(&db).await.unwrap();
        let account = side.find_account("subd", "doomed").await.unwrap().unwrap();
        let kept = side.find_account("subd", "keeper").await.unwrap().unwrap();
        let pks_of = async |a: AccountId| -> Vec<i64> {
            sqlx::query_scalar("SELECT pk FROM messages WHERE account_id = ?")
                .bind(a)
                .fetch_all(side.pool())
                .await
                .unwrap()
        };
        let before = eventually(
            "the doomed agent's rows in every kind of table",
            async || {
                let rows = rows_of(&side, account, "subd", "doomed", &pks_of(account).await).await;
                [
                    "accounts",
                    "activities",
                    "connections",
                    "creds",
                    "group_key_holders",
                    "group_updates",
                    "groups",
                    "message_receipts",
                    "messages",
                    "outbox",
                    "signal_identity",
                    "signal_pre_keys",
                    "signal_sender_keys",
                    "signal_sessions",
                    "signal_signed_pre_keys",
                    "webhook_events",
                    "webhooks",
                ]
                .iter()
                .all(|t| rows.get(*t).is_some_and(|n| *n > 0))
                .then_some(rows)
            },
        )
        .await;
        let doomed_pks = pks_of(account).await;
        let keeper_before = rows_of(&side, kept, "subd", "keeper", &pks_of(kept).await).await;

        // A send of the doomed agent left waiting in its queue (a minute's gap to bob).
        let waiting = {
            let (http, admin, url) = (http.clone(), admin.clone(), format!("{doomed}/send"));
            tokio::spawn(async move {
                call(
                    &http,
                    reqwest::Method::POST,
                    &url,
                    Some(&admin),
                    Some(json!({ "to": bob, "message": "never sent" })),
                )
                .await
            })
        };
        eventually("the send waiting", async || {
            (server.service.stats().waiting_sends == 1).then_some(())
        })
        .await;

        // Who may not remove it: a viewer, a member of another subaccount; a bad or unknown
        // agent is a 4xx.
        for (t, code, error) in [
            (token(Role::Viewer, &["subd"], 3600), 403, "forbidden"),
            (token(Role::Member, &["other"], 3600), 403, "forbidden"),
        ] {
            let (c, v) = call(&http, reqwest::Method::DELETE, &doomed, Some(&t), None).await;
            assert_eq!((c, v["error"]["code"].clone()), (code, json!(error)), "{v}");
        }
        let (c, v) = call(&http, reqwest::Method::DELETE, &doomed, None, None).await;
        assert_eq!(
            (c, v["error"]["code"].clone()),
            (401, json!("unauthorized"))
        );
        let (c, v) = call(
            &http,
            reqwest::Method::DELETE,
            &format!("{subd}/nobody"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(
            (c, v["error"]["code"].clone()),
            (404, json!("connection_not_found"))
        );
        let (c, v) = call(
            &http,
            reqwest::Method::DELETE,
            &format!("{subd}/bad%20id"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(
            (c, v["error"]["code"].clone()),
            (400, json!("invalid_path")),
            "{v}"
        );

        // A member of the subaccount removes it.
        let member = token(Role::Member, &["subd"], 3600);
        let (code, v) = call(&http, reqwest::Method::DELETE, &doomed, Some(&member), None).await;
        assert_eq!(code, 200, "{v}");
        assert_envelope(&v, true);
        assert_eq!(
            v["data"],
            json!({ "subaccountId": "subd", "agentId": "doomed" })
        );

        // The waiting request learns its send's record is gone.
        let (code, v) = waiting.await.unwrap();
        assert_eq!(
            (code, v["error"]["code"].clone()),
            (410, json!("send_record_gone")),
            "{v}"
        );
        // The phone forgot the device: the removal logged it out.
        eventually("the phone to forget the doomed agent", async || {
            sim.linked_devices(me).is_empty().then_some(())
        })
        .await;

        // Not a row of it is left, in any table; the other agent's rows are as they were.
        let after = rows_of(&side, account, "subd", "doomed", &doomed_pks).await;
        assert!(
            after.values().all(|n| *n == 0),
            "rows left after removal: {after:?} (before: {before:?})"
        );
        let keeper_after = rows_of(&side, kept, "subd", "keeper", &pks_of(kept).await).await;
        for (t, n) in &keeper_before {
            // The keeper lives on (its webhook events may grow); it lost nothing.
            assert!(keeper_after[t] >= *n, "{t}: {n} → {}", keeper_after[t]);
        }

        // It is gone from every listing; the other agent is not.
        let (_, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{subd}/connections"),
            Some(&admin),
            None,
        )
        .await;
        let agents: Vec<&str> = v["data"]["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["agentId"].as_str())
            .collect();
        assert_eq!(agents, ["keeper"], "{v}");
        let (_, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{subd}/activities?limit=500"),
            Some(&admin),
            None,
        )
        .await;
        let list = v["data"]["activities"].as_array().unwrap();
        assert!(
            !list.is_empty() && list.iter().all(|a| a["agentId"] == json!("keeper")),
            "{v}"
        );
        let (_, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{doomed}/status"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(v["data"]["status"], json!("not_initialized"), "{v}");
        let (code, _) = call(
            &http,
            reqwest::Method::GET,
            &format!("{doomed}/messages"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 404);
        let (code, v) = call(&http, reqwest::Method::DELETE, &doomed, Some(&admin), None).await;
        assert_eq!(
            (code, v["error"]["code"].clone()),
            (404, json!("connection_not_found"))
        );

        // The keeper still works.
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{keeper}/send"),
            Some(&admin),
            Some(json!({ "to": dave, "message": "still here", "wait": false })),
        )
        .await;
        assert_eq!(code, 200, "{v}");

        // An agent named like a subaccount listing is removed all the same.
        let (code, v) = call(
            &http,
            reqwest::Method::PUT,
            &format!("{subd}/activities/webhook"),
            Some(&admin),
            Some(json!({ "url": "http://127.0.0.1:9/hook", "secret": "a-secret-of-16-chars+" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let r = http
            .delete(format!("{subd}/activities"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["data"]["agentId"], json!("activities"), "{v}");
        assert_eq!(side.find_account("subd", "activities").await.unwrap(), None);
        side.close().await;
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_new_agent_past_the_subaccounts_cap_is_refused_and_existing_ones_carry_on() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let opts = ServiceOptions {
            max_agents: Some(2),
            ..service_options()
        };
        let server = Server::start_opts(&sim, &db, opts).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let api = format!("{}/api/whatsapp", server.url);
        let connect = async |sub: &str, agent: &str| {
            call(
                &http,
                reqwest::Method::POST,
                &format!("{api}/{sub}/{agent}/connect"),
                Some(&admin),
                None,
            )
            .await
        };
        let hook = async |sub: &str, agent: &str| {
            call(
                &http,
                reqwest::Method::PUT,
                &format!("{api}/{sub}/{agent}/webhook"),
                Some(&admin),
                Some(
                    json!({ "url": "http://127.0.0.1:9/hook", "secret": "a-secret-of-16-chars+" }),
                ),
            )
            .await
        };
        let refused = |(code, v): (u16, Value)| {
            assert_eq!(
                (code, v["error"]["code"].clone()),
                (409, json!("agent_limit_reached")),
                "{v}"
            );
            assert_envelope(&v, false);
            assert!(v["message"].as_str().unwrap().contains('2'), "{v}");
        };

        // Two agents: one connected, one with only a webhook (an agent all the same).
        let (code, v) = connect("capped", "a1").await;
        assert_eq!(code, 200, "{v}");
        let (code, v) = hook("capped", "a2").await;
        assert_eq!(code, 200, "{v}");
        // A third is refused, by either door, and nothing of it is stored.
        refused(connect("capped", "a3").await);
        refused(hook("capped", "a3").await);
        let side = Store::open(&db).await.unwrap();
        assert_eq!(side.find_account("capped", "a3").await.unwrap(), None);
        // The existing ones are not touched by the cap; other subaccounts have their own.
        let (code, v) = connect("capped", "a1").await;
        assert_eq!(code, 200, "{v}");
        let (code, v) = hook("capped", "a1").await;
        assert_eq!(code, 200, "{v}");
        let (code, v) = connect("capped", "a2").await;
        assert_eq!(code, 200, "{v}");
        let (code, v) = connect("other", "a3").await;
        assert_eq!(code, 200, "{v}");
        // A disconnected agent still counts (its history is kept); a removed one does not.
        let (code, _) = call(
            &http,
            reqwest::Method::POST,
            &format!("{api}/capped/a1/disconnect"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200);
        refused(connect("capped", "a3").await);
        let (code, v) = call(
            &http,
            reqwest::Method::DELETE,
            &format!("{api}/capped/a1"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let (code, v) = connect("capped", "a3").await;
        assert_eq!(code, 200, "{v}");
        assert!(v["data"]["qrCode"].is_string(), "{v}");
        side.close().await;
        server.stop().await;
    })
    .await
    .expect("in time");
}
