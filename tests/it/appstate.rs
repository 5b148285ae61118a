//! App-state sync end to end (issue 23): a newly linked companion gets the phone's key share,
//! syncs all five collections from the simulator's server (snapshots, then patches), keeps the
//! phone's contacts, and follows what the phone does (archive, mute, pin, read) through
//! `server_sync`; its own chat actions reach the phone as patches, a 409 is rebuilt; a
//! corrupted collection is recovered without help; a patch whose commit fails is applied again.

use std::time::Duration;

use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::appstate_store::AppStateStore;
use wa_gateway::client::{ChatAction, Event};
use wa_gateway::sim::{Corruption, PhoneAction, Simulator};

use super::messaging::{Account, account, eventually, link, next_event};

const LIMIT: Duration = Duration::from_secs(120);
const ME: &str = "15557650001";
const FRIEND: &str = "15557650002";
const OTHER: &str = "15557650003";

async fn sim() -> Simulator {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // Users the phone knows before it links: they become its contacts.
    sim.set_echo(FRIEND, false).unwrap();
    sim.set_echo(OTHER, false).unwrap();
    sim
}

/// Waits until every collection is stored at the version the simulator's server holds.
async fn synced(sim: &Simulator, a: &Account, number: &str) {
    for c in sim.app_state_collections() {
        let want = sim.app_state(number, c).map(|v| v.version).unwrap_or(0);
        eventually(&format!("collection {c} at {want}"), async || {
            let have = a.creds.app_state_version(c).await.unwrap();
            (have.map(|h| h.version) == Some(want)).then_some(())
        })
        .await;
    }
}

async fn chat_state(a: &Account, chat: &Jid) -> Option<wa_gateway::client::account::ChatSummary> {
    use wa_gateway::client::store::{AccountStore, CredsStore};
    let lid = a
        .creds
        .lid_for(&chat.user)
        .await
        .unwrap()
        .map(|l| Jid::new(l, Server::Lid));
    a.creds
        .chats(500, 0)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.chat == *chat || Some(&c.chat) == lid.as_ref())
}

/// Stores `change` as if a message or the address book had said it.
async fn note_contact(a: &Account, change: wa_gateway::client::account::ContactChange) {
    use wa_gateway::client::store::AccountStore;
    a.creds.apply_account_changes(&[], &[change]).await.unwrap();
}

