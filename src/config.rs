//! Service configuration: defaults, then `WA_GATEWAY_*` environment variables, validated once at
//! start-up; each layer gets its own slice. A bad value is an error naming the variable, never a
//! silent fallback. (An optional TOML file comes with the REST service.)

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use base64::Engine;

use crate::client::payload::ClientProfile;
use crate::client::payload::{DEFAULT_WA_VERSION, WA_VERSION_ENV};
use crate::socket::TrustRoot;
use crate::socket::tls::{client_config, parse_ca_pem};
use crate::store::{Durability, StoreKey};

/// WhatsApp's WebSocket endpoint.
pub const DEFAULT_WS_URL: &str = "wss://web.whatsapp.com/ws/chat";

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {why}")]
pub struct ConfigError {
    /// The variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub why: String,
}

/// Everything configurable so far.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// The WhatsApp connection slice (for the client layer).
    pub whatsapp: WhatsAppConfig,
    /// The REST service slice.
    pub service: ServiceConfig,
    /// Key sealing key material at rest (`WA_GATEWAY_STORE_KEY`, 32 bytes base64); None keeps
    /// it plain. See `store::StoreKey`.
    pub store_key: Option<StoreKey>,
    /// How commits are made to last (`WA_GATEWAY_SQLITE_SYNCHRONOUS`: `full`, the default, or
    /// `normal`, which a power loss may undo). See `store::Durability`.
    pub durability: Durability,
}

/// Where WhatsApp is and how we present ourselves to it.
#[derive(Clone, PartialEq, Eq)]
pub struct WhatsAppConfig {
    /// WhatsApp Web version announced (`WA_GATEWAY_WA_VERSION`, e.g. `2.3000.1045649367`).
    pub version: [u32; 3],
    /// WebSocket URL (`WA_GATEWAY_WS_URL`); point it at `wa-gateway simulate` to work offline.
    pub ws_url: String,
    /// Root key the server certificate must chain to (`WA_GATEWAY_ROOT_KEY`, base64); the
    /// simulator prints its own.
    pub root_key: [u8; 32],
    /// Extra CAs trusted for `wss://` besides the webpki roots (`WA_GATEWAY_WS_CA`, a PEM
    /// path): the one `simulate --tls` prints as `ca_cert`.
    pub ws_ca: Vec<CertificateDer<'static>>,
}

impl Default for WhatsAppConfig {
    fn default() -> WhatsAppConfig {
        WhatsAppConfig {
            version: DEFAULT_WA_VERSION,
            ws_url: DEFAULT_WS_URL.into(),
            root_key: TrustRoot::default().key,
            ws_ca: Vec::new(),
        }
    }
}

/// Where the REST service listens and keeps its data, and how it checks callers.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Listen address (`WA_GATEWAY_BIND`, default `127.0.0.1:8080`).
    pub bind: std::net::SocketAddr,
    /// Data directory (`WA_GATEWAY_DATA_DIR`, default `./data`): the SQLite file and, when no
    /// JWT key is configured, the generated secret.
    pub data_dir: std::path::PathBuf,
    /// Database (`WA_GATEWAY_DATABASE_URL`, default `sqlite://<data dir>/wa-gateway.db`).
    pub database_url: Option<String>,
    /// The JWT key (`WA_GATEWAY_JWT_SECRET` for HS256, or `WA_GATEWAY_JWT_PUBLIC_KEY`, an RS256
    /// PEM or a path to one); None: a secret generated in the data directory.
    pub jwt: Option<JwtKey>,
    /// The `iss` every token must carry (`WA_GATEWAY_JWT_ISSUER`); required with an RS256 key.
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must carry (`WA_GATEWAY_JWT_AUDIENCE`); required with an RS256
    /// key. Without one, a token naming any audience is refused.
    pub jwt_audience: Option<String>,
    /// How long one request may take, body included (`WA_GATEWAY_HTTP_REQUEST_TIMEOUT_S`,
    /// default 30; longer than `WA_GATEWAY_SEND_WAIT_MS`).
    pub http_request_timeout_s: u64,
    /// How long a client may take to send a request's headers
    /// (`WA_GATEWAY_HTTP_HEADER_TIMEOUT_S`, default 10): slow-loris clients are cut off.
    pub http_header_timeout_s: u64,
    /// Most connections served at once (`WA_GATEWAY_HTTP_MAX_CONNECTIONS`, default 1024);
    /// beyond, a connection gets 503 `too_many_connections` and is closed.
    pub http_max_connections: usize,
    /// Subaccounts exempt from rate limits and send pacing (`WA_GATEWAY_UNLIMITED_SUBACCOUNTS`,
    /// comma separated; for load tests).
    pub unlimited: Vec<String>,
    /// Sends per minute per account, sustained (`WA_GATEWAY_SEND_PER_MINUTE`, default 60).
    pub send_per_minute: u32,
    /// Sends that may go at once after a quiet spell (`WA_GATEWAY_SEND_BURST`, default 20).
    pub send_burst: u32,
    /// Least gap between two sends to one chat (`WA_GATEWAY_SEND_CHAT_GAP_MS`, default 1000).
    pub send_chat_gap_ms: u64,
    /// How long a send request waits for WhatsApp's ack (`WA_GATEWAY_SEND_WAIT_MS`, default
    /// 15000); then it answers `pending`.
    pub send_wait_ms: u64,
    /// How long a send may take to reach WhatsApp (`WA_GATEWAY_SEND_TTL`, seconds, or with a
    /// unit: `90m`, `24h`, `2d`; default 24 h): a queued send not sent by then expires, and a
    /// sent one WhatsApp never acked by then is given up as failed.
    pub send_ttl_s: u64,
    /// What a send to a cold contact meets while the account's new chats are barred
    /// (time-locked or capped): `hold` (default; it goes once they are not) or `refuse`
    /// (`WA_GATEWAY_COLD_SEND`).
    pub cold_send: crate::service::limits::ColdSend,
    /// How long one webhook attempt may take (`WA_GATEWAY_WEBHOOK_TIMEOUT_MS`, default 10000).
    pub webhook_timeout_ms: u64,
    /// The first webhook retry's delay, doubling after (`WA_GATEWAY_WEBHOOK_RETRY_BASE_MS`,
    /// default 1000).
    pub webhook_retry_base_ms: u64,
    /// The longest delay between webhook attempts (`WA_GATEWAY_WEBHOOK_RETRY_MAX_MS`, default
    /// 600000).
    pub webhook_retry_max_ms: u64,
    /// How long a webhook event is tried before it is dead-lettered
    /// (`WA_GATEWAY_WEBHOOK_DEAD_AFTER_S`, default 86400).
    pub webhook_dead_after_s: u64,
    /// How long delivered webhook events stay listed before they are pruned
    /// (`WA_GATEWAY_WEBHOOK_RETAIN_S`, default 604800).
    pub webhook_retain_s: u64,
    /// Whether webhooks may reach loopback, private, link-local and other non-public addresses
    /// (`WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE`, default false; `serve --with-simulator` sets it).
    pub webhook_allow_private: bool,
    /// Most agents one subaccount may have (`WA_GATEWAY_MAX_AGENTS`, default 100); a new one
    /// past it is refused, existing ones are never touched.
    pub max_agents: usize,
    /// Fetch arriving media files unasked (`WA_GATEWAY_MEDIA_AUTO_DOWNLOAD`, default on).
    pub media_auto_download: bool,
    /// Largest file fetched unasked (`WA_GATEWAY_MEDIA_AUTO_DOWNLOAD_MAX_BYTES`, default 64 MiB).
    pub media_auto_max_bytes: u64,
    /// Where this service is reached from outside (`WA_GATEWAY_PUBLIC_URL`, e.g.
    /// `https://gw.example.com`): webhooks then carry signed, expiring media links.
    pub public_url: Option<String>,
    /// How long a signed media link works (`WA_GATEWAY_MEDIA_LINK_TTL_S`, default 86400).
    pub media_link_ttl_s: u64,
    /// Whether a send's `media.url` may point at loopback, private, link-local and other
    /// non-public addresses (`WA_GATEWAY_MEDIA_URL_ALLOW_PRIVATE`, default false). Separate from
    /// the webhook setting: a webhook URL is set by an operator, a media URL by every caller.
    pub media_url_allow_private: bool,
    /// Largest file of each kind, sent or received (`WA_GATEWAY_MEDIA_MAX_{IMAGE,AUDIO,VIDEO,
    /// STICKER,DOCUMENT}_BYTES`; defaults 16 MiB, 16 MiB, 64 MiB, 1 MiB, 2 GiB).
    pub media_caps: crate::service::media::MediaCaps,
    /// Days finished sends are kept (`WA_GATEWAY_RETENTION_OUTBOX_DAYS`, default 30; 0:
    /// forever). Their idempotency keys go with them.
    pub retention_outbox_days: u64,
    /// Days activities are kept (`WA_GATEWAY_RETENTION_ACTIVITIES_DAYS`, default 90; 0:
    /// forever).
    pub retention_activities_days: u64,
    /// Days messages and their receipts are kept, by the message's own time
    /// (`WA_GATEWAY_RETENTION_MESSAGES_DAYS`, default 0: forever).
    pub retention_messages_days: u64,
    /// Days group changes are kept (`WA_GATEWAY_RETENTION_GROUP_UPDATES_DAYS`, default 90; 0:
    /// forever).
    pub retention_group_updates_days: u64,
    /// Days dead-lettered webhook events are kept (`WA_GATEWAY_RETENTION_WEBHOOK_DEAD_DAYS`,
    /// default 30; 0: forever).
    pub retention_webhook_dead_days: u64,
}

