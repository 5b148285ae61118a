//! The client run loop against the simulator over loopback: a new device shows QR codes, a
//! simulated phone scans, the client verifies, stores its credentials in SQLite, restarts (515)
//! and logs in; a new client over the same database logs in with no QR.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use wa_gateway::client::Events;
use wa_gateway::client::payload::ClientProfile;
use wa_gateway::client::qr::qr_data_url;
use wa_gateway::client::reconnect::Backoff;
use wa_gateway::client::{Client, ClientOptions, ConnState, CredsStore, Event, Keepalive};
use wa_gateway::config::Config;
use wa_gateway::sim::Simulator;
use wa_gateway::socket::framing::MAX_FRAME;
use wa_gateway::socket::{ClientConfig, TrustRoot};
use wa_gateway::store::Store;
use wa_gateway::util::clock::SystemClock;

fn options(sim: &Simulator, trust: TrustRoot) -> ClientOptions {
    ClientOptions {
        socket: ClientConfig {
            url: sim.ws_url().to_owned(),
            trust,
            clock: Arc::new(SystemClock),
            max_frame: MAX_FRAME,
            tls: None,
        },
        profile: ClientProfile::default(),
        backoff: Backoff::default(),
        keepalive: Keepalive::default(),
        messaging: Default::default(),
        label: String::new(),
    }
}

async fn next_event(rx: &mut Events, pred: impl Fn(&Event) -> bool) -> Event {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("event in time")
            .expect("client alive");
        if pred(&e) {
            return e;
        }
    }
}

#[tokio::test]
async fn new_device_pairs_and_a_restart_logs_in_without_qr() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let trust = TrustRoot::from_key(sim.root_public_key());
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("wa.db").display());
        let store = Store::open(&url).await.unwrap();
        let account = store.account("sub-1", "agent-1").await.unwrap();
        let creds = Arc::new(store.creds(account));

        let (client, mut events) = Client::start(options(&sim, trust.clone()), creds.clone());
        let Event::QrCode { code, valid_for } =
            next_event(&mut events, |e| matches!(e, Event::QrCode { .. })).await
        else {
            unreachable!()
        };
        assert_eq!(valid_for, Duration::from_secs(60));
        assert_eq!(client.state(), ConnState::AwaitingPair);
        // Documented format: prefix, ref, three base64 keys, platform.
        let body = code
            .strip_prefix("https://wa.me/settings/linked_devices#")
            .expect("prefix");
        let fields: Vec<&str> = body.split(',').collect();
        assert_eq!(fields.len(), 5);
        assert!(fields[0].starts_with("2@"));
        for f in &fields[1..4] {
            assert_eq!(
                base64::engine::general_purpose::STANDARD
                    .decode(f)
                    .unwrap()
                    .len(),
                32
            );
        }
        assert_eq!(
            crate::common::decode_png_data_url(&qr_data_url(&code).unwrap()),
            code
        );

        let jid = sim
            .scan("15550001234", &code, Some("Alice"), Some("android"))
            .await
            .unwrap();
        let Event::PairSuccess(linked) =
            next_event(&mut events, |e| matches!(e, Event::PairSuccess(_))).await
        else {
            unreachable!()
        };
        assert_eq!(
            (linked.jid.clone(), linked.platform.as_deref()),
            (jid.clone(), Some("android"))
        );
        let Event::Connected { jid: connected } =
            next_event(&mut events, |e| matches!(e, Event::Connected { .. })).await
        else {
            unreachable!()
        };
        assert_eq!(connected, jid);
        assert_eq!(
            client.wait_for(|s| *s == ConnState::Connected).await,
            ConnState::Connected
        );
        // The phone greets its new companion over Signal; the server's `notify` carries the
        // push name, which the client stores before it answers with the receipt.
        let Event::PushName { name } =
            next_event(&mut events, |e| matches!(e, Event::PushName { .. })).await
        else {
            unreachable!()
        };
        assert_eq!(name, "Alice");
        let stored = creds.load().await.unwrap().unwrap();
        let me = stored.me.expect("paired credentials stored");
        assert_eq!(me.jid.user, "15550001234");
        assert_eq!(me.platform.as_deref(), Some("android"));
        assert_eq!(me.push_name.as_deref(), Some("Alice"));
        // The phone's first messages (setting, history bootstrap, app-state key share) were
        // all decrypted.
        // The bootstrap also gets its `hist_sync` receipt.
        let receipts = receipts(&sim, &jid, 4).await;
        let peer: Vec<&String> = receipts
            .iter()
            .filter(|r| r.1.as_deref() == Some("peer_msg"))
            .map(|r| &r.0)
            .collect();
        assert_eq!(peer.len(), 3, "{receipts:?}");
        assert!(
            receipts
                .iter()
                .any(|r| r.1.as_deref() == Some("hist_sync") && peer.contains(&&r.0)),
            "{receipts:?}"
        );
        client.stop();
        drop(client);

        // A new client over the same database (a restart of the service) logs in with no QR.
        let store2 = Store::open(&url).await.unwrap();
        let creds2 = Arc::new(store2.creds(store2.account("sub-1", "agent-1").await.unwrap()));
        let (_client2, mut events2) = Client::start(options(&sim, trust), creds2);
        let first_interesting = next_event(&mut events2, |e| {
            matches!(e, Event::QrCode { .. } | Event::Connected { .. })
        })
        .await;
        assert!(
            matches!(first_interesting, Event::Connected { .. }),
            "{first_interesting:?}"
        );
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn whatsapp_root_key_refuses_the_simulator() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let creds = Arc::new(wa_gateway::client::MemoryCreds::default());
    let (client, _events) = Client::start(options(&sim, TrustRoot::default()), creds);
    let s = tokio::time::timeout(
        Duration::from_secs(15),
        client.wait_for(|s| matches!(s, ConnState::Disconnected { .. })),
    )
    .await
    .unwrap();
    let ConnState::Disconnected { reason, .. } = s else {
        unreachable!()
    };
    assert!(
        reason.contains("not issued by the trusted root"),
        "{reason}"
    );
}

