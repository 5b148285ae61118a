//! What a decoded mutation means (CLIENT-FEATURES §3.6 table, §3.8): the actions the gateway
//! acts on, read from the index and the matching `SyncActionValue` field. An index the gateway
//! does not know, a JID that does not parse, or a value without the field its index calls for
//! gives [`Action::Other`]: the client keeps such a record raw, by index. Never panics.

use super::decode::Mutation;
use super::state::Operation;
use crate::binary::Jid;

/// An NCT salt (§1.1). Secret: Debug shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Salt(pub Vec<u8>);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Salt({} bytes)", self.0.len())
    }
}

/// One mutation's meaning. `Debug` names the kind and the JIDs, never a name (contact names,
/// push names and usernames are personal data and stay out of logs).
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// `["contact", jid]` SET: an address-book entry.
    Contact {
        /// index[1]: the contact (a PN or a LID).
        jid: Jid,
        /// ContactAction.fullName.
        full_name: Option<String>,
        /// ContactAction.firstName.
        first_name: Option<String>,
        /// ContactAction.lidJID: the contact's LID (a PN↔LID mapping when `jid` is a PN).
        lid: Option<Jid>,
        /// ContactAction.pnJID: the contact's PN (when `jid` is a LID).
        pn: Option<Jid>,
        /// ContactAction.username.
        username: Option<String>,
    },
    /// `["contact", jid]` REMOVE: the entry is gone.
    ContactRemoved {
        /// index[1].
        jid: Jid,
    },
    /// `["lid_contact", lid]` SET.
    LidContact {
        /// index[1].
        lid: Jid,
        /// LidContactAction.fullName.
        full_name: Option<String>,
        /// LidContactAction.firstName.
        first_name: Option<String>,
        /// LidContactAction.username.
        username: Option<String>,
    },
    /// `["setting_pushName"]`: our own push name.
    PushName(String),
    /// `["mute", chat]`: `until_ms` None = unmuted, Some(-1) = forever, else the end in ms.
    Mute {
        /// index[1].
        chat: Jid,
        /// muteEndTimestamp (ms), see above.
        until_ms: Option<i64>,
    },
    /// `["archive", chat]`.
    Archive {
        /// index[1].
        chat: Jid,
        /// ArchiveChatAction.archived.
        archived: bool,
    },
    /// `["pin_v1", chat]`.
    Pin {
        /// index[1].
        chat: Jid,
        /// PinAction.pinned.
        pinned: bool,
    },
    /// `["markChatAsRead", chat]`.
    MarkRead {
        /// index[1].
        chat: Jid,
        /// MarkChatAsReadAction.read (false: marked unread).
        read: bool,
    },
    /// `["deleteChat", chat, deleteMedia]`.
    DeleteChat {
        /// index[1].
        chat: Jid,
    },
    /// `["clearChat", chat, deleteStarred, deleteMedia]`.
    ClearChat {
        /// index[1].
        chat: Jid,
    },
    /// `["deleteMessageForMe", chat, id, fromMe, participant]`.
    DeleteMessageForMe {
        /// index[1].
        chat: Jid,
        /// index[2]: the message id.
        id: String,
        /// index[3] == "1".
        from_me: bool,
        /// index[4] unless "0".
        participant: Option<Jid>,
    },
    /// `["star", chat, id, fromMe, participant]`.
    Star {
        /// index[1].
        chat: Jid,
        /// index[2]: the message id.
        id: String,
        /// index[3] == "1".
        from_me: bool,
        /// index[4] unless "0".
        participant: Option<Jid>,
        /// StarAction.starred.
        starred: bool,
    },
    /// `["nct_salt_sync"]`: SET with a non-empty salt → `Some`, REMOVE → `None` (a REMOVE also
    /// blocks a history-sync backfill, whatsapp-rust; Appendix A). An empty SET is ignored
    /// (whatsapp-rust) and gives [`Action::Other`].
    NctSalt(Option<Salt>),
    /// `["pnForLidChat", lid]`: the PN of a LID chat.
    PnForLidChat {
        /// index[1].
        lid: Jid,
        /// PnForLidChatAction.pnJID.
        pn: Jid,
    },
    /// A REMOVE of a record the gateway acts on only by deleting it (mute, archive, pin…).
    Removed,
    /// Anything else: kept raw by index.
    Other,
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let jid = |j: &Jid| j.to_string();
        match self {
            // Names: only whether given.
            Action::Contact {
                jid: j,
                full_name,
                first_name,
                lid,
                pn,
                username,
            } => f
                .debug_struct("Contact")
                .field("jid", &jid(j))
                .field("lid", &lid.as_ref().map(jid))
                .field("pn", &pn.as_ref().map(jid))
                .field("full_name", &full_name.is_some())
                .field("first_name", &first_name.is_some())
                .field("username", &username.is_some())
                .finish(),
            Action::LidContact {
                lid,
                full_name,
                first_name,
                username,
            } => f
                .debug_struct("LidContact")
                .field("lid", &jid(lid))
                .field("full_name", &full_name.is_some())
                .field("first_name", &first_name.is_some())
                .field("username", &username.is_some())
                .finish(),
            Action::PushName(_) => f.write_str("PushName(..)"),
            Action::ContactRemoved { jid: j } => f
                .debug_struct("ContactRemoved")
                .field("jid", &jid(j))
                .finish(),
            Action::Mute { chat, until_ms } => f
                .debug_struct("Mute")
                .field("chat", &jid(chat))
                .field("until_ms", until_ms)
                .finish(),
            Action::Archive { chat, archived } => f
                .debug_struct("Archive")
                .field("chat", &jid(chat))
                .field("archived", archived)
                .finish(),
            Action::Pin { chat, pinned } => f
                .debug_struct("Pin")
                .field("chat", &jid(chat))
                .field("pinned", pinned)
                .finish(),
            Action::MarkRead { chat, read } => f
                .debug_struct("MarkRead")
                .field("chat", &jid(chat))
                .field("read", read)
                .finish(),
            Action::DeleteChat { chat } => f
                .debug_struct("DeleteChat")
                .field("chat", &jid(chat))
                .finish(),
            Action::ClearChat { chat } => f
                .debug_struct("ClearChat")
                .field("chat", &jid(chat))
                .finish(),
            Action::DeleteMessageForMe {
                chat,
                id,
                from_me,
                participant,
            } => f
                .debug_struct("DeleteMessageForMe")
                .field("chat", &jid(chat))
                .field("id", id)
                .field("from_me", from_me)
                .field("participant", &participant.as_ref().map(jid))
                .finish(),
            Action::Star {
                chat,
                id,
                from_me,
                participant,
                starred,
            } => f
                .debug_struct("Star")
                .field("chat", &jid(chat))
                .field("id", id)
                .field("from_me", from_me)
                .field("participant", &participant.as_ref().map(jid))
                .field("starred", starred)
                .finish(),
            Action::NctSalt(s) => f.debug_tuple("NctSalt").field(s).finish(),
            Action::PnForLidChat { lid, pn } => f
                .debug_struct("PnForLidChat")
                .field("lid", &jid(lid))
                .field("pn", &jid(pn))
                .finish(),
            Action::Removed => f.write_str("Removed"),
            Action::Other => f.write_str("Other"),
        }
    }
}

