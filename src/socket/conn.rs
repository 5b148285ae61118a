//! The one adapter between the sans-IO protocol cores and the network: WebSocket connect/accept,
//! the Noise handshake over it, then one reader task and one writer task per connection. The
//! writer alone owns the sending counter and the reader the receiving one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::cert::{ServerIdentity, TrustRoot, VerifiedChain};
use super::error::{FramingError, SocketError};
use super::framing::{FrameDecoder, MAX_FRAME, MAX_HANDSHAKE_FRAME, write_frame};
use super::noise::{CONN_HEADER, CipherState, Initiator, Responder};
use crate::binary::{Node, decode_frame, encode_frame};
use crate::signal::KeyPair;
use crate::util::clock::Clock;

/// Origin the references send.
pub const ORIGIN: &str = "https://web.whatsapp.com";
/// Handshake response timeout (20 s in all three references).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Outgoing queue depth per connection.
const OUTBOX: usize = 64;

/// Largest WebSocket frame a server accepts from a client. tungstenite reserves a frame's
/// announced length before its bytes arrive, so this bounds what an unauthenticated client can
/// make the server reserve; clients send their frames one per WebSocket frame, far below it.
const MAX_CLIENT_WS_FRAME: usize = 1 << 20;

/// Small WebSocket buffers: tungstenite's default keeps a 128 KiB read buffer per connection,
/// which would dominate the memory of an idle session.
fn ws_config(max_ws_frame: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_FRAME + 4096))
        .max_frame_size(Some(max_ws_frame))
}

/// How to reach and authenticate the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `wss://…` (WhatsApp) or `ws://127.0.0.1:…` (the simulator).
    pub url: String,
    /// The root key the server's certificate chain must lead to.
    pub trust: TrustRoot,
    /// Source of "now" for certificate validity.
    pub clock: Arc<dyn Clock>,
    /// Largest frame accepted from the server.
    pub max_frame: usize,
    /// TLS trust for `wss://` (None: the webpki roots alone, which WhatsApp's chain uses); see
    /// [`super::tls::client_config`] to add a CA.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// What the reader task reports. Every variant is one pointer wide: the queue's first block of
/// 32 slots is allocated with the connection and kept while it idles (40-byte slots held
/// 1.3 KB per connection, 16-byte ones 0.5 KB).
#[derive(Debug)]
pub enum Incoming {
    /// A decoded node.
    Node(Box<Node>),
    /// A frame that decrypted but is not a valid node: reported, and the connection goes on.
    Malformed(Box<crate::binary::DecodeError>),
    /// The connection ended (cleanly with `None`).
    Closed(Option<Box<SocketError>>),
}

/// Sends nodes on a connection; cheap to clone. Dropping every clone closes the socket.
#[derive(Debug, Clone)]
pub struct NodeSender {
    tx: mpsc::Sender<Vec<u8>>,
}

impl NodeSender {
    /// Encodes `node` and queues it; errors if it cannot be encoded or the socket is gone.
    pub async fn send(&self, node: &Node) -> Result<(), SocketError> {
        let payload = encode_frame(node)?;
        self.send_payload(payload).await
    }

    /// Queues an already encoded payload (flags byte + node). A payload that cannot fit one
    /// frame is refused here, before anything is written, and the connection goes on.
    pub async fn send_payload(&self, payload: Vec<u8>) -> Result<(), SocketError> {
        let len = payload.len() + super::noise::TAG_LEN;
        if len > MAX_FRAME {
            return Err(FramingError::TooLarge {
                len,
                max: MAX_FRAME,
            }
            .into());
        }
        self.tx.send(payload).await.map_err(|_| SocketError::Closed)
    }

    /// True once the writer has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// An established, encrypted connection.
#[derive(Debug)]
pub struct NoiseSocket {
    /// Sends nodes.
    pub sender: NodeSender,
    /// Receives nodes and the close event.
    pub incoming: mpsc::Receiver<Incoming>,
}

/// Reads WebSocket messages into `dec` until a whole frame is available.
async fn read_frame<S>(
    ws: &mut WebSocketStream<S>,
    dec: &mut FrameDecoder,
) -> Result<Bytes, SocketError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        if let Some(f) = dec.next_frame()? {
            return Ok(f);
        }
        match ws.next().await {
            Some(Ok(WsMessage::Binary(b))) => dec.push(&b),
            Some(Ok(WsMessage::Close(_))) | None => return Err(SocketError::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

async fn with_timeout<T>(
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, SocketError>>,
) -> Result<T, SocketError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, f)
        .await
        .map_err(|_| SocketError::Timeout(what))?
}

/// Connects, runs the Noise handshake as initiator with our noise key `static_key`, sends
/// `payload` (a serialized ClientPayload) in the ClientFinish, and starts the pumps.
pub async fn connect(
    cfg: &ClientConfig,
    static_key: KeyPair,
    payload: &[u8],
) -> Result<(NoiseSocket, VerifiedChain), SocketError> {
    let mut req = cfg
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| SocketError::InvalidUrl(e.to_string()))?;
    req.headers_mut()
        .insert("Origin", HeaderValue::from_static(ORIGIN));
    let (mut ws, _) = with_timeout("connect", async {
        Ok(tokio_tungstenite::connect_async_tls_with_config(
            req,
            Some(ws_config(MAX_FRAME + 4096)),
            true,
            cfg.tls.clone().map(tokio_tungstenite::Connector::Rustls),
        )
        .await?)
    })
    .await?;