#[tokio::test]
async fn a_new_companion_syncs_every_collection_and_keeps_the_phones_contacts() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let a = account().await;
        let (_client, _events, _jid) = link(&sim, &a, ME).await;
        synced(&sim, &a, ME).await;
        // The phone's contacts, with the LID each contact action names (a PN ↔ LID pair).
        use wa_gateway::client::store::{AccountStore, CredsStore};
        for number in [FRIEND, OTHER] {
            let lid = sim.lid_of(number).unwrap();
            let stored = a.creds.lid_for(number).await.unwrap();
            assert_eq!(
                stored.as_deref(),
                Some(lid.as_str()),
                "mapping for {number}"
            );
            let c = a
                .creds
                .contact(&Jid::new(number, Server::User))
                .await
                .unwrap()
                .expect("the contact is kept");
            let tail = &number[number.len() - 4..];
            assert_eq!(
                c.full_name.as_deref(),
                Some(format!("Contact {tail}").as_str())
            );
            assert_eq!(c.lid.as_ref().map(|l| l.user.as_str()), Some(lid.as_str()));
        }
        // Each collection's LTHash is the server's: the next patch verifies on top of it.
        for c in sim.app_state_collections() {
            let v = a.creds.app_state_version(c).await.unwrap().unwrap();
            assert_eq!(v.version, sim.app_state(ME, c).unwrap().version);
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn what_the_phone_does_reaches_the_companion_and_ours_reaches_the_phone() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let a = account().await;
        let (client, mut events, _jid) = link(&sim, &a, ME).await;
        synced(&sim, &a, ME).await;
        let friend = Jid::new(FRIEND, Server::User);
        // The phone archives and mutes a chat: server_sync, then the patch.
        sim.app_state_action(
            ME,
            &PhoneAction::Archive {
                chat: friend.clone(),
                archived: true,
            },
        )
        .unwrap();
        let until = 4_102_444_800_000i64;
        sim.app_state_action(
            ME,
            &PhoneAction::Mute {
                chat: friend.clone(),
                until_ms: Some(until),
            },
        )
        .unwrap();
        eventually("archived and muted", async || {
            let c = chat_state(&a, &friend).await?;
            (c.archived && c.muted_until == Some(until)).then_some(())
        })
        .await;
        // An event named the archive.
        next_event(&mut events, |e| {
            matches!(e, Event::AppStateActions { actions, .. }
                if actions.iter().any(|x| matches!(x, wa_gateway::appstate::Action::Archive { archived: true, .. })))
        })
        .await;
        // Ours: unarchive, pin, unmute, mark unread; the phone decodes each.
        client
            .chat_action(&friend, ChatAction::Archive(false))
            .await
            .unwrap();
        client.chat_action(&friend, ChatAction::Pin(true)).await.unwrap();
        client.chat_action(&friend, ChatAction::Mute(None)).await.unwrap();
        client.chat_action(&friend, ChatAction::Read(false)).await.unwrap();
        let low = sim.app_state(ME, "regular_low").unwrap();
        let value = |action: &str| {
            low.records
                .iter()
                .find(|r| r.index.first().map(String::as_str) == Some(action)
                    && r.index.get(1).map(String::as_str) == Some(friend.to_string().as_str()))
                .map(|r| r.value.clone())
        };
        assert_eq!(value("archive").unwrap()["archived"], false);
        assert_eq!(value("pin_v1").unwrap()["pinned"], true);
        assert_eq!(value("markChatAsRead").unwrap()["read"], false);
        let high = sim.app_state(ME, "regular_high").unwrap();
        let mute = high
            .records
            .iter()
            .find(|r| r.index.first().map(String::as_str) == Some("mute"))
            .unwrap();
        assert_eq!(mute.value["mute"]["muted"], false);
        // Our store says the same, and our versions are the server's.
        let c = chat_state(&a, &friend).await.unwrap();
        assert!(!c.archived && c.pinned.is_some() && c.muted_until.is_none() && c.marked_unread);
        synced(&sim, &a, ME).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_corrupted_collection_is_recovered_and_said_so() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let a = account().await;
        let (_client, mut events, _jid) = link(&sim, &a, ME).await;
        synced(&sim, &a, ME).await;
        let friend = Jid::new(FRIEND, Server::User);
        // A bad snapshotMAC on the next patch: the client resyncs from a snapshot.
        sim.app_state_action(
            ME,
            &PhoneAction::Archive {
                chat: friend.clone(),
                archived: true,
            },
        )
        .unwrap();
        assert!(sim.app_state_fault(ME, "regular_low", Corruption::Patch));
        eventually("archived after the resync", async || {
            let c = chat_state(&a, &friend).await?;
            c.archived.then_some(())
        })
        .await;
        // The mismatch was told.
        next_event(
            &mut events,
            |e| matches!(e, Event::AppStateFailed { recovery, .. } if recovery == "full_resync"),
        )
        .await;
        synced(&sim, &a, ME).await;
        // A bad snapshot too: only the phone's copy helps (fatal recovery).
        sim.app_state_action(
            ME,
            &PhoneAction::Archive {
                chat: friend.clone(),
                archived: false,
            },
        )
        .unwrap();
        assert!(sim.app_state_fault(ME, "regular_low", Corruption::Snapshot));
        eventually("unarchived from the phone's copy", async || {
            let c = chat_state(&a, &friend).await?;
            (!c.archived).then_some(())
        })
        .await;
        // The recovery request was told.
        next_event(&mut events, |e| {
            matches!(e, Event::AppStateFailed { recovery, .. } if recovery == "recovery_requested")
        })
        .await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_patch_whose_commit_fails_is_applied_again_not_lost() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let a = account().await;
        let (_client, mut events, _jid) = link(&sim, &a, ME).await;
        synced(&sim, &a, ME).await;
        let friend = Jid::new(FRIEND, Server::User);
        let before = a
            .creds
            .app_state_version("regular_low")
            .await
            .unwrap()
            .unwrap()
            .version;
        // The store dies between applying the patch and storing its version: the version's
        // write aborts the transaction, as a crash there would.
        sqlx::query(
            "CREATE TRIGGER die BEFORE UPDATE ON appstate_collections \
             BEGIN SELECT RAISE(ABORT, 'simulated crash'); END",
        )
        .execute(a.store.pool())
        .await
        .unwrap();
        sim.app_state_action(
            ME,
            &PhoneAction::Archive {
                chat: friend.clone(),
                archived: true,
            },
        )
        .unwrap();
        // The failure is told; nothing of the patch landed: not the chat change, not the
        // records, not the version.
        next_event(&mut events, |e| {
            matches!(e, Event::AppStateFailed { collection, recovery, .. }
                if collection == "regular_low" && recovery == "retry")
        })
        .await;
        let v = a
            .creds
            .app_state_version("regular_low")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.version, before);
        assert!(chat_state(&a, &friend).await.is_none_or(|c| !c.archived));
        // Back up: the retry applies it whole (and a later patch elsewhere too).
        sqlx::query("DROP TRIGGER die")
            .execute(a.store.pool())
            .await
            .unwrap();
        sim.app_state_action(
            ME,
            &PhoneAction::Mute {
                chat: friend.clone(),
                until_ms: Some(-1),
            },
        )
        .unwrap();
        eventually("archived and muted after the failure", async || {
            let c = chat_state(&a, &friend).await?;
            (c.archived && c.muted_until == Some(-1)).then_some(())
        })
        .await;
        synced(&sim, &a, ME).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn over_rest_a_chat_archived_on_the_phone_shows_and_ours_reaches_the_phone() {
    use serde_json::json;

    use super::rest::{Server as Gateway, call, get, token};
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        // The client's clock runs a day ahead of the system's: a relative mute counts from
        // the client's (the time its app-state actions carry), not the system's.
        let system_now = wa_gateway::util::clock::now_ms() / 1000;
        let client_now = system_now + 86_400;
        let mut client = super::messaging::options(&sim);
        client.socket.clock =
            std::sync::Arc::new(wa_gateway::util::clock::FixedClock::new(client_now));
        let server = Gateway::start_full(&db, client, Default::default()).await;
        let http = reqwest::Client::new();
        let tok = token(wa_gateway::api::Role::Admin, &["sub"], 3600);
        let base = format!("{}/api/whatsapp/sub/agent", server.url);
        super::rest::link(&sim, &http, &tok, &base, ME).await;
        let friend = Jid::new(FRIEND, Server::User);
        let chat_id = format!("{FRIEND}@c.us");
        // The phone's contacts show with number, LID and name.
        let contact = eventually("the phone's contact", async || {
            let (code, v) = get(&http, &format!("{base}/contacts/{chat_id}"), &tok).await;
            (code == 200).then_some(v)
        })
        .await;
        assert_eq!(
            contact["data"]["lid"],
            json!(format!("{}@lid", sim.lid_of(FRIEND).unwrap()))
        );
        // An address-book entry that never wrote and gave no token is cold; once it writes,
        // warm (the listing and the single contact agree).
        assert_eq!(contact["data"]["warm"], json!(false), "{contact}");
        sim.phone_send(FRIEND, ME, "hi, it's me").await.unwrap();
        let listed = eventually("the contact warm", async || {
            let (code, v) = get(&http, &format!("{base}/contacts"), &tok).await;
            assert_eq!(code, 200, "{v}");
            v["data"]["contacts"]
                .as_array()?
                .iter()
                .find(|c| c["pn"] == json!(chat_id) && c["warm"] == json!(true))
                .cloned()
        })
        .await;
        assert_eq!(listed["lid"], contact["data"]["lid"]);
        let (code, one) = get(&http, &format!("{base}/contacts/{chat_id}"), &tok).await;
        assert_eq!(code, 200, "{one}");
        assert_eq!(one["data"]["warm"], json!(true), "{one}");
        // Archived on the phone: the chat list says so.
        sim.app_state_action(
            ME,
            &PhoneAction::Archive {
                chat: friend.clone(),
                archived: true,
            },
        )
        .unwrap();
        let archived = async |want: bool| {
            eventually("the chat's archived flag", async || {
                let (code, v) = get(&http, &format!("{base}/chats"), &tok).await;
                assert_eq!(code, 200, "{v}");
                v["data"]["chats"]
                    .as_array()?
                    .iter()
                    .find(|c| c["pn"] == json!(chat_id))
                    .filter(|c| c["archived"] == json!(want))
                    .map(|_| ())
            })
            .await
        };
        archived(true).await;
        // Unarchived and muted for an hour over REST: the phone decodes both.
        for (action, body) in [
            ("unarchive", None),
            ("mute", Some(json!({"seconds": 3600}))),
        ] {
            let (code, v) = call(
                &http,
                reqwest::Method::POST,
                &format!("{base}/chats/{chat_id}/{action}"),
                Some(&tok),
                body,
            )
            .await;
            assert_eq!(code, 200, "{action}: {v}");
        }
        archived(false).await;
        let low = sim.app_state(ME, "regular_low").unwrap();
        assert!(
            low.records
                .iter()
                .any(|r| r.index.first().map(String::as_str) == Some("archive")
                    && r.value["archived"] == json!(false))
        );
        let high = sim.app_state(ME, "regular_high").unwrap();
        let until = high
            .records
            .iter()
            .find(|r| r.index.first().map(String::as_str) == Some("mute"))
            .and_then(|r| r.value["mute"]["until"].as_i64())
            .unwrap();
        assert_eq!(until, i64::try_from(client_now + 3600).unwrap() * 1000);
        // An unknown action is a 404 that names the actions.
        let (code, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/chats/{chat_id}/star"),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(code, 404, "{v}");
        assert_eq!(v["error"]["code"], json!("unknown_action"), "{v}");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_patch_that_meets_a_concurrent_change_is_rebuilt_after_the_409() {
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let a = account().await;
        let (client, _events, _jid) = link(&sim, &a, ME).await;
        synced(&sim, &a, ME).await;
        let friend = Jid::new(FRIEND, Server::User);
        let other = Jid::new(OTHER, Server::User);
        // The phone pins another chat at the moment our pin reaches the server.
        sim.app_state_write_first(
            ME,
            &PhoneAction::Pin {
                chat: other.clone(),
                pinned: true,
            },
        )
        .unwrap();
        let before = sim.app_state(ME, "regular_low").unwrap().version;
        client
            .chat_action(&friend, ChatAction::Pin(true))
            .await
            .unwrap();
        let low = sim.app_state(ME, "regular_low").unwrap();
        // Two patches: the phone's, then ours rebuilt on it.
        assert_eq!(low.version, before + 2);
        let pinned: Vec<String> = low
            .records
            .iter()
            .filter(|r| {
                r.index.first().map(String::as_str) == Some("pin_v1") && r.value["pinned"] == true
            })
            .filter_map(|r| r.index.get(1).cloned())
            .collect();
        assert!(
            pinned.contains(&friend.to_string()) && pinned.contains(&other.to_string()),
            "{pinned:?}"
        );
        // Both pins are ours too, and our version is the server's.
        assert!(chat_state(&a, &other).await.unwrap().pinned.is_some());
        assert!(chat_state(&a, &friend).await.unwrap().pinned.is_some());
        synced(&sim, &a, ME).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_contact_removed_on_the_phone_loses_its_names_but_keeps_its_push_name() {
    use wa_gateway::client::account::ContactChange;
    use wa_gateway::client::store::AccountStore;
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let a = account().await;
        let (_client, _events, _jid) = link(&sim, &a, ME).await;
        synced(&sim, &a, ME).await;
        let friend = Jid::new(FRIEND, Server::User);
        // The contact named itself in a message (a push name comes from the contact, not
        // from our address book).
        note_contact(
            &a,
            ContactChange {
                jid: friend.clone(),
                push_name: Some("Friendly".into()),
                ..ContactChange::default()
            },
        )
        .await;
        let before = a.creds.contact(&friend).await.unwrap().unwrap();
        assert!(before.full_name.is_some(), "the snapshot named the contact");
        sim.app_state_action(
            ME,
            &PhoneAction::RemoveContact {
                jid: friend.clone(),
            },
        )
        .unwrap();
        let after = eventually("the names are gone", async || {
            let c = a.creds.contact(&friend).await.unwrap()?;
            c.full_name.is_none().then_some(c)
        })
        .await;
        assert_eq!(after.first_name, None);
        assert_eq!(after.push_name.as_deref(), Some("Friendly"));
        assert_eq!(after.lid, before.lid);
        synced(&sim, &a, ME).await;
    })
    .await
    .expect("in time");
}

/// A record as a commit stores it (its MACs made up: the store does not verify them).
fn flag_record(n: u8, index: &[&str]) -> wa_gateway::client::appstate_store::AppStateRecord {
    wa_gateway::client::appstate_store::AppStateRecord {
        index_mac: [n; 32],
        value_mac: [n.wrapping_add(100); 32],
        index: serde_json::to_string(index).unwrap(),
        data: vec![n],
    }
}

/// A snapshot replacing `regular_low` (or a patch on it) at `version`.
fn low_commit(
    version: u64,
    replace: bool,
    added: Vec<wa_gateway::client::appstate_store::AppStateRecord>,
    chats: Vec<wa_gateway::client::account::ChatChange>,
) -> wa_gateway::client::appstate_store::AppStateCommit {
    wa_gateway::client::appstate_store::AppStateCommit {
        collection: "regular_low".into(),
        state: wa_gateway::client::appstate_store::CollectionVersion {
            version,
            hash: [0; 128],
        },
        replace,
        removed: Vec::new(),
        added,
        chats,
        contacts: Vec::new(),
        nct_salt: None,
    }
}

/// Both stores: a snapshot that no longer holds a chat's archive and pin records clears those
/// flags (a record still held keeps its own), in the snapshot's commit, and says which it
/// cleared; a flag record of a chat never stored makes no row when it goes.
async fn a_snapshot_clears_the_flags_of_records_it_no_longer_holds<S>(store: &S)
where
    S: AppStateStore + wa_gateway::client::store::AccountStore,
{
    use wa_gateway::client::account::ChatChange;
    let (x, y) = (
        Jid::new("15550000001", Server::User),
        Jid::new("15550000002", Server::User),
    );
    let (xs, ys) = (x.to_string(), y.to_string());
    let z = Jid::new("15550000003", Server::User);
    // Version 1: x archived and pinned, y archived; a mute record of z, a chat not stored.
    store
        .commit_app_state(&low_commit(
            1,
            true,
            vec![
                flag_record(1, &["archive", &xs]),
                flag_record(2, &["pin_v1", &xs]),
                flag_record(3, &["archive", &ys]),
                flag_record(4, &["mute", &z.to_string()]),
            ],
            vec![
                ChatChange {
                    chat: x.clone(),
                    archived: Some(true),
                    pinned: Some(Some(7)),
                    ..ChatChange::default()
                },
                ChatChange {
                    chat: y.clone(),
                    archived: Some(true),
                    ..ChatChange::default()
                },
            ],
        ))
        .await
        .unwrap();
    let state = async |chat: &Jid| {
        store
            .chats(100, 0)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.chat == *chat)
            .unwrap()
    };
    assert!(state(&x).await.archived && state(&x).await.pinned == Some(7));
    // A patch (not a replacement) leaves absent records alone.
    store
        .commit_app_state(&low_commit(2, false, Vec::new(), Vec::new()))
        .await
        .unwrap();
    assert!(state(&x).await.archived);
    // The snapshot at 3 holds y's archive record only.
    let cleared = store
        .commit_app_state(&low_commit(
            3,
            true,
            vec![flag_record(3, &["archive", &ys])],
            vec![ChatChange {
                chat: y.clone(),
                archived: Some(true),
                ..ChatChange::default()
            }],
        ))
        .await
        .unwrap();
    let (sx, sy) = (state(&x).await, state(&y).await);
    assert!(!sx.archived, "x's archive record is gone");
    assert_eq!(sx.pinned, None, "x's pin record is gone");
    assert!(sy.archived, "y's record is still held");
    // What it cleared is told back: x's archive and pin, z's mute; never y's.
    assert_eq!(cleared.len(), 3, "{cleared:?}");
    assert!(
        cleared
            .iter()
            .any(|c| c.chat == x && c.archived == Some(false))
    );
    assert!(
        cleared
            .iter()
            .any(|c| c.chat == x && c.pinned == Some(None))
    );
    assert!(
        cleared
            .iter()
            .any(|c| c.chat == z && c.muted_until == Some(None))
    );
    assert!(cleared.iter().all(|c| c.chat != y));
    // z was never a chat here: clearing its mute made no row.
    let chats = store.chats(100, 0).await.unwrap();
    assert!(chats.iter().all(|c| c.chat != z), "no empty row for z");
}