/// A configured JWT key.
#[derive(Clone, PartialEq, Eq)]
pub enum JwtKey {
    /// HS256 secret.
    Secret(Vec<u8>),
    /// RS256 public key, PEM.
    PublicPem(Vec<u8>),
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.write_str(match self {
            JwtKey::Secret(_) => "JwtKey::Secret(..)",
            JwtKey::PublicPem(_) => "JwtKey::PublicPem(..)",
        })
    }
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig {
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: "./data".into(),
            database_url: None,
            jwt: None,
            jwt_issuer: None,
            jwt_audience: None,
            http_request_timeout_s: 30,
            http_header_timeout_s: 10,
            http_max_connections: 1024,
            unlimited: Vec::new(),
            send_per_minute: 60,
            send_burst: 20,
            send_chat_gap_ms: 1000,
            send_wait_ms: 15_000,
            send_ttl_s: 24 * 3600,
            cold_send: crate::service::limits::ColdSend::Hold,
            webhook_timeout_ms: 10_000,
            webhook_retry_base_ms: 1_000,
            webhook_retry_max_ms: 600_000,
            webhook_dead_after_s: 86_400,
            webhook_retain_s: 7 * 86_400,
            webhook_allow_private: false,
            max_agents: crate::service::DEFAULT_MAX_AGENTS,
            media_auto_download: true,
            media_auto_max_bytes: crate::service::media::MediaSettings::default().auto_max,
            media_caps: crate::service::media::MediaCaps::default(),
            public_url: None,
            media_link_ttl_s: 86_400,
            media_url_allow_private: false,
            retention_outbox_days: 30,
            retention_activities_days: 90,
            retention_messages_days: 0,
            retention_group_updates_days: 90,
            retention_webhook_dead_days: 30,
        }
    }
}

impl ServiceConfig {
    /// How webhooks are delivered.
    pub fn webhooks(&self) -> crate::service::WebhookSettings {
        use std::time::Duration;
        crate::service::WebhookSettings {
            timeout: Duration::from_millis(self.webhook_timeout_ms),
            retry_base: Duration::from_millis(self.webhook_retry_base_ms),
            retry_max: Duration::from_millis(
                self.webhook_retry_max_ms.max(self.webhook_retry_base_ms),
            ),
            dead_after: Duration::from_secs(self.webhook_dead_after_s),
            retain: Duration::from_secs(self.webhook_retain_s),
            allow_private: self.webhook_allow_private,
            ..Default::default()
        }
    }

    /// Where media files go (`<data dir>/blobs`), how large they may be, what is fetched
    /// unasked.
    pub fn media(&self) -> crate::service::media::MediaSettings {
        crate::service::media::MediaSettings {
            blob_dir: Some(self.data_dir.join("blobs")),
            auto_download: self.media_auto_download,
            auto_max: self.media_auto_max_bytes,
            caps: self.media_caps,
            public_url: self.public_url.clone(),
            link_ttl: std::time::Duration::from_secs(self.media_link_ttl_s),
            url_allow_private: self.media_url_allow_private,
        }
    }

