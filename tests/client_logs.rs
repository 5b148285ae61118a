//! A client's log lines, in a test binary of their own: tracing caches per-callsite interest
//! process-wide, so a subscriber set by one test of a shared binary may miss events first hit
//! by another (seen on CI: nothing captured). Here one global subscriber sees everything.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::reconnect::Backoff;
use wa_gateway::client::{Client, ClientOptions, ConnState, Event, Keepalive};
use wa_gateway::sim::Simulator;
use wa_gateway::socket::framing::MAX_FRAME;
use wa_gateway::socket::{ClientConfig, TrustRoot};
use wa_gateway::store::Store;
use wa_gateway::util::clock::SystemClock;

const LIMIT: Duration = Duration::from_secs(60);

fn options(sim: &Simulator) -> ClientOptions {
    ClientOptions {
        socket: ClientConfig {
            url: sim.ws_url().to_owned(),
            trust: TrustRoot::from_key(sim.root_public_key()),
            clock: Arc::new(SystemClock),
            max_frame: MAX_FRAME,
            tls: None,
        },
        profile: Default::default(),
        backoff: Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(500),
            Duration::from_millis(500),
            Duration::from_secs(60),
        ),
        keepalive: Keepalive::default(),
        messaging: Default::default(),
        label: String::new(),
    }
}

async fn next_event(rx: &mut wa_gateway::client::Events, pred: impl Fn(&Event) -> bool) -> Event {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("event in time")
            .expect("client alive");
        if pred(&e) {
            return e;
        }
    }
}

/// Log lines written by the test's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_log_line_of_a_client_names_its_account() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("wa_gateway::client=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("wa.db").display());
        let store = Store::open(&url).await.unwrap();
        let creds = Arc::new(store.creds(store.account("sub", "agent").await.unwrap()));
        let (me, bob) = ("15550100000", "15550101000");
        sim.set_devices(bob, 1).unwrap();
        let mut opts = options(&sim);
        opts.label = "sub-7/agent-3".into();
        let (client, mut events) = Client::start(opts, creds.clone());
        let Event::QrCode { code, .. } =
            next_event(&mut events, |e| matches!(e, Event::QrCode { .. })).await
        else {
            unreachable!()
        };
        let jid = sim.scan(me, &code, None, None).await.unwrap();
        client.wait_for(|s| *s == ConnState::Connected).await;
        // Sending logs from the messenger (debug), learning bob's LID too.
        client
            .send_text(&Jid::new(bob, Server::User), "log me")
            .await
            .unwrap();
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("wa_gateway::client"))
            .collect();
        assert!(lines.len() >= 2, "{text}");
        for l in &lines {
            assert!(l.contains("account=sub-7/agent-3"), "{l}");
        }
        // Bob's LID is learned inside the send call (the caller's task): it logs under the
        // client's span, with our JID.
        let bob_lid = sim.lid_of(bob).unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("jid={jid}")) && l.contains(&bob_lid)),
            "{text}"
        );
        // The QR code (a pairing secret) never reached a log line.
        assert!(!text.contains(&code));
    })
    .await
    .expect("in time");
}