#[tokio::test]
async fn a_snapshot_clears_the_chat_flags_of_records_it_no_longer_holds() {
    let a = account().await;
    a_snapshot_clears_the_flags_of_records_it_no_longer_holds(a.creds.as_ref()).await;
    let memory = wa_gateway::client::store::MemoryCreds::default();
    a_snapshot_clears_the_flags_of_records_it_no_longer_holds(&memory).await;
}

#[tokio::test]
async fn a_contact_is_warm_while_its_privacy_token_lasts() {
    use wa_gateway::client::account::ContactChange;
    use wa_gateway::client::store::{AccountStore, CredsStore};
    use wa_gateway::stanza::privacy::{TC_BUCKET_SECS, TC_NUM_BUCKETS, bucket};
    let a = account().await;
    let friend = Jid::new(FRIEND, Server::User);
    note_contact(
        &a,
        ContactChange {
            jid: friend.clone(),
            full_name: Some("Friend".into()),
            ..ContactChange::default()
        },
    )
    .await;
    let t = 1_800_000_000;
    let c = a.creds.contact(&friend).await.unwrap().unwrap();
    assert_eq!((c.token_at, c.wrote_to_us), (None, false));
    assert!(!c.warm(t), "no token, never wrote: cold");
    a.creds
        .set_privacy_token(&friend, b"token", t)
        .await
        .unwrap();
    let c = a.creds.contact(&friend).await.unwrap().unwrap();
    assert_eq!(c.token_at, Some(t));
    assert!(c.warm(t + 1));
    // The first moment the token's bucket falls out of the window, it is cold again.
    let expired = (bucket(t) + TC_NUM_BUCKETS) * TC_BUCKET_SECS;
    assert!(c.warm(expired - 1), "still inside the window");
    assert!(!c.warm(expired), "the token expired");
    let listed = a.creds.contacts(10, 0).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].token_at, Some(t));
}

