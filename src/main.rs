//! The `wa-gateway` command line: `serve` (the REST service), `token` (mints a JWT for it),
//! `simulate` (the offline WhatsApp), `chat` (a line client for the simulator), `decode`.

use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use wa_gateway::binary::decode_frame;
use wa_gateway::util::hex;

/// Starts the simulator and its control API, prints where they are, runs until SIGINT/SIGTERM.
/// Its CA certificate (behind the media CDN's HTTPS, and with `tls` the `wss://` socket's) is
/// written to `ca_out` (printed as `ca_cert`; give it to clients as `WA_GATEWAY_WS_CA`).
fn simulate(
    listen: std::net::SocketAddr,
    control: std::net::SocketAddr,
    cdn: Option<std::net::SocketAddr>,
    tls: bool,
    ca_out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use base64::Engine;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let sim = wa_gateway::sim::Simulator::start_on(wa_gateway::sim::Listeners {
            ws: listen,
            wss: tls,
            cdn,
        })
        .await?;
        let ca_path = match sim.ca_cert_pem() {
            Some(pem) => {
                let path = ca_out.unwrap_or_else(|| {
                    std::env::temp_dir().join(format!("wa-gateway-sim-{}-ca.pem", std::process::id()))
                });
                std::fs::write(&path, pem)?;
                Some(path)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(control).await?;
        let control_url = format!("http://{}", listener.local_addr()?);
        let mut line = serde_json::json!({
            "ws_url": sim.ws_url(),
            "control_url": control_url,
            "cdn_url": sim.cdn_url(),
            "root_public_key": base64::engine::general_purpose::STANDARD.encode(sim.root_public_key()),
        });
        if let Some(p) = &ca_path {
            line["ca_cert"] = serde_json::Value::String(p.display().to_string());
        }
        println!("{line}");
        use std::io::Write;
        std::io::stdout().flush()?;
        let app = wa_gateway::sim::control::router(sim);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await?;
        Ok(())
    })
}

/// The JWT key: the configured one, or a secret kept in the data directory (made on first
/// start, mode 0600).
fn jwt_key(cfg: &wa_gateway::config::ServiceConfig) -> anyhow::Result<wa_gateway::api::AuthKey> {
    use wa_gateway::api::AuthKey;
    use wa_gateway::config::JwtKey;
    Ok(match &cfg.jwt {
        Some(JwtKey::Secret(s)) => AuthKey::Hs256(s.clone()),
        Some(JwtKey::PublicPem(p)) => AuthKey::Rs256(p.clone()),
        None => {
            let path = cfg.data_dir.join("jwt_secret");
            if !path.exists() {
                use base64::Engine;
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::create_dir_all(&cfg.data_dir)?;
                let secret =
                    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(secret.as_bytes())?;
                eprintln!(
                    "no WA_GATEWAY_JWT_SECRET or WA_GATEWAY_JWT_PUBLIC_KEY: generated an HS256 secret in {} (mint tokens with `wa-gateway token`)",
                    path.display()
                );
            }
            AuthKey::Hs256(std::fs::read_to_string(&path)?.trim().as_bytes().to_vec())
        }
    })
}