    /// How long old rows are kept.
    pub fn retention(&self) -> crate::service::Retention {
        use crate::service::Retention;
        Retention {
            outbox: Retention::days(self.retention_outbox_days),
            activities: Retention::days(self.retention_activities_days),
            messages: Retention::days(self.retention_messages_days),
            group_updates: Retention::days(self.retention_group_updates_days),
            dead_webhook_events: Retention::days(self.retention_webhook_dead_days),
            ..Retention::default()
        }
    }

    /// What tokens must name besides their signature.
    pub fn token_rules(&self) -> crate::api::TokenRules {
        crate::api::TokenRules {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
        }
    }

    /// The HTTP server's timeouts and connection cap.
    pub fn http_limits(&self) -> crate::api::HttpLimits {
        use std::time::Duration;
        crate::api::HttpLimits {
            request_timeout: Duration::from_secs(self.http_request_timeout_s),
            header_timeout: Duration::from_secs(self.http_header_timeout_s),
            max_connections: self.http_max_connections,
        }
    }

    /// The database URL: the configured one, or a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("wa-gateway.db").display())
        })
    }
}

impl fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.is_some())
            .field(
                "jwt",
                &match &self.jwt {
                    None => "generated",
                    Some(JwtKey::Secret(_)) => "HS256",
                    Some(JwtKey::PublicPem(_)) => "RS256",
                },
            )
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("http_request_timeout_s", &self.http_request_timeout_s)
            .field("http_header_timeout_s", &self.http_header_timeout_s)
            .field("http_max_connections", &self.http_max_connections)
            .field("unlimited", &self.unlimited)
            .field("send_per_minute", &self.send_per_minute)
            .field("send_burst", &self.send_burst)
            .field("send_chat_gap_ms", &self.send_chat_gap_ms)
            .field("send_wait_ms", &self.send_wait_ms)
            .field("send_ttl_s", &self.send_ttl_s)
            .field("cold_send", &self.cold_send)
            .field("webhook_timeout_ms", &self.webhook_timeout_ms)
            .field("webhook_retry_base_ms", &self.webhook_retry_base_ms)
            .field("webhook_retry_max_ms", &self.webhook_retry_max_ms)
            .field("webhook_dead_after_s", &self.webhook_dead_after_s)
            .field("webhook_retain_s", &self.webhook_retain_s)
            .field("webhook_allow_private", &self.webhook_allow_private)
            .field("media_url_allow_private", &self.media_url_allow_private)
            .field("max_agents", &self.max_agents)
            .field("retention_outbox_days", &self.retention_outbox_days)
            .field("retention_activities_days", &self.retention_activities_days)
            .field("retention_messages_days", &self.retention_messages_days)
            .field(
                "retention_group_updates_days",
                &self.retention_group_updates_days,
            )
            .field(
                "retention_webhook_dead_days",
                &self.retention_webhook_dead_days,
            )
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("whatsapp", &self.whatsapp)
            .field("service", &self.service)
            .field("store_key", &self.store_key.is_some())
            .field("durability", &self.durability)
            .finish()
    }
}

impl fmt::Debug for WhatsAppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.version;
        f.debug_struct("WhatsAppConfig")
            .field("version", &format_args!("{a}.{b}.{c}"))
            .field("ws_url", &self.ws_url)
            .field("custom_root", &(self.root_key != TrustRoot::default().key))
            .field("extra_cas", &self.ws_ca.len())
            .finish()
    }
}

impl Config {
    /// Reads the process environment, over the TOML file named by `WA_GATEWAY_CONFIG` when it
    /// is set (the same keys, with or without the `WA_GATEWAY_` prefix, upper or lower case; a
    /// variable set in the environment wins).
    pub fn from_env() -> Result<Config, ConfigError> {
        let file = match std::env::var("WA_GATEWAY_CONFIG") {
            Ok(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
                    var: "WA_GATEWAY_CONFIG",
                    why: format!("cannot read {path}: {e}"),
                })?;
                file_values(&text).map_err(|why| ConfigError {
                    var: "WA_GATEWAY_CONFIG",
                    why: format!("{path}: {why}"),
                })?
            }
            Err(_) => std::collections::HashMap::new(),
        };
        Config::from_lookup(|k| std::env::var(k).ok().or_else(|| file.get(k).cloned()))
    }

    /// Reads variables through `get` (tests pass a map instead of mutating the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(v) = get(WA_VERSION_ENV) {
            c.whatsapp.version = ClientProfile::parse_version(&v)
                .filter(|v| v[0] > 0)
                .ok_or_else(|| ConfigError {
                    var: WA_VERSION_ENV,
                    why: format!("{v:?} is not a version like 2.3000.1045649367"),
                })?;
        }
        if let Some(v) = get("WA_GATEWAY_WS_URL") {
            if !(v.starts_with("ws://") || v.starts_with("wss://")) {
                return Err(ConfigError {
                    var: "WA_GATEWAY_WS_URL",
                    why: format!("{v:?} is not a ws:// or wss:// URL"),
                });
            }
            c.whatsapp.ws_url = v;
        }
        if let Some(v) = get("WA_GATEWAY_ROOT_KEY") {
            c.whatsapp.root_key = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| ConfigError {
                    var: "WA_GATEWAY_ROOT_KEY",
                    why: "not a base64 32-byte public key".into(),
                })?;
        }
        if let Some(v) = get("WA_GATEWAY_STORE_KEY") {
            c.store_key = Some(StoreKey::from_base64(&v).ok_or_else(|| ConfigError {
                var: "WA_GATEWAY_STORE_KEY",
                why: "not a base64 32-byte key (make one with `openssl rand -base64 32`)".into(),
            })?);
        }
        if let Some(v) = get("WA_GATEWAY_SQLITE_SYNCHRONOUS") {
            c.durability = Durability::parse(&v).ok_or_else(|| ConfigError {
                var: "WA_GATEWAY_SQLITE_SYNCHRONOUS",
                why: format!("{v:?} is neither full nor normal"),
            })?;
        }
        if let Some(path) = get("WA_GATEWAY_WS_CA") {
            let pem = std::fs::read(&path).map_err(|e| ConfigError {
                var: "WA_GATEWAY_WS_CA",
                why: format!("cannot read {path}: {e}"),
            })?;
            c.whatsapp.ws_ca = parse_ca_pem(&pem).map_err(|e| ConfigError {
                var: "WA_GATEWAY_WS_CA",
                why: format!("{path}: {e}"),
            })?;
        }
        c.service = service_from(&get)?;
        Ok(c)
    }
}