/// A chat or user JID: `user@server` with a non-empty user (the JID parser also accepts a bare
/// server, which no index names).
fn jid(s: Option<&String>) -> Option<Jid> {
    let j: Jid = s.filter(|s| s.contains('@'))?.parse().ok()?;
    (!j.user.is_empty()).then_some(j)
}

/// index[4] of star / deleteMessageForMe: a participant JID, or "0" for none.
fn participant(s: Option<&String>) -> Option<Jid> {
    jid(s.filter(|s| s.as_str() != "0"))
}

impl Action {
    /// The action's kind, stable and free of personal data (`contact`, `archive`, `mute`…):
    /// what logs and counts name it by.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Contact { .. } => "contact",
            Action::ContactRemoved { .. } => "contact_removed",
            Action::LidContact { .. } => "lid_contact",
            Action::PushName(_) => "push_name",
            Action::Mute { .. } => "mute",
            Action::Archive { .. } => "archive",
            Action::Pin { .. } => "pin",
            Action::MarkRead { .. } => "mark_read",
            Action::DeleteChat { .. } => "delete_chat",
            Action::ClearChat { .. } => "clear_chat",
            Action::DeleteMessageForMe { .. } => "delete_message_for_me",
            Action::Star { .. } => "star",
            Action::NctSalt(_) => "nct_salt",
            Action::PnForLidChat { .. } => "pn_for_lid_chat",
            Action::Removed => "removed",
            Action::Other => "other",
        }
    }

    /// Reads a verified mutation. Total: every input gives an action.
    pub fn from_mutation(m: &Mutation) -> Action {
        Action::read(m).unwrap_or(Action::Other)
    }

    fn read(m: &Mutation) -> Option<Action> {
        let idx = &m.index;
        let v = m.data.value.as_ref();
        let remove = m.operation == Operation::Remove;
        let kind = idx.first()?.as_str();
        match (kind, remove) {
            ("nct_salt_sync", true) => return Some(Action::NctSalt(None)),
            ("nct_salt_sync", false) => {
                let salt = v?.nct_salt_sync_action.as_ref()?.salt.clone()?;
                return (!salt.is_empty()).then_some(Action::NctSalt(Some(Salt(salt))));
            }
            ("contact", true) => {
                return Some(Action::ContactRemoved {
                    jid: jid(idx.get(1))?,
                });
            }
            (_, true) => return Some(Action::Removed),
            _ => {}
        }
        let v = v?;
        Some(match kind {
            "contact" => {
                let a = v.contact_action.as_ref()?;
                Action::Contact {
                    jid: jid(idx.get(1))?,
                    full_name: a.full_name.clone(),
                    first_name: a.first_name.clone(),
                    lid: jid(a.lid_jid.as_ref()),
                    pn: jid(a.pn_jid.as_ref()),
                    username: a.username.clone(),
                }
            }
            "lid_contact" => {
                let a = v.lid_contact_action.as_ref()?;
                Action::LidContact {
                    lid: jid(idx.get(1))?,
                    full_name: a.full_name.clone(),
                    first_name: a.first_name.clone(),
                    username: a.username.clone(),
                }
            }
            "setting_pushName" => Action::PushName(v.push_name_setting.as_ref()?.name.clone()?),
            "mute" => {
                let a = v.mute_action.as_ref()?;
                let until_ms = if a.muted.unwrap_or(false) {
                    // Muted with no end is muted forever (whatsmeow `BuildMuteAbs` sends -1).
                    Some(a.mute_end_timestamp.filter(|t| *t != 0).unwrap_or(-1))
                } else {
                    None
                };
                Action::Mute {
                    chat: jid(idx.get(1))?,
                    until_ms,
                }
            }
            "archive" => Action::Archive {
                chat: jid(idx.get(1))?,
                archived: v.archive_chat_action.as_ref()?.archived.unwrap_or(false),
            },
            "pin_v1" => Action::Pin {
                chat: jid(idx.get(1))?,
                pinned: v.pin_action.as_ref()?.pinned.unwrap_or(false),
            },
            "markChatAsRead" => Action::MarkRead {
                chat: jid(idx.get(1))?,
                read: v.mark_chat_as_read_action.as_ref()?.read.unwrap_or(false),
            },
            "deleteChat" => {
                v.delete_chat_action.as_ref()?;
                Action::DeleteChat {
                    chat: jid(idx.get(1))?,
                }
            }
            "clearChat" => {
                v.clear_chat_action.as_ref()?;
                Action::ClearChat {
                    chat: jid(idx.get(1))?,
                }
            }
            "deleteMessageForMe" => {
                v.delete_message_for_me_action.as_ref()?;
                Action::DeleteMessageForMe {
                    chat: jid(idx.get(1))?,
                    id: idx.get(2)?.clone(),
                    from_me: idx.get(3)? == "1",
                    participant: participant(idx.get(4)),
                }
            }
            "star" => Action::Star {
                chat: jid(idx.get(1))?,
                id: idx.get(2)?.clone(),
                from_me: idx.get(3)? == "1",
                participant: participant(idx.get(4)),
                starred: v.star_action.as_ref()?.starred.unwrap_or(false),
            },
            "pnForLidChat" => Action::PnForLidChat {
                lid: jid(idx.get(1))?,
                pn: jid(v.pn_for_lid_chat_action.as_ref()?.pn_jid.as_ref())?,
            },
            _ => return None,
        })
    }
}