/// Runs the REST service until SIGINT/SIGTERM; with `with_simulator`, the simulator runs in the
/// same process and the service talks to it.
fn serve(cfg: wa_gateway::config::Config, with_simulator: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let mut cfg = cfg;
        let key = jwt_key(&cfg.service)?;
        let mut _sim = None;
        if with_simulator {
            use base64::Engine;
            let sim = wa_gateway::sim::Simulator::start("127.0.0.1:0".parse()?).await?;
            let control = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let control_url = format!("http://{}", control.local_addr()?);
            cfg.whatsapp.ws_url = sim.ws_url().to_owned();
            cfg.whatsapp.root_key = sim.root_public_key();
            // The simulator's media CDN is HTTPS under its own CA: trusted as WA_GATEWAY_WS_CA
            // would make it.
            if let Some(pem) = sim.ca_cert_pem() {
                cfg.whatsapp
                    .ws_ca
                    .extend(wa_gateway::socket::tls::parse_ca_pem(pem.as_bytes())?);
            }
            // The walkthrough's webhook receiver runs on this machine too.
            cfg.service.webhook_allow_private = true;
            println!(
                "{}",
                serde_json::json!({
                    "simulator": {
                        "ws_url": sim.ws_url(),
                        "control_url": control_url,
                        "cdn_url": sim.cdn_url(),
                        "root_public_key": base64::engine::general_purpose::STANDARD.encode(sim.root_public_key()),
                    }
                })
            );
            let app = wa_gateway::sim::control::router(sim.clone());
            tokio::spawn(async move { axum::serve(control, app).await });
            _sim = Some(sim);
        }
        std::fs::create_dir_all(&cfg.service.data_dir)?;
        let store = wa_gateway::store::Store::open_tuned(
            &cfg.service.database_url(),
            cfg.store_key.as_ref(),
            cfg.durability,
        )
        .await?;
        let pacing = wa_gateway::service::Pacing {
            per_minute: cfg.service.send_per_minute,
            burst: cfg.service.send_burst,
            chat_gap: std::time::Duration::from_millis(cfg.service.send_chat_gap_ms),
            wait: std::time::Duration::from_millis(cfg.service.send_wait_ms),
            ..Default::default()
        };
        // One limit for a send however far it got: queued sends expire, unacked ones fail.
        let ttl = std::time::Duration::from_secs(cfg.service.send_ttl_s);
        let mut client = cfg.whatsapp.client_options()?;
        client.messaging.give_up_after = ttl;
        let service = wa_gateway::service::Service::with_options(
            store,
            client,
            wa_gateway::service::ServiceOptions {
                pacing,
                unpaced: cfg.service.unlimited.clone(),
                webhooks: cfg.service.webhooks(),
                send_ttl: Some(ttl),
                max_agents: Some(cfg.service.max_agents),
                retention: cfg.service.retention(),
                media: cfg.service.media(),
            },
        );
        service.set_cold_send(cfg.service.cold_send);
        let mut state = wa_gateway::api::AppState::with_rules(
            service,
            &key,
            &cfg.service.token_rules(),
            cfg.service.unlimited.clone(),
        )?;
        state.http = cfg.service.http_limits();
        let listener = tokio::net::TcpListener::bind(cfg.service.bind).await?;
        println!(
            "{}",
            serde_json::json!({ "listening": format!("http://{}", listener.local_addr()?) })
        );
        use std::io::Write;
        std::io::stdout().flush()?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        wa_gateway::api::serve(listener, state, async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
        Ok(())
    })
}

/// Prints a token signed with the configured HS256 secret (or the generated one), naming
/// `rules`' issuer and audience.
fn token(
    cfg: &wa_gateway::config::ServiceConfig,
    sub: String,
    role: wa_gateway::api::Role,
    subaccounts: Vec<String>,
    ttl: std::time::Duration,
    rules: &wa_gateway::api::TokenRules,
) -> anyhow::Result<String> {
    let wa_gateway::api::AuthKey::Hs256(secret) = jwt_key(cfg)? else {
        anyhow::bail!(
            "with WA_GATEWAY_JWT_PUBLIC_KEY, tokens are minted by whoever holds the private key"
        );
    };
    let exp = wa_gateway::util::clock::now_ms() / 1000 + ttl.as_secs();
    let claims = wa_gateway::api::Claims {
        sub,
        role,
        subaccounts,
        exp,
    };
    Ok(wa_gateway::api::auth::mint_with(&secret, &claims, rules)?)
}