/// Waits until the device `jid` has sent `n` receipts (the phone's messages it decrypted); they
/// must be exactly `n`.
async fn receipts(
    sim: &Simulator,
    jid: &wa_gateway::binary::Jid,
    n: usize,
) -> Vec<(String, Option<String>)> {
    for _ in 0..200 {
        if sim.receipts(jid).len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = sim.receipts(jid);
    assert_eq!(r.len(), n, "{r:?}");
    r
}

/// A client paired with phone `number`, connected, with fast backoff and keepalive for tests
/// (`sim_cdn` uses it too).
pub(super) async fn paired(
    sim: &Simulator,
    number: &str,
) -> (Client, Events, Arc<wa_gateway::client::MemoryCreds>) {
    let creds = Arc::new(wa_gateway::client::MemoryCreds::default());
    let mut opts = options(sim, TrustRoot::from_key(sim.root_public_key()));
    opts.backoff = Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(5),
        Duration::from_secs(5),
        Duration::from_secs(60),
    );
    // Short enough to test silent pings quickly, long enough that a loaded CI machine never
    // misses a deadline by accident.
    opts.keepalive = Keepalive {
        min_interval: Duration::from_millis(500),
        max_interval: Duration::from_millis(800),
        deadline: Duration::from_millis(1500),
    };
    let (client, mut events) = Client::start(opts, creds.clone());
    let Event::QrCode { code, .. } =
        next_event(&mut events, |e| matches!(e, Event::QrCode { .. })).await
    else {
        unreachable!()
    };
    sim.scan(number, &code, None, None).await.unwrap();
    client.wait_for(|s| *s == ConnState::Connected).await;
    (client, events, creds)
}

