//! The ClientPayload sent inside the Noise ClientFinish (PROTOCOL.md §3): registration for a new
//! device, login for a paired one. The advertised WhatsApp Web version is configuration, because
//! WhatsApp refuses outdated versions (405) and every peer gateway has had to patch it by hand.

use md5::{Digest, Md5};

use crate::binary::Jid;
use crate::proto::wa::client_payload::{
    ConnectReason, ConnectType, DevicePairingRegistrationData, UserAgent, WebInfo, user_agent,
    web_info,
};
use crate::proto::wa::device_props::{self, HistorySyncConfig};
use crate::proto::wa::{ClientPayload, DeviceProps};
use prost::Message;

/// WhatsApp Web build announced by default (whatsmeow's value of 2026-08; overridable).
pub const DEFAULT_WA_VERSION: [u32; 3] = [2, 3000, 1_045_649_367];

/// The setting that overrides the announced version; named in the `client_outdated` message.
pub const WA_VERSION_ENV: &str = "WA_GATEWAY_WA_VERSION";

/// How this companion describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientProfile {
    /// WhatsApp Web version `primary.secondary.build`.
    pub wa_version: [u32; 3],
    /// `DeviceProps.os`: what the phone lists under Linked devices.
    pub os: String,
    /// `DeviceProps.version`.
    pub os_version: [u32; 3],
    /// `DeviceProps.platformType`.
    pub platform_type: device_props::PlatformType,
    /// Whether to ask the phone for a full history sync.
    pub require_full_sync: bool,
    /// Locale language (ISO 639-1).
    pub language: String,
    /// Locale country (ISO 3166-1 alpha-2).
    pub country: String,
}

impl Default for ClientProfile {
    fn default() -> ClientProfile {
        ClientProfile {
            wa_version: DEFAULT_WA_VERSION,
            os: "wa-gateway".into(),
            os_version: [0, 1, 0],
            platform_type: device_props::PlatformType::Chrome,
            require_full_sync: false,
            language: "en".into(),
            country: "US".into(),
        }
    }
}

impl ClientProfile {
    /// `"2.3000.<build>"`.
    pub fn version_string(&self) -> String {
        let [a, b, c] = self.wa_version;
        format!("{a}.{b}.{c}")
    }

    /// Parses `"2.3000.1045649367"`.
    pub fn parse_version(s: &str) -> Option<[u32; 3]> {
        let mut it = s.trim().split('.').map(|p| p.parse::<u32>().ok());
        let v = [it.next()??, it.next()??, it.next()??];
        it.next().is_none().then_some(v)
    }

    /// The QR platform character (PROTOCOL.md §6.2) matching `platform_type`.
    pub fn qr_platform(&self) -> char {
        use device_props::PlatformType as P;
        match self.platform_type {
            P::Chrome => '1',
            P::Edge => '2',
            P::Firefox => '3',
            P::Ie => '4',
            P::Opera => '5',
            P::Safari => '6',
            P::Desktop => '7',
            P::Uwp => '8',
            _ => '9',
        }
    }

    fn user_agent(&self) -> UserAgent {
        let [primary, secondary, tertiary] = self.wa_version;
        UserAgent {
            platform: Some(user_agent::Platform::Web as i32),
            app_version: Some(user_agent::AppVersion {
                primary: Some(primary),
                secondary: Some(secondary),
                tertiary: Some(tertiary),
                ..Default::default()
            }),
            mcc: Some("000".into()),
            mnc: Some("000".into()),
            os_version: Some("0.1".into()),
            device: Some("Desktop".into()),
            os_build_number: Some("0.1".into()),
            release_channel: Some(user_agent::ReleaseChannel::Release as i32),
            locale_language_iso_639_1: Some(self.language.clone()),
            locale_country_iso_3166_1_alpha_2: Some(self.country.clone()),
            ..Default::default()
        }
    }

