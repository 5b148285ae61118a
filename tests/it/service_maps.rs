//! The service's in-memory maps follow what is in use, never what has been: a send request
//! dropped while it waits (its client gone, or cut off by the request timeout) leaves no
//! waiter behind, and every way a session ends (disconnect, the phone unlinking, removal)
//! takes its client, gate and drain waker out, so after any number of connect/disconnect
//! cycles the maps are back where they started.

use std::time::Duration;

use serde_json::json;
use wa_gateway::api::{HttpLimits, Role};
use wa_gateway::service::{Pacing, ServiceOptions, ServiceStats};
use wa_gateway::sim::{Fault, Simulator};

use super::messaging::{eventually, options};
use super::rest::{Server, call, link, token};

const LIMIT: Duration = Duration::from_secs(120);

/// Waits until the maps are as they were at `baseline`.
async fn back_to(server: &Server, baseline: ServiceStats, after: &str) {
    let mut last = server.service.stats();
    let what = format!("the service's maps back to {baseline:?} after {after}");
    eventually(&what, async || {
        last = server.service.stats();
        (last == baseline).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_send_request_dropped_while_it_waits_leaves_no_waiter_behind() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let opts = ServiceOptions {
            pacing: Pacing {
                per_minute: 6000,
                burst: 50,
                // A second message to the same chat waits a minute in the queue: its request
                // waits with it.
                chat_gap: Duration::from_secs(60),
                wait: Duration::from_secs(20),
                ..Pacing::default()
            },
            ..Default::default()
        };
        let http_limits = HttpLimits {
            request_timeout: Duration::from_secs(2),
            ..HttpLimits::default()
        };
        let server = Server::start_http(&db, options(&sim), opts, http_limits).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let base = format!("{}/api/whatsapp/subw/agentw", server.url);
        let (me, bob) = ("15559100001", "15559100002");
        sim.set_devices(bob, 1).unwrap();
        link(&sim, &http, &admin, &base, me).await;
        assert_eq!(server.service.stats().waiting_sends, 0);

        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "first", "wait": false })),
        )
        .await;
        assert_eq!(code, 200, "{v}");

        // Cut off by the server's request timeout while it waits in the queue.
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "cut off" })),
        )
        .await;
        assert_eq!(
            (code, v["error"]["code"].clone()),
            (503, json!("request_timeout"))
        );
        assert_eq!(
            server.service.stats().waiting_sends,
            0,
            "the timed-out request's waiter is gone"
        );

        // Its client gives up and closes the connection while it waits.
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let gave_up = impatient
            .post(format!("{base}/send"))
            .bearer_auth(&admin)
            .json(&json!({ "to": bob, "message": "abandoned" }))
            .send()
            .await;
        assert!(gave_up.is_err(), "the client timed out");
        eventually("the abandoned request's waiter gone", async || {
            (server.service.stats().waiting_sends == 0).then_some(())
        })
        .await;
        // Both sends stay queued: dropping a request never drops what it recorded.
        let (_, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/messages"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(v["data"]["count"], json!(1), "only the first went: {v}");
        server.stop().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn every_way_a_session_ends_returns_the_maps_to_their_baseline() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let server = Server::start_opts(&sim, &db, ServiceOptions::default()).await;
        let http = reqwest::Client::new();
        let admin = token(Role::Admin, &["*"], 3600);
        let agents = format!("{}/api/whatsapp/subm", server.url);
        let baseline = server.service.stats();
        assert_eq!(baseline, ServiceStats::default());

        // Connect (a QR code shows) and disconnect, over several agents and one agent again
        // and again.
        let cycles = ["a1", "a2", "a3", "again", "again", "again"];
        for agent in cycles {
            let (code, v) = call(
                &http,
                reqwest::Method::POST,
                &format!("{agents}/{agent}/connect"),
                Some(&admin),
                None,
            )
            .await;
            assert_eq!(code, 200, "{v}");
            assert!(v["data"]["qrCode"].is_string(), "{v}");
            let during = server.service.stats();
            assert_eq!((during.sessions, during.drains), (1, 1), "{during:?}");
            let (code, v) = call(
                &http,
                reqwest::Method::POST,
                &format!("{agents}/{agent}/disconnect"),
                Some(&admin),
                None,
            )
            .await;
            assert_eq!(code, 200, "{v}");
            back_to(&server, baseline, &format!("disconnecting {agent}")).await;
        }

        // A linked account that sent a message, disconnected.
        let bob = "15559200009";
        sim.set_devices(bob, 1).unwrap();
        let linked = format!("{agents}/linked");
        link(&sim, &http, &admin, &linked, "15559200001").await;
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{linked}/send"),
            Some(&admin),
            Some(json!({ "to": bob, "message": "before leaving" })),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        let (code, _) = call(
            &http,
            reqwest::Method::POST,
            &format!("{linked}/disconnect"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(code, 200);
        back_to(&server, baseline, "disconnecting a linked account").await;

        // The phone unlinks the device: the session ends by itself, and the status still
        // tells how.
        let unlinked = format!("{agents}/unlinked");
        link(&sim, &http, &admin, &unlinked, "15559200002").await;
        sim.fault("15559200002", Fault::Unlink).await;
        back_to(&server, baseline, "the phone unlinking").await;
        let (_, v) = call(
            &http,
            reqwest::Method::GET,
            &format!("{unlinked}/status"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(v["data"]["status"], json!("disconnected"), "{v}");
        assert_eq!(v["data"]["code"], json!("logged_out"), "{v}");
        assert_eq!(v["data"]["isActive"], json!(false), "{v}");

        // Removed while linked.
        let removed = format!("{agents}/removed");
        link(&sim, &http, &admin, &removed, "15559200003").await;
        let (code, v) = call(&http, reqwest::Method::DELETE, &removed, Some(&admin), None).await;
        assert_eq!(code, 200, "{v}");
        back_to(&server, baseline, "removing a linked agent").await;
        server.stop().await;
    })
    .await
    .expect("in time");
}