/// The `retry_in` of the next Disconnected state, then waits for Connected again; the
/// reconnection must not come before the announced delay (backoff visible in the timestamps).
async fn drop_and_reconnect(events: &mut Events) -> Duration {
    let Event::State(ConnState::Disconnected { retry_in, .. }) = next_event(events, |e| {
        matches!(e, Event::State(ConnState::Disconnected { .. }))
    })
    .await
    else {
        unreachable!()
    };
    let down = std::time::Instant::now();
    next_event(events, |e| matches!(e, Event::Connected { .. })).await;
    let took = down.elapsed();
    assert!(
        took >= retry_in,
        "reconnected after {took:?}, announced {retry_in:?}"
    );
    retry_in
}

#[tokio::test]
async fn drops_and_silent_pings_reconnect_with_growing_backoff() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (_client, mut events, _) = paired(&sim, "15550002222").await;
        let mut delays = Vec::new();
        for _ in 0..3 {
            assert_eq!(
                sim.fault("15550002222", wa_gateway::sim::Fault::Drop).await,
                1
            );
            delays.push(drop_and_reconnect(&mut events).await);
        }
        // 100 ms doubling, with equal jitter: each step lies in [d/2, d] of a doubled d.
        assert!(delays[0] <= Duration::from_millis(100), "{delays:?}");
        assert!(
            delays[1] >= Duration::from_millis(100) && delays[1] <= Duration::from_millis(200),
            "{delays:?}"
        );
        assert!(
            delays[2] >= Duration::from_millis(200) && delays[2] <= Duration::from_millis(400),
            "{delays:?}"
        );

        // The server stops answering pings: the keepalive deadline forces a reconnect.
        sim.fault("15550002222", wa_gateway::sim::Fault::AnswerPings(false))
            .await;
        let Event::State(ConnState::Disconnected { reason, .. }) = next_event(&mut events, |e| {
            matches!(e, Event::State(ConnState::Disconnected { .. }))
        })
        .await
        else {
            unreachable!()
        };
        assert!(reason.contains("keepalive"), "{reason}");
        next_event(&mut events, |e| matches!(e, Event::Connected { .. })).await;

        // A 503 stream error is transient too.
        sim.fault(
            "15550002222",
            wa_gateway::sim::Fault::StreamError {
                code: Some(503),
                conflict: None,
            },
        )
        .await;
        drop_and_reconnect(&mut events).await;
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn device_removed_logs_out_wipes_keys_and_stops() {
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (client, _events, creds) = paired(&sim, "15550003333").await;
        assert!(creds.load().await.unwrap().is_some());
        assert_eq!(
            sim.fault("15550003333", wa_gateway::sim::Fault::Unlink)
                .await,
            1
        );
        let s = client.wait_for(ConnState::is_final).await;
        assert!(matches!(s, ConnState::LoggedOut { .. }), "{s:?}");
        assert_eq!(s.code(), Some("logged_out"));
        assert!(creds.load().await.unwrap().is_none(), "keys wiped");
        assert!(sim.linked_devices("15550003333").is_empty());
        // Linking again gives a new device id (never reused) and a fresh Signal session.
        let (again, _events, creds2) = paired(&sim, "15550003333").await;
        let jid = creds2.load().await.unwrap().unwrap().me.unwrap().jid;
        // 1 is the user's simulated companion, 2 was the first link.
        assert_eq!(jid.device, 3);
        receipts(&sim, &jid, 4).await;
        drop(again);
        (client, sim)
    })
    .await
    .expect("finished in time");
    // A minute of test time passes on the paused clock: any reconnect timer would fire.
    let (client, sim) = outcome;
    let before = sim.connections_accepted();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(61)).await;
    tokio::time::resume();
    // Give an attempt, had one been scheduled, real time to reach the simulator.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.connections_accepted(), before, "no connection attempt");
    assert!(matches!(client.state(), ConnState::LoggedOut { .. }));
}