    fn base(&self) -> ClientPayload {
        ClientPayload {
            user_agent: Some(self.user_agent()),
            web_info: Some(WebInfo {
                web_sub_platform: Some(web_info::WebSubPlatform::WebBrowser as i32),
                ..Default::default()
            }),
            connect_type: Some(ConnectType::WifiUnknown as i32),
            connect_reason: Some(ConnectReason::UserActivated as i32),
            ..Default::default()
        }
    }

    /// DeviceProps as the references send them (history sync limits like Baileys').
    pub fn device_props(&self) -> DeviceProps {
        let [primary, secondary, tertiary] = self.os_version;
        DeviceProps {
            os: Some(self.os.clone()),
            version: Some(device_props::AppVersion {
                primary: Some(primary),
                secondary: Some(secondary),
                tertiary: Some(tertiary),
                ..Default::default()
            }),
            platform_type: Some(self.platform_type as i32),
            require_full_sync: Some(self.require_full_sync),
            history_sync_config: Some(HistorySyncConfig {
                storage_quota_mb: Some(10240),
                inline_initial_payload_in_e2ee_msg: Some(true),
                support_call_log_history: Some(false),
                support_bot_user_agent_chat_history: Some(true),
                support_cag_reactions_and_polls: Some(true),
                support_biz_hosted_msg: Some(true),
                support_recent_sync_chunk_message_count_tuning: Some(true),
                support_hosted_group_msg: Some(true),
                support_fbid_bot_chat_history: Some(true),
                support_message_association: Some(true),
                support_group_history: Some(false),
                ..Default::default()
            }),
        }
    }
}

/// MD5 of the version string: the `buildHash` of registration.
pub fn build_hash(version: &str) -> [u8; 16] {
    Md5::digest(version.as_bytes()).into()
}

/// The keys a registration announces.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationKeys<'a> {
    /// Registration id.
    pub registration_id: u32,
    /// Identity public key (raw 32 bytes).
    pub identity: &'a [u8; 32],
    /// Signed prekey id (sent as 3 bytes).
    pub signed_pre_key_id: u32,
    /// Signed prekey public key.
    pub signed_pre_key: &'a [u8; 32],
    /// Its signature by the identity key over `0x05 ‖ key`.
    pub signed_pre_key_signature: &'a [u8; 64],
}

/// The payload of a device that is not paired yet.
pub fn registration_payload(profile: &ClientProfile, keys: RegistrationKeys<'_>) -> ClientPayload {
    ClientPayload {
        passive: Some(false),
        pull: Some(false),
        device_pairing_data: Some(DevicePairingRegistrationData {
            e_regid: Some(keys.registration_id.to_be_bytes().to_vec()),
            e_keytype: Some(vec![5]),
            e_ident: Some(keys.identity.to_vec()),
            e_skey_id: Some(crate::util::bytes::u24_be(keys.signed_pre_key_id).to_vec()),
            e_skey_val: Some(keys.signed_pre_key.to_vec()),
            e_skey_sig: Some(keys.signed_pre_key_signature.to_vec()),
            build_hash: Some(build_hash(&profile.version_string()).to_vec()),
            device_props: Some(profile.device_props().encode_to_vec()),
        }),
        ..profile.base()
    }
}

/// Why a login payload cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored JID {0} has no numeric phone user")]
pub struct NotAPhoneJid(pub String);

/// The payload of a paired device logging in as `jid` (our PN device JID).
pub fn login_payload(
    profile: &ClientProfile,
    jid: &Jid,
    push_name: Option<&str>,
) -> Result<ClientPayload, NotAPhoneJid> {
    let username = jid
        .user
        .parse::<u64>()
        .map_err(|_| NotAPhoneJid(jid.to_string()))?;
    Ok(ClientPayload {
        username: Some(username),
        device: Some(u32::from(jid.device)),
        passive: Some(true),
        pull: Some(true),
        push_name: push_name.map(str::to_owned),
        ..profile.base()
    })
}