/// `1h`, `30m`, `45s`, `2d` or plain seconds.
fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: use s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// A line-oriented client for developing against the simulator (and the Baileys judge): prints
/// one JSON line per event (`qr`, `state`, `message`, `receipt`, `sent`, `error`) and sends
/// `{"to": "<digits or JID>", "text": "…"}` lines read from stdin. The QR line carries the
/// pairing secret: this is a terminal tool, never a log.
fn chat(
    ws: String,
    root: String,
    db: String,
    ca: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use base64::Engine;
    use tokio::io::AsyncBufReadExt;
    use wa_gateway::client::{Client, ClientOptions, Event};
    let root: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(root.trim())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("--root must be 32 bytes in base64"))?;
    let tls = match ca {
        Some(path) => {
            let pem = std::fs::read(&path)
                .map_err(|e| anyhow::anyhow!("--ca {}: {e}", path.display()))?;
            let extra = wa_gateway::socket::tls::parse_ca_pem(&pem)?;
            Some(wa_gateway::socket::tls::client_config(&extra)?)
        }
        None => None,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = wa_gateway::store::Store::open(&db).await?;
        let account = store.account("chat", "cli").await?;
        let opts = ClientOptions {
            socket: wa_gateway::socket::ClientConfig {
                url: ws,
                trust: wa_gateway::socket::TrustRoot::from_key(root),
                clock: std::sync::Arc::new(wa_gateway::util::clock::SystemClock),
                max_frame: wa_gateway::socket::framing::MAX_FRAME,
                tls,
            },
            profile: Default::default(),
            backoff: Default::default(),
            keepalive: Default::default(),
            messaging: Default::default(),
            label: "chat".into(),
        };
        let (client, mut events) = Client::start(opts, std::sync::Arc::new(store.creds(account)));
        let client = std::sync::Arc::new(client);
        let out = |v: serde_json::Value| {
            use std::io::Write;
            // A reader that went away is no reason to panic.
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{v}");
            let _ = o.flush();
        };
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                let line = match e {
                    Event::QrCode { code, .. } => serde_json::json!({ "qr": code }),
                    Event::State(s) => serde_json::json!({ "state": s.name(), "code": s.code() }),
                    Event::Connected { jid } => serde_json::json!({ "connected": jid.to_string() }),
                    Event::Message(m) => serde_json::json!({ "message": {
                        "id": m.id, "chat": m.chat.to_string(), "sender": m.sender.to_string(),
                        "from_me": m.from_me, "text": m.text, "timestamp": m.timestamp,
                    }}),
                    Event::Receipt {
                        chat,
                        id,
                        device,
                        status,
                        error,
                    } => serde_json::json!({ "receipt": {
                        "chat": chat.to_string(), "id": id, "device": device.map(|d| d.to_string()),
                        "status": status.as_str(), "error": error,
                    }}),
                    Event::GroupUpdate(u) => serde_json::json!({ "group": {
                        "group": u.group.to_string(), "action": u.action,
                        "author": u.author.map(|a| a.to_string()),
                        "participants": u.participants.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                        "subject": u.subject,
                    }}),
                    _ => continue,
                };
                out(line);
            }
        });
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = stdin.next_line().await? {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                out(serde_json::json!({ "error": "expected {\"to\": …, \"text\": …}" }));
                continue;
            };
            let (Some(to), Some(text)) = (v["to"].as_str(), v["text"].as_str()) else {
                out(serde_json::json!({ "error": "expected {\"to\": …, \"text\": …}" }));
                continue;
            };
            let to: wa_gateway::binary::Jid = if to.contains('@') {
                match to.parse() {
                    Ok(j) => j,
                    Err(e) => {
                        out(serde_json::json!({ "error": e.to_string() }));
                        continue;
                    }
                }
            } else {
                wa_gateway::binary::Jid::new(to, wa_gateway::binary::Server::User)
            };
            let (client, text) = (client.clone(), text.to_owned());
            tokio::spawn(async move {
                match client.send_text(&to, &text).await {
                    Ok(s) => out(serde_json::json!({ "sent": {
                        "id": s.id, "chat": s.chat.to_string(), "status": s.status.as_str(),
                        "timestamp": s.timestamp,
                    }})),
                    Err(e) => out(serde_json::json!({ "error": e.to_string() })),
                }
            });
        }
        Ok(())
    })
}