/// The settings of a TOML configuration file, by variable name: `bind = "…"`,
/// `WA_GATEWAY_BIND = "…"` and `BIND = "…"` all set `WA_GATEWAY_BIND`. Values may be strings,
/// numbers or booleans; anything else (tables, arrays, unknown keys) is an error naming it.
pub fn file_values(text: &str) -> Result<std::collections::HashMap<String, String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = std::collections::HashMap::new();
    for (k, v) in table {
        let upper = k.to_ascii_uppercase();
        let var = if upper.starts_with("WA_GATEWAY_") {
            upper
        } else {
            format!("WA_GATEWAY_{upper}")
        };
        if !KNOWN.contains(&var.as_str()) {
            return Err(format!("unknown setting {k:?}"));
        }
        let value = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => return Err(format!("{k}: expected a string, number or boolean")),
        };
        out.insert(var, value);
    }
    Ok(out)
}

/// Every setting there is (the TOML file may set these and nothing else).
const KNOWN: &[&str] = &[
    WA_VERSION_ENV,
    "WA_GATEWAY_WS_URL",
    "WA_GATEWAY_ROOT_KEY",
    "WA_GATEWAY_STORE_KEY",
    "WA_GATEWAY_SQLITE_SYNCHRONOUS",
    "WA_GATEWAY_WS_CA",
    "WA_GATEWAY_BIND",
    "WA_GATEWAY_DATA_DIR",
    "WA_GATEWAY_DATABASE_URL",
    "WA_GATEWAY_JWT_SECRET",
    "WA_GATEWAY_JWT_PUBLIC_KEY",
    "WA_GATEWAY_JWT_ISSUER",
    "WA_GATEWAY_JWT_AUDIENCE",
    "WA_GATEWAY_HTTP_REQUEST_TIMEOUT_S",
    "WA_GATEWAY_HTTP_HEADER_TIMEOUT_S",
    "WA_GATEWAY_HTTP_MAX_CONNECTIONS",
    "WA_GATEWAY_UNLIMITED_SUBACCOUNTS",
    "WA_GATEWAY_SEND_PER_MINUTE",
    "WA_GATEWAY_SEND_BURST",
    "WA_GATEWAY_SEND_CHAT_GAP_MS",
    "WA_GATEWAY_SEND_WAIT_MS",
    "WA_GATEWAY_SEND_TTL",
    "WA_GATEWAY_WEBHOOK_TIMEOUT_MS",
    "WA_GATEWAY_WEBHOOK_RETRY_BASE_MS",
    "WA_GATEWAY_WEBHOOK_RETRY_MAX_MS",
    "WA_GATEWAY_WEBHOOK_DEAD_AFTER_S",
    "WA_GATEWAY_WEBHOOK_RETAIN_S",
    "WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE",
    "WA_GATEWAY_MAX_AGENTS",
    "WA_GATEWAY_MEDIA_AUTO_DOWNLOAD",
    "WA_GATEWAY_PUBLIC_URL",
    "WA_GATEWAY_MEDIA_LINK_TTL_S",
    "WA_GATEWAY_MEDIA_URL_ALLOW_PRIVATE",
    "WA_GATEWAY_MEDIA_AUTO_DOWNLOAD_MAX_BYTES",
    "WA_GATEWAY_MEDIA_MAX_IMAGE_BYTES",
    "WA_GATEWAY_MEDIA_MAX_AUDIO_BYTES",
    "WA_GATEWAY_MEDIA_MAX_VIDEO_BYTES",
    "WA_GATEWAY_MEDIA_MAX_STICKER_BYTES",
    "WA_GATEWAY_MEDIA_MAX_DOCUMENT_BYTES",
    "WA_GATEWAY_RETENTION_OUTBOX_DAYS",
    "WA_GATEWAY_RETENTION_ACTIVITIES_DAYS",
    "WA_GATEWAY_RETENTION_MESSAGES_DAYS",
    "WA_GATEWAY_RETENTION_GROUP_UPDATES_DAYS",
    "WA_GATEWAY_RETENTION_WEBHOOK_DEAD_DAYS",
];