#[tokio::test]
async fn a_snapshot_that_drops_a_flag_record_says_so_and_makes_no_row_for_an_unknown_chat() {
    use wa_gateway::appstate::Action;
    use wa_gateway::client::account::ChatChange;
    tokio::time::timeout(LIMIT, async {
        let sim = sim().await;
        let a = account().await;
        let (_client, mut events, _jid) = link(&sim, &a, ME).await;
        synced(&sim, &a, ME).await;
        let friend = Jid::new(FRIEND, Server::User);
        // What the server no longer holds: an archive record of a chat we have (archived
        // here), and a pin record of a chat we never had. Our hash is made stale with them, so
        // the next patch does not verify and the collection is replaced by a snapshot.
        let (kept, ghost) = (
            Jid::new("15557650009", Server::User),
            Jid::new("15557650008", Server::User),
        );
        let stored = a
            .creds
            .app_state_version("regular_low")
            .await
            .unwrap()
            .unwrap();
        let mut commit = low_commit(
            stored.version,
            false,
            vec![
                flag_record(201, &["archive", &kept.to_string()]),
                flag_record(202, &["pin_v1", &ghost.to_string()]),
            ],
            vec![ChatChange {
                chat: kept.clone(),
                archived: Some(true),
                ..ChatChange::default()
            }],
        );
        commit.state.hash = [9; 128];
        a.creds.commit_app_state(&commit).await.unwrap();
        assert!(chat_state(&a, &kept).await.unwrap().archived);
        sim.app_state_action(
            ME,
            &PhoneAction::Pin {
                chat: friend.clone(),
                pinned: true,
            },
        )
        .unwrap();
        next_event(
            &mut events,
            |e| matches!(e, Event::AppStateFailed { collection, recovery, .. } if collection == "regular_low" && recovery == "full_resync"),
        )
        .await;
        // The snapshot's commit cleared both flags, and told them.
        let mut told = Vec::new();
        while !(told.contains(&Action::Archive {
            chat: kept.clone(),
            archived: false,
        }) && told.contains(&Action::Pin {
            chat: ghost.clone(),
            pinned: false,
        })) {
            if let Event::AppStateActions {
                collection,
                actions,
            } = next_event(&mut events, |e| matches!(e, Event::AppStateActions { .. })).await
            {
                assert_eq!(collection, "regular_low");
                told.extend(actions);
            }
        }
        assert!(!chat_state(&a, &kept).await.unwrap().archived, "unarchived");
        assert!(
            chat_state(&a, &ghost).await.is_none(),
            "no row for a chat we never had"
        );
        // The snapshot's own state landed with it.
        eventually("pinned from the snapshot", async || {
            chat_state(&a, &friend).await?.pinned.map(|_| ())
        })
        .await;
        synced(&sim, &a, ME).await;
    })
    .await
    .expect("in time");
}