#[derive(Parser)]
#[command(
    name = "wa-gateway",
    version,
    about = "Pure-Rust WhatsApp multi-device gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the REST service (configured by WA_GATEWAY_* variables; see README).
    Serve {
        /// Also run the simulator in this process and talk to it instead of WhatsApp (prints
        /// its control URL).
        #[arg(long)]
        with_simulator: bool,
    },
    /// Prints a JWT for the service, signed with its HS256 secret.
    Token {
        /// The user id (`sub`).
        #[arg(long, default_value = "admin")]
        sub: String,
        /// `admin`, `member` or `viewer`.
        #[arg(long, default_value = "admin")]
        role: String,
        /// Subaccounts the token may use, comma separated (`*` for all).
        #[arg(long, default_value = "*")]
        subaccounts: String,
        /// Lifetime (`30m`, `1h`, `7d`).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: std::time::Duration,
        /// The `iss` claim (default: WA_GATEWAY_JWT_ISSUER, when set).
        #[arg(long)]
        issuer: Option<String>,
        /// The `aud` claim (default: WA_GATEWAY_JWT_AUDIENCE, when set).
        #[arg(long)]
        audience: Option<String>,
    },
    /// Runs the offline WhatsApp simulator; prints one JSON line with its URLs and root key.
    Simulate {
        /// WebSocket listen address (port 0 = any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Control API listen address (port 0 = any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        control: std::net::SocketAddr,
        /// The media CDN's HTTPS listen address (default: the WebSocket's IP, any free port).
        #[arg(long)]
        cdn: Option<std::net::SocketAddr>,
        /// Serve `wss://` with a certificate from the CA generated at start (the media CDN
        /// always serves HTTPS with it).
        #[arg(long)]
        tls: bool,
        /// Where to write that CA's PEM (default: the temp directory).
        #[arg(long)]
        ca_out: Option<std::path::PathBuf>,
    },
    /// A line-based client for the simulator: JSON events out, `{"to","text"}` lines in.
    Chat {
        /// The simulator's WebSocket URL (`ws_url` of `simulate`).
        #[arg(long)]
        ws: String,
        /// The simulator's root public key in base64 (`root_public_key`).
        #[arg(long)]
        root: String,
        /// Where the account is kept.
        #[arg(long, default_value = "sqlite::memory:")]
        db: String,
        /// A PEM CA to trust besides the webpki roots (`ca_cert` of `simulate --ca-out`): app
        /// state, history and media come from the simulator's HTTPS CDN.
        #[arg(long)]
        ca: Option<std::path::PathBuf>,
    },
    /// Decodes a hex-encoded binary-node frame (flags byte first) and prints it as XML.
    Decode {
        /// The frame in hex, e.g. 00f8029df801f803ec0e04ec11.
        frame_hex: String,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match std::env::var("WA_GATEWAY_LOG_FORMAT").as_deref() {
        // One JSON object per line, with the request and client spans as fields.
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Ok("text") | Err(_) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Ok(other) => {
            eprintln!("error: WA_GATEWAY_LOG_FORMAT: {other:?} is not json or text");
            return ExitCode::from(2);
        }
    }
    let cli = Cli::parse();
    let config = || match wa_gateway::config::Config::from_env() {
        Ok(c) => Ok(c),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(2))
        }
    };
    match cli.command {
        Command::Serve { with_simulator } => {
            let cfg = match config() {
                Ok(c) => c,
                Err(code) => return code,
            };
            match serve(cfg, with_simulator) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token {
            sub,
            role,
            subaccounts,
            ttl,
            issuer,
            audience,
        } => {
            let cfg = match config() {
                Ok(c) => c,
                Err(code) => return code,
            };
            let role = match role.as_str() {
                "admin" => wa_gateway::api::Role::Admin,
                "member" => wa_gateway::api::Role::Member,
                "viewer" => wa_gateway::api::Role::Viewer,
                other => {
                    eprintln!("error: --role {other:?}: use admin, member or viewer");
                    return ExitCode::from(2);
                }
            };
            let subs = subaccounts
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            let configured = cfg.service.token_rules();
            let rules = wa_gateway::api::TokenRules {
                issuer: issuer.or(configured.issuer),
                audience: audience.or(configured.audience),
            };
            match token(&cfg.service, sub, role, subs, ttl, &rules) {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Simulate {
            listen,
            control,
            cdn,
            tls,
            ca_out,
        } => match simulate(listen, control, cdn, tls, ca_out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Chat { ws, root, db, ca } => match chat(ws, root, db, ca) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Decode { frame_hex } => {
            let Some(bytes) = hex::decode(frame_hex.trim()) else {
                eprintln!("error: frame is not hex");
                return ExitCode::from(2);
            };
            match decode_frame(Bytes::from(bytes)) {
                Ok(node) => {
                    println!("{node}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