fn service_from(get: &impl Fn(&str) -> Option<String>) -> Result<ServiceConfig, ConfigError> {
    let mut s = ServiceConfig::default();
    if let Some(v) = get("WA_GATEWAY_BIND") {
        s.bind = v.trim().parse().map_err(|_| ConfigError {
            var: "WA_GATEWAY_BIND",
            why: format!("{v:?} is not an address like 127.0.0.1:8080"),
        })?;
    }
    if let Some(v) = get("WA_GATEWAY_DATA_DIR") {
        if v.trim().is_empty() {
            return Err(ConfigError {
                var: "WA_GATEWAY_DATA_DIR",
                why: "is empty".into(),
            });
        }
        s.data_dir = v.into();
    }
    if let Some(v) = get("WA_GATEWAY_DATABASE_URL") {
        if !v.starts_with("sqlite:") {
            return Err(ConfigError {
                var: "WA_GATEWAY_DATABASE_URL",
                why: format!("{v:?} is not a sqlite: URL (the only database so far)"),
            });
        }
        s.database_url = Some(v);
    }
    match (
        get("WA_GATEWAY_JWT_SECRET"),
        get("WA_GATEWAY_JWT_PUBLIC_KEY"),
    ) {
        (Some(_), Some(_)) => {
            return Err(ConfigError {
                var: "WA_GATEWAY_JWT_SECRET",
                why: "set either it or WA_GATEWAY_JWT_PUBLIC_KEY, not both".into(),
            });
        }
        (Some(secret), None) => {
            if secret.len() < 32 {
                return Err(ConfigError {
                    var: "WA_GATEWAY_JWT_SECRET",
                    why: "must be at least 32 characters".into(),
                });
            }
            s.jwt = Some(JwtKey::Secret(secret.into_bytes()));
        }
        (None, Some(key)) => {
            let pem = if key.trim_start().starts_with("-----BEGIN") {
                key.into_bytes()
            } else {
                std::fs::read(key.trim()).map_err(|e| ConfigError {
                    var: "WA_GATEWAY_JWT_PUBLIC_KEY",
                    why: format!("cannot read {key}: {e}"),
                })?
            };
            jsonwebtoken::DecodingKey::from_rsa_pem(&pem).map_err(|e| ConfigError {
                var: "WA_GATEWAY_JWT_PUBLIC_KEY",
                why: format!("not an RSA public key in PEM: {e}"),
            })?;
            s.jwt = Some(JwtKey::PublicPem(pem));
        }
        (None, None) => {}
    }
    let text = |var: &'static str| -> Result<Option<String>, ConfigError> {
        match get(var).map(|v| v.trim().to_owned()) {
            Some(v) if v.is_empty() => Err(ConfigError {
                var,
                why: "is empty".into(),
            }),
            v => Ok(v),
        }
    };
    s.jwt_issuer = text("WA_GATEWAY_JWT_ISSUER")?;
    s.jwt_audience = text("WA_GATEWAY_JWT_AUDIENCE")?;
    if matches!(s.jwt, Some(JwtKey::PublicPem(_))) {
        // Whoever holds the private key usually signs tokens for other services too: without
        // both names, any of those tokens would be taken here.
        for (var, set) in [
            ("WA_GATEWAY_JWT_ISSUER", s.jwt_issuer.is_some()),
            ("WA_GATEWAY_JWT_AUDIENCE", s.jwt_audience.is_some()),
        ] {
            if !set {
                return Err(ConfigError {
                    var,
                    why: "required with WA_GATEWAY_JWT_PUBLIC_KEY (RS256): the `iss` and `aud` \
                          every token must carry"
                        .into(),
                });
            }
        }
    }
    let num = |var: &'static str, min: u64, max: u64| -> Result<Option<u64>, ConfigError> {
        get(var)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| ConfigError {
                        var,
                        why: format!("{v:?} is not a whole number from {min} to {max}"),
                    })
            })
            .transpose()
    };
    if let Some(n) = num("WA_GATEWAY_SEND_PER_MINUTE", 1, 10_000)? {
        s.send_per_minute = n as u32;
    }
    if let Some(n) = num("WA_GATEWAY_SEND_BURST", 1, 10_000)? {
        s.send_burst = n as u32;
    }
    if let Some(n) = num("WA_GATEWAY_SEND_CHAT_GAP_MS", 0, 3_600_000)? {
        s.send_chat_gap_ms = n;
    }
    if let Some(n) = num("WA_GATEWAY_SEND_WAIT_MS", 0, 300_000)? {
        s.send_wait_ms = n;
    }
    if let Some(v) = get("WA_GATEWAY_SEND_TTL") {
        s.send_ttl_s = seconds(&v)
            .filter(|n| (1..=MAX_SEND_TTL_S).contains(n))
            .ok_or_else(|| ConfigError {
                var: "WA_GATEWAY_SEND_TTL",
                why: format!(
                    "{v:?} is not a time from 1 s to 30 days (seconds, or a number with s, m, h or d)"
                ),
            })?;
    }
    if let Some(v) = get("WA_GATEWAY_COLD_SEND") {
        s.cold_send = crate::service::limits::ColdSend::parse(&v).ok_or_else(|| ConfigError {
            var: "WA_GATEWAY_COLD_SEND",
            why: format!("{v:?} is neither hold nor refuse"),
        })?;
    }
    if let Some(n) = num("WA_GATEWAY_WEBHOOK_TIMEOUT_MS", 100, 300_000)? {
        s.webhook_timeout_ms = n;
    }
    if let Some(n) = num("WA_GATEWAY_WEBHOOK_RETRY_BASE_MS", 10, 3_600_000)? {
        s.webhook_retry_base_ms = n;
    }
    if let Some(n) = num("WA_GATEWAY_WEBHOOK_RETRY_MAX_MS", 10, 86_400_000)? {
        s.webhook_retry_max_ms = n;
    }
    if let Some(n) = num("WA_GATEWAY_WEBHOOK_DEAD_AFTER_S", 1, 90 * 86_400)? {
        s.webhook_dead_after_s = n;
    }
    if let Some(n) = num("WA_GATEWAY_WEBHOOK_RETAIN_S", 60, 3650 * 86_400)? {
        s.webhook_retain_s = n;
    }
    let flag = |var: &'static str| -> Result<Option<bool>, ConfigError> {
        let Some(v) = get(var) else { return Ok(None) };
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Some(false)),
            _ => Err(ConfigError {
                var,
                why: format!("{v:?} is not 1 or 0 (true or false)"),
            }),
        }
    };
    if let Some(b) = flag("WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE")? {
        s.webhook_allow_private = b;
    }
    if let Some(b) = flag("WA_GATEWAY_MEDIA_URL_ALLOW_PRIVATE")? {
        s.media_url_allow_private = b;
    }
    if let Some(b) = flag("WA_GATEWAY_MEDIA_AUTO_DOWNLOAD")? {
        s.media_auto_download = b;
    }
    if let Some(v) = get("WA_GATEWAY_PUBLIC_URL") {
        let v = v.trim().trim_end_matches('/').to_owned();
        let ok = reqwest::Url::parse(&v).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none()
                && u.username().is_empty()
                && u.password().is_none()
        });
        if !ok {
            return Err(ConfigError {
                var: "WA_GATEWAY_PUBLIC_URL",
                why: "must be an http(s) URL without credentials or query, e.g. https://gw.example.com".into(),
            });
        }
        s.public_url = Some(v);
    }
    if let Some(n) = num("WA_GATEWAY_MEDIA_LINK_TTL_S", 60, 30 * 86_400)? {
        s.media_link_ttl_s = n;
    }
    // Up to 4 GiB: WhatsApp's documents stop at 2 GiB.
    const MAX_FILE: u64 = 4096 * 1024 * 1024;
    if let Some(n) = num("WA_GATEWAY_MEDIA_AUTO_DOWNLOAD_MAX_BYTES", 0, MAX_FILE)? {
        s.media_auto_max_bytes = n;
    }
    for (var, cap) in [
        ("WA_GATEWAY_MEDIA_MAX_IMAGE_BYTES", &mut s.media_caps.image),
        ("WA_GATEWAY_MEDIA_MAX_AUDIO_BYTES", &mut s.media_caps.audio),
        ("WA_GATEWAY_MEDIA_MAX_VIDEO_BYTES", &mut s.media_caps.video),
        (
            "WA_GATEWAY_MEDIA_MAX_STICKER_BYTES",
            &mut s.media_caps.sticker,
        ),
        (
            "WA_GATEWAY_MEDIA_MAX_DOCUMENT_BYTES",
            &mut s.media_caps.document,
        ),
    ] {
        if let Some(n) = num(var, 1, MAX_FILE)? {
            *cap = n;
        }
    }
    if let Some(n) = num("WA_GATEWAY_MAX_AGENTS", 1, 1_000_000)? {
        s.max_agents = n as usize;
    }
    for (var, days) in [
        (
            "WA_GATEWAY_RETENTION_OUTBOX_DAYS",
            &mut s.retention_outbox_days,
        ),
        (
            "WA_GATEWAY_RETENTION_ACTIVITIES_DAYS",
            &mut s.retention_activities_days,
        ),
        (
            "WA_GATEWAY_RETENTION_MESSAGES_DAYS",
            &mut s.retention_messages_days,
        ),
        (
            "WA_GATEWAY_RETENTION_GROUP_UPDATES_DAYS",
            &mut s.retention_group_updates_days,
        ),
        (
            "WA_GATEWAY_RETENTION_WEBHOOK_DEAD_DAYS",
            &mut s.retention_webhook_dead_days,
        ),
    ] {
        // 0 keeps forever; a hundred years is as good as forever and keeps the sums small.
        if let Some(n) = num(var, 0, MAX_RETENTION_DAYS)? {
            *days = n;
        }
    }
    if let Some(n) = num("WA_GATEWAY_HTTP_REQUEST_TIMEOUT_S", 1, 3600)? {
        s.http_request_timeout_s = n;
    }
    if let Some(n) = num("WA_GATEWAY_HTTP_HEADER_TIMEOUT_S", 1, 600)? {
        s.http_header_timeout_s = n;
    }
    if let Some(n) = num("WA_GATEWAY_HTTP_MAX_CONNECTIONS", 1, 1_000_000)? {
        s.http_max_connections = n as usize;
    }
    if s.http_request_timeout_s.saturating_mul(1000) <= s.send_wait_ms {
        // A send request waits for WhatsApp's ack; cut off first, it could never answer.
        return Err(ConfigError {
            var: "WA_GATEWAY_HTTP_REQUEST_TIMEOUT_S",
            why: format!(
                "{} s is not longer than WA_GATEWAY_SEND_WAIT_MS ({} ms)",
                s.http_request_timeout_s, s.send_wait_ms
            ),
        });
    }
    if let Some(v) = get("WA_GATEWAY_UNLIMITED_SUBACCOUNTS") {
        s.unlimited = v
            .split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect();
    }
    Ok(s)
}

