//! Client ↔ responder over a real loopback WebSocket: handshake, then 1,000 nodes each way.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use wa_gateway::binary::{Jid, Node};
use wa_gateway::signal::KeyPair;
use wa_gateway::socket::framing::MAX_FRAME;
use wa_gateway::socket::{
    CertError, ClientConfig, HandshakeError, Incoming, ServerIdentity, SocketError, TrustRoot,
    accept, connect,
};
use wa_gateway::util::clock::SystemClock;

fn node(i: usize) -> Node {
    Node::new("message")
        .attr("id", format!("3EB0{i:08X}"))
        .attr(
            "to",
            Jid::with_device(
                "15551234567",
                (i % 5) as u16,
                wa_gateway::binary::Server::User,
            ),
        )
        .children(vec![
            Node::new("enc")
                .attr("v", "2")
                .attr("type", "msg")
                .bytes(vec![i as u8; i % 700]),
        ])
}

async fn server(
    identity: ServerIdentity,
) -> (
    String,
    tokio::task::JoinHandle<Result<wa_gateway::socket::Accepted, SocketError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws/chat", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(tcp, &identity, MAX_FRAME).await
    });
    (url, task)
}

fn config(url: String, trust: TrustRoot) -> ClientConfig {
    ClientConfig {
        url,
        trust,
        clock: Arc::new(SystemClock),
        max_frame: MAX_FRAME,
        tls: None,
    }
}

async fn next_node(rx: &mut tokio::sync::mpsc::Receiver<Incoming>) -> Node {
    match rx.recv().await {
        Some(Incoming::Node(n)) => *n,
        other => panic!("expected a node, got {other:?}"),
    }
}

#[tokio::test]
async fn handshake_then_a_thousand_nodes_each_way() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let identity = ServerIdentity::generate(SystemClock.now(), 86_400);
        let trust = identity.trust_root();
        let (url, server_task) = server(identity).await;
        let client_key = KeyPair::generate();
        let (mut client, chain) =
            connect(&config(url, trust), client_key.clone(), b"client payload")
                .await
                .unwrap();
        assert_eq!(chain.leaf_serial, 2);
        let mut srv = server_task.await.unwrap().unwrap();
        assert_eq!(srv.client_static, client_key.public);
        assert_eq!(srv.payload, b"client payload");

        let sender = client.sender.clone();
        let sends = tokio::spawn(async move {
            for i in 0..1000 {
                sender.send(&node(i)).await.unwrap();
            }
        });
        let srv_sender = srv.socket.sender.clone();
        let srv_sends = tokio::spawn(async move {
            for i in 0..1000 {
                srv_sender.send(&node(i + 5000)).await.unwrap();
            }
        });
        for i in 0..1000 {
            assert_eq!(next_node(&mut srv.socket.incoming).await, node(i));
            assert_eq!(next_node(&mut client.incoming).await, node(i + 5000));
        }
        sends.await.unwrap();
        srv_sends.await.unwrap();

        // Dropping the client's senders closes the socket; the server sees a clean close.
        drop(client.sender);
        match srv.socket.incoming.recv().await {
            Some(Incoming::Closed(_)) => {}
            other => panic!("expected close, got {other:?}"),
        }
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn whatsapp_root_refuses_a_foreign_server() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let identity = ServerIdentity::generate(SystemClock.now(), 86_400);
        let (url, _server_task) = server(identity).await;
        let err = connect(
            &config(url, TrustRoot::default()),
            KeyPair::generate(),
            b"x",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                SocketError::Handshake(HandshakeError::Cert(CertError::UntrustedRoot))
            ),
            "{err}"
        );
    })
    .await
    .expect("test finished in time");
}

trait Now {
    fn now(&self) -> u64;
}

impl Now for SystemClock {
    fn now(&self) -> u64 {
        wa_gateway::util::clock::Clock::now_unix(self)
    }
}