#[tokio::test]
async fn qr_codes_rotate_on_the_reference_timing_then_time_out() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let creds = Arc::new(wa_gateway::client::MemoryCreds::default());
    let (client, mut events) = Client::start(
        options(&sim, TrustRoot::from_key(sim.root_public_key())),
        creds.clone(),
    );
    let Event::QrCode { code, valid_for } =
        next_event(&mut events, |e| matches!(e, Event::QrCode { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(valid_for, Duration::from_secs(60));
    // Nobody scans; the paused clock runs the 60 + 5 × 20 s of refs in an instant.
    tokio::time::pause();
    let mut last = tokio::time::Instant::now();
    let mut codes = vec![code];
    let mut gaps = Vec::new();
    while let Some(e) = events.recv().await {
        match e {
            Event::QrCode { code, valid_for } => {
                assert_eq!(valid_for, Duration::from_secs(20));
                gaps.push(last.elapsed().as_secs());
                last = tokio::time::Instant::now();
                codes.push(code);
            }
            Event::State(s) if s.is_final() => {
                assert_eq!(s, ConnState::QrTimeout);
                gaps.push(last.elapsed().as_secs());
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        gaps,
        [60, 20, 20, 20, 20, 20],
        "each code shown for its time"
    );
    let refs: std::collections::HashSet<_> = codes
        .iter()
        .map(|c| c.split(',').next().unwrap().to_owned())
        .collect();
    assert_eq!(refs.len(), 6, "six distinct refs, one per code");
    assert_eq!(client.state(), ConnState::QrTimeout);
    assert!(creds.load().await.unwrap().unwrap().me.is_none());
    let accepted = sim.connections_accepted();
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(
        sim.connections_accepted(),
        accepted,
        "qr_timeout does not reconnect"
    );
    assert_eq!(
        client.wait_for(ConnState::is_final).await,
        ConnState::QrTimeout
    );
}

#[tokio::test]
async fn iq_queries_get_answers_errors_timeouts_and_disconnects() {
    use wa_gateway::binary::Node;
    use wa_gateway::client::IqError;
    tokio::time::timeout(Duration::from_secs(30), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (client, mut events, _) = paired(&sim, "15550009999").await;
        let t = Duration::from_secs(5);
        let props = client
            .query(
                Node::new("iq")
                    .attr("xmlns", "abt")
                    .attr("type", "get")
                    .children(vec![Node::new("props").attr("protocol", "1")]),
                t,
            )
            .await
            .unwrap();
        assert_eq!(props.get_str("type").as_deref(), Some("result"));
        assert!(props.child("props").is_some(), "{props}");
        let unknown = client
            .query(
                Node::new("iq")
                    .attr("xmlns", "w:nonexistent")
                    .attr("type", "get"),
                t,
            )
            .await;
        assert_eq!(
            unknown,
            Err(IqError::Server {
                code: 501,
                text: "feature-not-implemented".into()
            })
        );
        // Pings go unanswered: a query on that namespace times out and leaves nothing waiting.
        sim.fault("15550009999", wa_gateway::sim::Fault::AnswerPings(false))
            .await;
        let short = Duration::from_millis(200);
        let ping = client
            .query(
                Node::new("iq").attr("xmlns", "w:p").attr("type", "get"),
                short,
            )
            .await;
        assert_eq!(ping, Err(IqError::Timeout(short)));
        // The keepalive then gives up on the connection.
        next_event(&mut events, |e| {
            matches!(e, Event::State(ConnState::Disconnected { .. }))
        })
        .await;
        // A query in flight when the connection ends fails at once, not at its timeout.
        next_event(&mut events, |e| matches!(e, Event::Connected { .. })).await;
        sim.fault("15550009999", wa_gateway::sim::Fault::AnswerPings(false))
            .await;
        let long = Duration::from_secs(20);
        let started = std::time::Instant::now();
        let (in_flight, _) = tokio::join!(
            client.query(
                Node::new("iq").attr("xmlns", "w:p").attr("type", "get"),
                long
            ),
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                sim.fault("15550009999", wa_gateway::sim::Fault::Drop).await
            }
        );
        assert_eq!(in_flight, Err(IqError::Disconnected));
        assert!(started.elapsed() < Duration::from_secs(5));
        // With no connection at all, a query fails immediately.
        client.stop();
        let client = client;
        client.wait_for(ConnState::is_final).await;
        let down = client
            .query(Node::new("iq").attr("xmlns", "abt").attr("type", "get"), t)
            .await;
        assert_eq!(down, Err(IqError::Disconnected));
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn client_outdated_stops_without_a_reconnect_storm() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (client, mut events, creds) = paired(&sim, "15550004444").await;
        // Keep the event channel drained, as the service layer does.
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        sim.set_min_version(Some([2, 3000, u32::MAX]));
        let before = sim.connections_accepted();
        sim.fault("15550004444", wa_gateway::sim::Fault::Drop).await;
        let s = client.wait_for(ConnState::is_final).await;
        let ConnState::ClientOutdated { message } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(s.name(), "client_outdated");
        // The message names the version refused and the setting that fixes it.
        assert!(message.contains("WA_GATEWAY_WA_VERSION"), "{message}");
        assert!(
            message.contains(&ClientProfile::default().version_string()),
            "{message}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            sim.connections_accepted(),
            before + 1,
            "one attempt, then stop"
        );
        assert!(creds.load().await.unwrap().is_some(), "credentials kept");
        drop(client);

        // The operator raises the setting: the same credentials log in again.
        let config = Config::from_lookup(|k| {
            (k == "WA_GATEWAY_WA_VERSION").then(|| format!("2.3000.{}", u32::MAX))
        })
        .unwrap();
        let mut opts = options(&sim, TrustRoot::from_key(sim.root_public_key()));
        opts.profile = config.whatsapp.profile();
        let (client, _events) = Client::start(opts, creds);
        assert_eq!(
            client
                .wait_for(|s| *s == ConnState::Connected || s.is_final())
                .await,
            ConnState::Connected
        );
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn a_replaced_connection_stops_but_keeps_the_link() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (client, _events, creds) = paired(&sim, "15550005555").await;
        sim.fault(
            "15550005555",
            wa_gateway::sim::Fault::StreamError {
                code: None,
                conflict: Some("replaced".into()),
            },
        )
        .await;
        assert_eq!(
            client.wait_for(ConnState::is_final).await,
            ConnState::Replaced
        );
        assert!(creds.load().await.unwrap().is_some());

        // For real: a second process logs in with the same credentials; the server tells the
        // first connection it was replaced.
        let opts = options(&sim, TrustRoot::from_key(sim.root_public_key()));
        let (first, _e1) = Client::start(opts.clone(), creds.clone());
        first.wait_for(|s| *s == ConnState::Connected).await;
        let (second, _e2) = Client::start(opts, creds.clone());
        second.wait_for(|s| *s == ConnState::Connected).await;
        assert_eq!(
            first.wait_for(ConnState::is_final).await,
            ConnState::Replaced
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(second.state(), ConnState::Connected, "the newer one stays");
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn tampered_pair_success_is_refused_and_nothing_is_stored() {
    use wa_gateway::sim::pair::Tamper;
    tokio::time::timeout(Duration::from_secs(30), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        for (tamper, expected) in [
            (Tamper::Hmac, "HMAC"),
            (Tamper::AccountSignature, "account signature"),
        ] {
            let creds = Arc::new(wa_gateway::client::MemoryCreds::default());
            let (client, mut events) = Client::start(
                options(&sim, TrustRoot::from_key(sim.root_public_key())),
                creds.clone(),
            );
            let Event::QrCode { code, .. } =
                next_event(&mut events, |e| matches!(e, Event::QrCode { .. })).await
            else {
                unreachable!()
            };
            sim.tamper_next_pair_success(tamper);
            let err = sim
                .scan("15550007777", &code, None, None)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("refused"), "{err}");
            let Event::PairError { reason } =
                next_event(&mut events, |e| matches!(e, Event::PairError { .. })).await
            else {
                unreachable!()
            };
            assert!(reason.contains(expected), "{reason}");
            assert!(
                creds.load().await.unwrap().unwrap().me.is_none(),
                "nothing stored"
            );
            assert_eq!(client.state(), ConnState::AwaitingPair);
            assert!(sim.linked_devices("15550007777").is_empty());
        }
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn prekeys_are_uploaded_after_the_first_login_and_not_again() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (_client, mut events, creds) = paired(&sim, "15550008888").await;
        let jid = creds.load().await.unwrap().unwrap().me.unwrap().jid;
        // 812 keys go up right after login; the phone then opens its session with one of them,
        // which both the server and the client consume. Poll the simulator briefly.
        for _ in 0..100 {
            if sim.uploaded_pre_keys(&jid) == 811 && creds.pre_key_count() == 811 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(sim.uploaded_pre_keys(&jid), 811);
        assert_eq!(
            creds.pre_key_count(),
            811,
            "stored before uploading, one consumed"
        );
        receipts(&sim, &jid, 4).await;
        // After a reconnect the server still holds enough: nothing more is uploaded.
        sim.fault("15550008888", wa_gateway::sim::Fault::Drop).await;
        drop_and_reconnect(&mut events).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sim.uploaded_pre_keys(&jid), 811);
        assert_eq!(creds.pre_key_count(), 811);
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn a_rate_limited_connection_waits_out_the_penalty() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        // `paired` uses a 100 ms base delay and a 5 s rate-limit penalty.
        let (_client, mut events, _) = paired(&sim, "15550006060").await;
        sim.fault(
            "15550006060",
            wa_gateway::sim::Fault::StreamError {
                code: Some(429),
                conflict: None,
            },
        )
        .await;
        let Event::State(ConnState::Disconnected {
            code,
            reason,
            retry_in,
        }) = next_event(&mut events, |e| {
            matches!(e, Event::State(ConnState::Disconnected { .. }))
        })
        .await
        else {
            unreachable!()
        };
        assert!(reason.contains("429"), "{reason}");
        assert_eq!(code, "rate_limited");
        assert!(retry_in >= Duration::from_secs(5), "{retry_in:?}");
        let accepted = sim.connections_accepted();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(sim.connections_accepted(), accepted, "no early retry");
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn a_local_error_keeps_the_link_and_only_the_server_wipes_it() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (client, _events, creds) = paired(&sim, "15550006666").await;
        client.stop();
        drop(client);
        // Our stored JID becomes unusable for a login (its user no longer fits a u64): the
        // client stops in a local error state and wipes nothing.
        let mut broken = creds.load().await.unwrap().unwrap();
        let good = broken.clone();
        broken.me.as_mut().unwrap().jid.user = "999999999999999999999".into();
        creds.save(&broken).await.unwrap();
        let opts = options(&sim, TrustRoot::from_key(sim.root_public_key()));
        let (client, _e) = Client::start(opts.clone(), creds.clone());
        let state = client.wait_for(ConnState::is_final).await;
        assert_eq!(state.name(), "local_error", "{state:?}");
        let kept = creds.load().await.unwrap().expect("credentials kept");
        assert_eq!(kept.identity.public, good.identity.public);
        assert_eq!(kept.me.unwrap().jid.user, "999999999999999999999");
        drop(client);

        // Mended, the same keys log in again: nothing was lost.
        creds.save(&good).await.unwrap();
        let (client, _e) = Client::start(opts.clone(), creds.clone());
        assert_eq!(
            client
                .wait_for(|s| *s == ConnState::Connected || s.is_final())
                .await,
            ConnState::Connected
        );

        // The server's logout is the one thing that wipes.
        sim.fault("15550006666", wa_gateway::sim::Fault::Unlink)
            .await;
        let state = client.wait_for(ConnState::is_final).await;
        assert_eq!(state.name(), "logged_out");
        assert!(creds.load().await.unwrap().is_none(), "wiped on logout");
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn phone_numbers_outside_e164_are_refused_by_the_simulator() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    for bad in ["", "12345678901234567890", "1555abc", "1234567890123456"] {
        let err = sim.scan(bad, "2@x,AA,AA,AA", None, None).await.unwrap_err();
        assert!(
            matches!(err, wa_gateway::sim::SimError::BadNumber),
            "{bad:?}: {err}"
        );
    }
}

#[tokio::test]
async fn over_wss_the_client_pairs_logs_in_and_reconnects_trusting_only_the_configured_ca() {
    use wa_gateway::socket::tls::{client_config, parse_ca_pem};
    tokio::time::timeout(Duration::from_secs(60), async {
        let sim = Simulator::start_tls("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        assert!(
            sim.ws_url().starts_with("wss://127.0.0.1:"),
            "{}",
            sim.ws_url()
        );
        let pem = sim.ca_cert_pem().expect("a CA for wss");

        // Through the configuration, as the service reads it.
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, pem).unwrap();
        let config = Config::from_lookup(|k| match k {
            "WA_GATEWAY_WS_CA" => Some(ca_path.display().to_string()),
            _ => None,
        })
        .unwrap();
        let mut opts = options(&sim, TrustRoot::from_key(sim.root_public_key()));
        opts.socket.tls = config.whatsapp.tls().unwrap();
        assert!(opts.socket.tls.is_some());
        opts.backoff = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
            Duration::from_secs(2),
            Duration::from_secs(60),
        );
        let creds = Arc::new(wa_gateway::client::MemoryCreds::default());
        let (client, mut events) = Client::start(opts.clone(), creds.clone());
        let Event::QrCode { code, .. } =
            next_event(&mut events, |e| matches!(e, Event::QrCode { .. })).await
        else {
            unreachable!()
        };
        sim.scan("15550009999", &code, None, None).await.unwrap();
        client.wait_for(|s| *s == ConnState::Connected).await;
        // A dropped connection comes back over TLS without a QR.
        sim.fault("15550009999", wa_gateway::sim::Fault::Drop).await;
        drop_and_reconnect(&mut events).await;
        assert_eq!(client.state(), ConnState::Connected);
        drop(client);

        // Without the simulator's CA (webpki roots only) the TLS handshake fails: no login.
        let mut untrusting = opts.clone();
        untrusting.socket.tls = None;
        let (client, mut events) = Client::start(untrusting, creds.clone());
        let Event::State(ConnState::Disconnected { reason, .. }) = next_event(&mut events, |e| {
            matches!(e, Event::State(ConnState::Disconnected { .. }))
        })
        .await
        else {
            unreachable!()
        };
        assert!(reason.to_lowercase().contains("certificate"), "{reason}");
        assert_ne!(client.state(), ConnState::Connected);

        // Another CA is no better.
        let other = Simulator::start_tls("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut wrong = opts.clone();
        wrong.socket.tls = Some(
            client_config(&parse_ca_pem(other.ca_cert_pem().unwrap().as_bytes()).unwrap()).unwrap(),
        );
        let (client, mut events) = Client::start(wrong, creds.clone());
        next_event(&mut events, |e| {
            matches!(e, Event::State(ConnState::Disconnected { .. }))
        })
        .await;
        assert_ne!(client.state(), ConnState::Connected);
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn a_ref_is_forgotten_when_its_window_ends_and_the_next_one_still_scans() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let creds = Arc::new(wa_gateway::client::MemoryCreds::default());
    let (client, mut events) = Client::start(
        options(&sim, TrustRoot::from_key(sim.root_public_key())),
        creds.clone(),
    );
    let Event::QrCode { code: first, .. } =
        next_event(&mut events, |e| matches!(e, Event::QrCode { .. })).await
    else {
        unreachable!()
    };
    // The paused clock runs to the second code (60 s), then past the first ref's window and
    // its grace (65 s): the server no longer holds the first ref.
    tokio::time::pause();
    let second = loop {
        // No timeout here: with the clock paused it would fire before the 60 s code.
        if let Event::QrCode { code, .. } = events.recv().await.expect("client alive") {
            break code;
        }
    };
    tokio::time::advance(Duration::from_secs(6)).await;
    // Let the simulator's connection task run its expired timer.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let err = sim
        .scan("15550004444", &first, None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, wa_gateway::sim::SimError::UnknownRef),
        "{err}"
    );
    let jid = sim.scan("15550004444", &second, None, None).await.unwrap();
    assert_eq!(jid.user, "15550004444");
    client.wait_for(|s| *s == ConnState::Connected).await;
}