/// The longest retention in days (0 keeps forever).
const MAX_RETENTION_DAYS: u64 = 36_500;

/// The longest send TTL (a month of retries is past any use).
const MAX_SEND_TTL_S: u64 = 30 * 86_400;

/// Seconds from `90`, `90s`, `15m`, `24h` or `2d`.
fn seconds(v: &str) -> Option<u64> {
    let v = v.trim();
    let (digits, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_lowercase()),
        _ => (v, 's'),
    };
    let n: u64 = digits.trim().parse().ok()?;
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(per)
}

impl WhatsAppConfig {
    /// The client profile announcing the configured version.
    pub fn profile(&self) -> ClientProfile {
        ClientProfile {
            wa_version: self.version,
            ..ClientProfile::default()
        }
    }

    /// TLS trust for the WebSocket: None (the webpki roots) unless extra CAs are configured.
    pub fn tls(&self) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
        if self.ws_ca.is_empty() {
            return Ok(None);
        }
        client_config(&self.ws_ca)
            .map(Some)
            .map_err(|e| ConfigError {
                var: "WA_GATEWAY_WS_CA",
                why: e.to_string(),
            })
    }

    /// Client options for this WhatsApp (the service labels each client with its account).
    pub fn client_options(&self) -> Result<crate::client::ClientOptions, ConfigError> {
        Ok(crate::client::ClientOptions {
            socket: crate::socket::ClientConfig {
                url: self.ws_url.clone(),
                trust: self.trust_root(),
                clock: Arc::new(crate::util::clock::SystemClock),
                max_frame: crate::socket::framing::MAX_FRAME,
                tls: self.tls()?,
            },
            profile: self.profile(),
            backoff: Default::default(),
            keepalive: Default::default(),
            messaging: Default::default(),
            label: String::new(),
        })
    }

    /// The certificate root the client trusts.
    pub fn trust_root(&self) -> TrustRoot {
        TrustRoot {
            key: self.root_key,
            ..TrustRoot::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_then_environment() {
        let d = with(&[]).unwrap();
        assert_eq!(d.whatsapp.version, DEFAULT_WA_VERSION);
        assert_eq!(d.whatsapp.ws_url, DEFAULT_WS_URL);
        assert_eq!(d.whatsapp.trust_root(), TrustRoot::default());

        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let c = with(&[
            ("WA_GATEWAY_WA_VERSION", "2.3000.1099999999"),
            ("WA_GATEWAY_WS_URL", "ws://127.0.0.1:9/ws/chat"),
            ("WA_GATEWAY_ROOT_KEY", &key),
        ])
        .unwrap();
        assert_eq!(c.whatsapp.profile().wa_version, [2, 3000, 1_099_999_999]);
        assert_eq!(c.whatsapp.ws_url, "ws://127.0.0.1:9/ws/chat");
        assert_eq!(c.whatsapp.trust_root().key, [7u8; 32]);
        assert!(format!("{c:?}").contains("custom_root: true"));
    }

    #[test]
    fn ws_ca_must_be_a_readable_pem_with_a_certificate() {
        let dir = std::env::temp_dir().join(format!("wa-gw-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        for path in [dir.join("missing.pem"), junk] {
            let e = with(&[("WA_GATEWAY_WS_CA", path.to_str().unwrap())]).unwrap_err();
            assert_eq!(e.var, "WA_GATEWAY_WS_CA", "{e}");
            assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(with(&[]).unwrap().whatsapp.tls().unwrap().is_none());
    }

    #[test]
    fn commits_are_full_by_default_and_normal_when_asked() {
        assert_eq!(with(&[]).unwrap().durability, Durability::Full);
        let c = with(&[("WA_GATEWAY_SQLITE_SYNCHRONOUS", "NORMAL")]).unwrap();
        assert_eq!(c.durability, Durability::Normal);
        let e = with(&[("WA_GATEWAY_SQLITE_SYNCHRONOUS", "off")]).unwrap_err();
        assert_eq!(e.var, "WA_GATEWAY_SQLITE_SYNCHRONOUS");
    }

    #[test]
    fn store_key_is_32_bytes_of_base64_and_never_printed() {
        let key = StoreKey::generate();
        let text = key.to_base64();
        let c = with(&[("WA_GATEWAY_STORE_KEY", text.as_str())]).unwrap();
        assert_eq!(c.store_key.as_ref(), Some(&key));
        let debug = format!("{c:?}");
        assert!(
            debug.contains("store_key: true") && !debug.contains(text.as_str()),
            "{debug}"
        );
        for bad in ["", "short", "AAAA"] {
            let e = with(&[("WA_GATEWAY_STORE_KEY", bad)]).unwrap_err();
            assert_eq!(e.var, "WA_GATEWAY_STORE_KEY");
        }
    }

    #[test]
    fn service_settings_and_secrets_stay_out_of_debug() {
        let secret = "s".repeat(40);
        let c = with(&[
            ("WA_GATEWAY_BIND", "0.0.0.0:9000"),
            ("WA_GATEWAY_DATA_DIR", "/tmp/wa"),
            ("WA_GATEWAY_JWT_SECRET", secret.as_str()),
            ("WA_GATEWAY_UNLIMITED_SUBACCOUNTS", "load, bench"),
        ])
        .unwrap();
        assert_eq!(c.service.bind.port(), 9000);
        assert_eq!(c.service.database_url(), "sqlite:///tmp/wa/wa-gateway.db");
        assert_eq!(
            c.service.jwt,
            Some(JwtKey::Secret(secret.clone().into_bytes()))
        );
        assert_eq!(c.service.unlimited, ["load", "bench"]);
        let debug = format!("{c:?}");
        assert!(
            debug.contains("HS256") && !debug.contains(&secret),
            "{debug}"
        );
        assert_eq!(
            with(&[]).unwrap().service.database_url(),
            "sqlite://./data/wa-gateway.db"
        );
    }

    /// A 2048-bit RSA public key (made with `openssl genrsa 2048 | openssl rsa -pubout`).
    const RSA_PUBLIC: &str = concat!(
        "-----BEGIN PUBLIC KEY-----\n",
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvHrIk+zfaCrOPq2jiq4B\n",
        "JOrVFZTAAAHjWDfs1Og4ikaSOusqA9R5YE/7shdty+XD9xdlvvTY8cRyV/ZiwhuD\n",
        "BQbze48B2AgzmSTfJK/M/t0houv8zsHA5csLY3Qf/FX/JtSPUY4o3I6nPqDop7zU\n",
        "YNdUKj1UytubBQCkM186tsnyNlyli0NERdlLmcUmRcnz031PUmq7qGaz0EUL7/7J\n",
        "BYpbK5ENZBhaH9UEKQu7Nf4pfWDddiCe30ItVWV1+jm2XnSXUzCa+dGNwPTNILnQ\n",
        "ZyWLvNKrNKNG0kaMUZ4tO4whgsybAuY5QSwjL0TtcjiWPnnvJ43084bWhMB3xHXm\n",
        "MwIDAQAB\n",
        "-----END PUBLIC KEY-----\n",
    );

    #[test]
    fn an_rs256_key_needs_an_issuer_and_an_audience_and_hs256_takes_them_when_set() {
        let e = with(&[("WA_GATEWAY_JWT_PUBLIC_KEY", RSA_PUBLIC)]).unwrap_err();
        assert_eq!(e.var, "WA_GATEWAY_JWT_ISSUER", "{e}");
        let e = with(&[
            ("WA_GATEWAY_JWT_PUBLIC_KEY", RSA_PUBLIC),
            ("WA_GATEWAY_JWT_ISSUER", "https://idp.example"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "WA_GATEWAY_JWT_AUDIENCE", "{e}");
        let c = with(&[
            ("WA_GATEWAY_JWT_PUBLIC_KEY", RSA_PUBLIC),
            ("WA_GATEWAY_JWT_ISSUER", "https://idp.example"),
            ("WA_GATEWAY_JWT_AUDIENCE", "wa-gateway"),
        ])
        .unwrap();
        let rules = c.service.token_rules();
        assert_eq!(rules.issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(rules.audience.as_deref(), Some("wa-gateway"));
        let secret = "s".repeat(40);
        let hs = with(&[("WA_GATEWAY_JWT_SECRET", secret.as_str())]).unwrap();
        assert_eq!(hs.service.token_rules(), crate::api::TokenRules::default());
        let hs = with(&[
            ("WA_GATEWAY_JWT_SECRET", secret.as_str()),
            ("WA_GATEWAY_JWT_AUDIENCE", "wa-gateway"),
        ])
        .unwrap();
        assert_eq!(hs.service.jwt_audience.as_deref(), Some("wa-gateway"));
    }

    #[test]
    fn http_limits_and_the_private_webhook_switch() {
        let d = with(&[]).unwrap().service;
        let l = d.http_limits();
        assert!(l.request_timeout.as_millis() > u128::from(d.send_wait_ms));
        assert!(l.header_timeout < l.request_timeout && l.max_connections > 0);
        assert!(!d.webhooks().allow_private);
        let c = with(&[
            ("WA_GATEWAY_HTTP_REQUEST_TIMEOUT_S", "60"),
            ("WA_GATEWAY_HTTP_HEADER_TIMEOUT_S", "5"),
            ("WA_GATEWAY_HTTP_MAX_CONNECTIONS", "10"),
            ("WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE", "1"),
        ])
        .unwrap()
        .service;
        assert_eq!(c.http_limits().request_timeout.as_secs(), 60);
        assert_eq!(c.http_limits().header_timeout.as_secs(), 5);
        assert_eq!(c.http_limits().max_connections, 10);
        assert!(c.webhooks().allow_private);
        // The webhook switch does not open media URLs to private addresses: they have their own.
        assert!(!d.media().url_allow_private && !c.media().url_allow_private);
        let m = with(&[("WA_GATEWAY_MEDIA_URL_ALLOW_PRIVATE", "1")])
            .unwrap()
            .service;
        assert!(m.media().url_allow_private && !m.webhooks().allow_private);
        // A request cut off before a send's wait ends could never answer it.
        let e = with(&[
            ("WA_GATEWAY_HTTP_REQUEST_TIMEOUT_S", "10"),
            ("WA_GATEWAY_SEND_WAIT_MS", "15000"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "WA_GATEWAY_HTTP_REQUEST_TIMEOUT_S", "{e}");
    }

    #[test]
    fn a_toml_file_sets_the_same_keys_and_refuses_unknown_ones() {
        let v =
            file_values("bind = \"0.0.0.0:9001\"\nWA_GATEWAY_SEND_BURST = 7\nSEND_WAIT_MS = 500\n")
                .unwrap();
        let c = Config::from_lookup(|k| v.get(k).cloned()).unwrap();
        assert_eq!(c.service.bind.port(), 9001);
        assert_eq!(c.service.send_burst, 7);
        assert_eq!(c.service.send_wait_ms, 500);
        assert!(file_values("bnid = \"x\"").unwrap_err().contains("bnid"));
        let v = file_values("send_ttl = \"90m\"").unwrap();
        let c = Config::from_lookup(|k| v.get(k).cloned()).unwrap();
        assert_eq!(c.service.send_ttl_s, 5400);
        assert!(file_values("bind = [1]").is_err());
        assert!(file_values("bind = ").is_err());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("WA_GATEWAY_WA_VERSION", "2.3000"),
            ("WA_GATEWAY_WA_VERSION", "latest"),
            ("WA_GATEWAY_WA_VERSION", "0.0.0"),
            ("WA_GATEWAY_WS_URL", "http://example.com"),
            ("WA_GATEWAY_ROOT_KEY", "c2hvcnQ="),
            ("WA_GATEWAY_BIND", "localhost"),
            ("WA_GATEWAY_DATABASE_URL", "postgres://x"),
            ("WA_GATEWAY_JWT_SECRET", "short"),
            (
                "WA_GATEWAY_JWT_PUBLIC_KEY",
                "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----",
            ),
            ("WA_GATEWAY_DATA_DIR", " "),
            ("WA_GATEWAY_SEND_PER_MINUTE", "0"),
            ("WA_GATEWAY_SEND_WAIT_MS", "soon"),
            ("WA_GATEWAY_SEND_TTL", "0"),
            ("WA_GATEWAY_SEND_TTL", "1w"),
            ("WA_GATEWAY_SEND_TTL", "31d"),
            ("WA_GATEWAY_SEND_TTL", "h"),
            ("WA_GATEWAY_JWT_ISSUER", " "),
            ("WA_GATEWAY_JWT_AUDIENCE", ""),
            ("WA_GATEWAY_HTTP_REQUEST_TIMEOUT_S", "0"),
            ("WA_GATEWAY_HTTP_HEADER_TIMEOUT_S", "never"),
            ("WA_GATEWAY_HTTP_MAX_CONNECTIONS", "0"),
            ("WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE", "maybe"),
            ("WA_GATEWAY_MAX_AGENTS", "0"),
            ("WA_GATEWAY_MAX_AGENTS", "lots"),
            ("WA_GATEWAY_RETENTION_OUTBOX_DAYS", "-1"),
            ("WA_GATEWAY_RETENTION_MESSAGES_DAYS", "36501"),
            ("WA_GATEWAY_RETENTION_ACTIVITIES_DAYS", "1.5"),
            ("WA_GATEWAY_RETENTION_GROUP_UPDATES_DAYS", "90d"),
            ("WA_GATEWAY_RETENTION_WEBHOOK_DEAD_DAYS", ""),
        ] {
            let err = with(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }

    #[test]
    fn the_send_ttl_is_a_day_unless_set_in_seconds_or_with_a_unit() {
        assert_eq!(with(&[]).unwrap().service.send_ttl_s, 86_400);
        for (v, secs) in [
            ("3600", 3600),
            ("45s", 45),
            ("15m", 900),
            ("24h", 86_400),
            ("2D", 172_800),
        ] {
            let c = with(&[("WA_GATEWAY_SEND_TTL", v)]).unwrap();
            assert_eq!(c.service.send_ttl_s, secs, "{v}");
        }
    }

    #[test]
    fn retention_is_in_days_with_zero_for_forever_and_agents_are_capped() {
        use crate::service::Retention;
        use std::time::Duration;
        let day = Duration::from_secs(86_400);
        let d = with(&[]).unwrap().service;
        assert_eq!(d.max_agents, 100);
        assert_eq!(
            d.retention(),
            Retention {
                outbox: Some(30 * day),
                activities: Some(90 * day),
                messages: None,
                group_updates: Some(90 * day),
                dead_webhook_events: Some(30 * day),
                ..Retention::default()
            }
        );
        let c = with(&[
            ("WA_GATEWAY_MAX_AGENTS", "3"),
            ("WA_GATEWAY_RETENTION_OUTBOX_DAYS", "0"),
            ("WA_GATEWAY_RETENTION_ACTIVITIES_DAYS", "7"),
            ("WA_GATEWAY_RETENTION_MESSAGES_DAYS", "365"),
            ("WA_GATEWAY_RETENTION_GROUP_UPDATES_DAYS", "1"),
            ("WA_GATEWAY_RETENTION_WEBHOOK_DEAD_DAYS", "0"),
        ])
        .unwrap()
        .service;
        assert_eq!(c.max_agents, 3);
        assert_eq!(
            c.retention(),
            Retention {
                outbox: None,
                activities: Some(7 * day),
                messages: Some(365 * day),
                group_updates: Some(day),
                dead_webhook_events: None,
                ..Retention::default()
            }
        );
        let v = file_values("retention_messages_days = 30\nmax_agents = 5").unwrap();
        let c = Config::from_lookup(|k| v.get(k).cloned()).unwrap().service;
        assert_eq!((c.retention_messages_days, c.max_agents), (30, 5));
    }
}