    let (state, hello) =
        Initiator::new(&CONN_HEADER, static_key, KeyPair::generate()).client_hello();
    let mut first = CONN_HEADER.to_vec();
    write_frame(&mut first, &hello)?;
    ws.send(WsMessage::Binary(first.into())).await?;

    let mut dec = FrameDecoder::new(MAX_HANDSHAKE_FRAME);
    let server_hello = with_timeout("handshake", read_frame(&mut ws, &mut dec)).await?;
    let state = state.read_server_hello(&server_hello, &cfg.trust, cfg.clock.now_unix())?;
    let chain = state.chain().clone();
    let (finish, cipher) = state.client_finish(payload);
    let mut out = Vec::with_capacity(finish.len() + 3);
    write_frame(&mut out, &finish)?;
    ws.send(WsMessage::Binary(out.into())).await?;
    dec.set_max(cfg.max_frame);
    Ok((spawn_pumps(ws, dec, cipher.send, cipher.recv), chain))
}

/// What the server side learns when a client connects.
#[derive(Debug)]
pub struct Accepted {
    /// The client's long-term noise public key.
    pub client_static: [u8; 32],
    /// The decrypted ClientPayload bytes.
    pub payload: Vec<u8>,
    /// The connection.
    pub socket: NoiseSocket,
}

/// Accepts a WebSocket client on `stream` and runs the handshake as responder with `identity`.
pub async fn accept<S>(
    stream: S,
    identity: &ServerIdentity,
    max_frame: usize,
) -> Result<Accepted, SocketError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut ws = with_timeout("accept", async {
        Ok(tokio_tungstenite::accept_async_with_config(
            stream,
            Some(ws_config(MAX_CLIENT_WS_FRAME)),
        )
        .await?)
    })
    .await?;
    let mut dec = FrameDecoder::with_intro(MAX_HANDSHAKE_FRAME, CONN_HEADER);
    let hello = with_timeout("handshake", read_frame(&mut ws, &mut dec)).await?;
    let responder = Responder::new(
        &CONN_HEADER,
        identity.static_key.clone(),
        KeyPair::generate(),
        identity.chain.clone(),
    );
    let (state, server_hello) = responder.read_client_hello(&hello)?;
    let mut out = Vec::with_capacity(server_hello.len() + 3);
    write_frame(&mut out, &server_hello)?;
    ws.send(WsMessage::Binary(out.into())).await?;
    let finish = with_timeout("handshake", read_frame(&mut ws, &mut dec)).await?;
    let done = state.read_client_finish(&finish)?;
    dec.set_max(max_frame);
    Ok(Accepted {
        client_static: done.client_static,
        payload: done.payload,
        socket: spawn_pumps(ws, dec, done.cipher.send, done.cipher.recv),
    })
}

fn spawn_pumps<S>(
    ws: WebSocketStream<S>,
    dec: FrameDecoder,
    send: CipherState,
    recv: CipherState,
) -> NoiseSocket
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(OUTBOX);
    let (in_tx, in_rx) = mpsc::channel::<Incoming>(OUTBOX);
    tokio::spawn(write_pump(sink, out_rx, send));
    tokio::spawn(read_pump(stream, dec, recv, in_tx));
    NoiseSocket {
        sender: NodeSender { tx: out_tx },
        incoming: in_rx,
    }
}

// The pumps are functions returning an async block, not async fns: an async fn's future keeps
// its arguments twice (as passed, and as moved into its body), and each pump's cipher state is
// 1 KB (the AES key schedule), so every idle connection held 2 KB more (rustc
// -Zprint-type-sizes, benches/README.md). An async block uses what it captured in place.

/// Encrypts queued payloads; everything already queued goes out in one WebSocket message.
#[allow(clippy::manual_async_fn)] // not an async fn on purpose (above)
fn write_pump<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, WsMessage>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut cipher: CipherState,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let mut buf = Vec::new();
        while let Some(first) = rx.recv().await {
            buf.clear();
            let mut next = Some(first);
            while let Some(p) = next.take() {
                if cipher.encrypt_frame(&p, &mut buf).is_err() {
                    let _ = sink.close().await;
                    return;
                }
                if buf.len() < 64 * 1024 {
                    next = rx.try_recv().ok();
                }
            }
            // The message takes the buffer: no copy, and an idle connection keeps no burst's
            // buffer.
            if sink
                .send(WsMessage::Binary(Bytes::from(std::mem::take(&mut buf))))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = sink.close().await;
    }
}

/// Decrypts and decodes frames as they arrive, then reports how the connection ended.
#[allow(clippy::manual_async_fn)] // not an async fn on purpose (above)
fn read_pump<S>(
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    mut dec: FrameDecoder,
    mut cipher: CipherState,
    tx: mpsc::Sender<Incoming>,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let end = loop {
            // Drain complete frames before reading more.
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    let plain = match cipher.decrypt(&frame) {
                        Ok(p) => p,
                        Err(e) => break Some(e.into()),
                    };
                    let ev = match decode_frame(Bytes::from(plain)) {
                        Ok(node) => Incoming::Node(Box::new(node)),
                        Err(e) => Incoming::Malformed(Box::new(e)),
                    };
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => break Some(e.into()),
            }
            match stream.next().await {
                Some(Ok(WsMessage::Binary(b))) => dec.push(&b),
                Some(Ok(WsMessage::Close(_))) | None => break None,
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(e.into()),
            }
        };
        let _ = tx.send(Incoming::Closed(end.map(Box::new))).await;
    }
}
