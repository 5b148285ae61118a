//! Group messaging end to end against the simulator over loopback: our client and simulated
//! users (real sender-key peers with several devices) in PN and LID groups; what each device
//! decrypted is read from the simulator, what went over the wire from its stanza log.

use std::sync::Arc;
use std::time::Duration;

use wa_gateway::binary::{Jid, Server};
use wa_gateway::client::{Client, Event, MessageStatus};
use wa_gateway::sim::Simulator;
use wa_gateway::sim::server::Fault;
use wa_gateway::stanza::group::{AddressingMode, MemberAction};

use super::messaging::{
    CrashAt, Crashy, account, canonical, eventually, link, next_event, options, user,
};

const LIMIT: Duration = Duration::from_secs(90);

/// How many of `number`'s devices decrypted message `id` of `group` (and its text).
fn read_by(sim: &Simulator, number: &str, group: &Jid, id: &str) -> Option<(usize, String)> {
    sim.phone_messages(number)
        .into_iter()
        .find(|m| m.id == id && m.chat == group.to_string())
        .map(|m| (m.devices, m.text.unwrap_or_default()))
}

/// The stanza log's entry for message `id`: its pairwise `<to>` targets and whether a
/// `skmsg` went with it.
fn wire(sim: &Simulator, id: &str) -> (Vec<String>, bool) {
    let log = sim.message_log();
    let entry = log
        .iter()
        .find(|l| l.id == id && l.to.ends_with("@g.us"))
        .expect("the message is in the log");
    let pairwise = entry
        .encs
        .iter()
        .filter(|(_, kind)| kind != "skmsg")
        .map(|(j, _)| j.clone())
        .collect();
    (pairwise, entry.encs.iter().any(|(_, kind)| kind == "skmsg"))
}

#[tokio::test]
async fn every_member_device_reads_our_texts_the_key_goes_once_and_authors_are_right() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let a = account().await;
        let (me, bob, carol) = ("15550101000", "15550102000", "15550103000");
        let (client, mut events, _) = link(&sim, &a, me).await;
        sim.set_devices(bob, 2).unwrap();
        sim.set_devices(carol, 2).unwrap();
        let group = sim
            .create_group("Team", bob, &[me.into(), carol.into()], AddressingMode::Pn)
            .unwrap();
        // We were told of the new group, and it is stored.
        let Event::GroupUpdate(created) =
            next_event(&mut events, |e| matches!(e, Event::GroupUpdate(_))).await
        else {
            unreachable!()
        };
        assert_eq!((created.group.clone(), created.action.as_str()), (group.clone(), "create"));
        assert_eq!(created.subject.as_deref(), Some("Team"));

        let first = client.send_text(&group, "hello team").await.unwrap();
        assert_eq!(first.status, MessageStatus::ServerAck);
        for who in [bob, carol] {
            let (devices, text) = eventually("both devices to read it", async || {
                read_by(&sim, who, &group, &first.id).filter(|(d, _)| *d == 2)
            })
            .await;
            assert_eq!((devices, text.as_str()), (2, "hello team"));
        }
        // The first send distributed our key to the four devices (and our phone), pairwise.
        let (pairwise, skmsg) = wire(&sim, &first.id);
        assert!(skmsg);
        for who in [bob, carol] {
            assert_eq!(
                pairwise.iter().filter(|j| j.starts_with(who)).count(),
                2,
                "{who}'s devices got our key: {pairwise:?}"
            );
        }
        // Their devices receipted it, per device.
        next_event(&mut events, |e| {
            matches!(e, Event::Receipt { id, device: Some(_), status: MessageStatus::Delivered, .. } if *id == first.id)
        })
        .await;

        // The second reuses the key: no distribution on the wire, and everyone reads it.
        let second = client.send_text(&group, "second").await.unwrap();
        for who in [bob, carol] {
            eventually("both devices to read the second", async || {
                read_by(&sim, who, &group, &second.id).filter(|(d, _)| *d == 2)
            })
            .await;
        }
        let (pairwise, skmsg) = wire(&sim, &second.id);
        assert!(skmsg);
        assert!(pairwise.is_empty(), "no new distribution: {pairwise:?}");

        // Each user's text arrives with its author, in the group's conversation.
        let from_bob = sim.phone_send(bob, &group.to_string(), "from bob").await.unwrap();
        let from_carol = sim.phone_send(carol, &group.to_string(), "from carol").await.unwrap();
        for (id, who, text) in [(&from_bob, bob, "from bob"), (&from_carol, carol, "from carol")] {
            let Event::Message(m) =
                next_event(&mut events, |e| matches!(e, Event::Message(m) if m.id == *id)).await
            else {
                unreachable!()
            };
            assert_eq!(m.chat, group);
            assert_eq!(m.sender, canonical(&a.creds, &user(who)).await);
            assert_eq!(m.text.as_deref(), Some(text));
            assert!(!m.from_me);
        }
        let rows = client.messages(Some(&group), 10, 0).await.unwrap();
        assert_eq!(rows.len(), 4, "two sent, two received, once each");

        // Receipts the server aggregates per message still reach each device's rung.
        sim.fault(me, Fault::AggregateReceipts(true)).await;
        let third = client.send_text(&group, "third").await.unwrap();
        let mut devices = std::collections::BTreeSet::new();
        while devices.len() < 4 {
            let Event::Receipt { device: Some(d), .. } = next_event(&mut events, |e| {
                matches!(e, Event::Receipt { id, device: Some(d), status: MessageStatus::Delivered, .. }
                    if *id == third.id && (d.user == bob || d.user == carol))
            })
            .await
            else {
                unreachable!()
            };
            devices.insert(d);
        }
        assert_eq!(devices.len(), 4);
        a.store.close().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn an_added_member_reads_our_next_text_and_a_removed_one_cannot() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob, dave) = ("15550201000", "15550202000", "15550204000");
        let (client, mut events, _) = link(&sim, &a, me).await;
        let group = sim
            .create_group("Club", me, &[bob.into()], AddressingMode::Pn)
            .unwrap();
        let first = client.send_text(&group, "before").await.unwrap();
        eventually("bob reads it", async || {
            read_by(&sim, bob, &group, &first.id)
        })
        .await;

        // Dave joins: our next message brings him our key, and he reads it.
        sim.group_members(&group, &[dave.into()], &[], false)
            .await
            .unwrap();
        next_event(
            &mut events,
            |e| matches!(e, Event::GroupUpdate(u) if u.action == "add"),
        )
        .await;
        let second = client.send_text(&group, "welcome dave").await.unwrap();
        let (devices, text) = eventually("dave's devices read it", async || {
            read_by(&sim, dave, &group, &second.id).filter(|(d, _)| *d == 2)
        })
        .await;
        assert_eq!((devices, text.as_str()), (2, "welcome dave"));
        let (pairwise, _) = wire(&sim, &second.id);
        assert!(
            pairwise.iter().all(|j| j.starts_with(dave)),
            "only dave was sent our key: {pairwise:?}"
        );
        assert_eq!(pairwise.len(), 2);

        // Bob leaves: our key starts over; his devices try the next message and fail.
        sim.group_members(&group, &[], &[bob.into()], false)
            .await
            .unwrap();
        next_event(
            &mut events,
            |e| matches!(e, Event::GroupUpdate(u) if u.action == "remove"),
        )
        .await;
        assert_eq!(client.stats().group_key_rotations, 1);
        let third = client.send_text(&group, "after bob").await.unwrap();
        eventually("dave reads the third", async || {
            read_by(&sim, dave, &group, &third.id).filter(|(d, _)| *d == 2)
        })
        .await;
        let (pairwise, _) = wire(&sim, &third.id);
        assert_eq!(
            pairwise.iter().filter(|j| j.starts_with(dave)).count(),
            2,
            "the new key went to dave"
        );
        let tries = eventually("bob's devices to try", async || {
            Some(sim.eavesdrops(&group, &third.id)).filter(|t| t.len() == 2)
        })
        .await;
        assert!(tries.iter().all(|t| !t.read && t.device.starts_with(bob)));
        assert!(read_by(&sim, bob, &group, &third.id).is_none());
        // Stored: the membership changes, newest first.
        let updates = client.group_updates(&group, 10).await.unwrap();
        let actions: Vec<&str> = updates.iter().map(|u| u.action.as_str()).collect();
        assert_eq!(&actions[..2], ["remove", "add"]);
        a.store.close().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_lid_group_works_with_lid_participants_and_authors_are_one_contact() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob, carol) = ("15550301000", "15550302000", "15550303000");
        let (client, mut events, _) = link(&sim, &a, me).await;
        let group = sim
            .create_group("LID", carol, &[me.into(), bob.into()], AddressingMode::Lid)
            .unwrap();
        let info = client.group_info(&group).await.unwrap();
        assert_eq!(info.addressing, AddressingMode::Lid);
        assert!(
            info.participants
                .iter()
                .all(|p| p.jid.server == Server::Lid)
        );

        let sent = client.send_text(&group, "hi lids").await.unwrap();
        for who in [bob, carol] {
            eventually("the member's devices read it", async || {
                read_by(&sim, who, &group, &sent.id).filter(|(d, _)| *d == 2)
            })
            .await;
        }
        let (pairwise, _) = wire(&sim, &sent.id);
        assert!(!pairwise.is_empty());
        assert!(
            pairwise.iter().all(|j| j.ends_with("@lid")),
            "LID devices only: {pairwise:?}"
        );

        // Bob writes in the group, then by number in a DM: one contact, his LID.
        let bob_lid = Jid::new(sim.lid_of(bob).unwrap(), Server::Lid);
        let in_group = sim
            .phone_send(bob, &group.to_string(), "group hi")
            .await
            .unwrap();
        let Event::Message(m) = next_event(
            &mut events,
            |e| matches!(e, Event::Message(m) if m.id == in_group),
        )
        .await
        else {
            unreachable!()
        };
        assert_eq!(
            (m.chat.clone(), m.sender.clone()),
            (group.clone(), bob_lid.clone())
        );
        let dm = sim.phone_send(bob, me, "dm hi").await.unwrap();
        let Event::Message(d) = next_event(
            &mut events,
            |e| matches!(e, Event::Message(m) if m.id == dm),
        )
        .await
        else {
            unreachable!()
        };
        assert_eq!(
            (d.chat.clone(), d.sender.clone()),
            (bob_lid.clone(), bob_lid.clone())
        );
        assert_eq!(canonical(&a.creds, &user(bob)).await, bob_lid);
        a.store.close().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_stale_member_list_is_refreshed_from_the_acks_phash() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob, erin) = ("15550401000", "15550402000", "15550405000");
        let (client, _events, _) = link(&sim, &a, me).await;
        let group = sim
            .create_group("Stale", bob, &[me.into()], AddressingMode::Pn)
            .unwrap();
        let first = client.send_text(&group, "one").await.unwrap();
        eventually("bob reads it", async || {
            read_by(&sim, bob, &group, &first.id)
        })
        .await;
        // Erin joins without a word to us.
        sim.group_members(&group, &[erin.into()], &[], true)
            .await
            .unwrap();
        client.send_text(&group, "two").await.unwrap();
        eventually("the refresh", async || {
            (client.stats().group_refreshes == 1).then_some(())
        })
        .await;
        let third = client.send_text(&group, "three").await.unwrap();
        let (pairwise, _) = wire(&sim, &third.id);
        assert_eq!(
            pairwise.iter().filter(|j| j.starts_with(erin)).count(),
            2,
            "erin got our key: {pairwise:?}"
        );
        for who in [bob, erin] {
            eventually("everyone reads the third", async || {
                read_by(&sim, who, &group, &third.id).filter(|(d, _)| *d == 2)
            })
            .await;
        }
        a.store.close().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_corrupted_skmsg_is_retried_and_resent_with_the_key_both_ways() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob) = ("15550501000", "15550502000");
        let (client, mut events, _) = link(&sim, &a, me).await;
        let group = sim
            .create_group("Noisy", bob, &[me.into()], AddressingMode::Pn)
            .unwrap();
        let first = client.send_text(&group, "one").await.unwrap();
        eventually("bob reads it", async || {
            read_by(&sim, bob, &group, &first.id).filter(|(d, _)| *d == 2)
        })
        .await;

        // Our skmsg reaches one of bob's devices broken: it asks, we resend pairwise with the
        // key, and it reads the message.
        sim.fault(bob, Fault::CorruptNext).await;
        let second = client.send_text(&group, "two").await.unwrap();
        let (pairwise, _) = wire(&sim, &second.id);
        assert!(
            pairwise.is_empty(),
            "sent with the shared key only: {pairwise:?}"
        );
        eventually(
            "both of bob's devices read it after the retry",
            async || read_by(&sim, bob, &group, &second.id).filter(|(d, _)| *d == 2),
        )
        .await;
        let resends: Vec<_> = sim
            .message_log()
            .into_iter()
            .filter(|l| l.id == second.id)
            .collect();
        assert_eq!(resends.len(), 2, "the message and one resend: {resends:?}");
        assert!(
            resends[1]
                .encs
                .iter()
                .all(|(_, kind)| kind == "msg" || kind == "pkmsg")
        );

        // Bob's skmsg reaches us broken: we ask, his phone resends, we store it once.
        sim.fault(me, Fault::CorruptNext).await;
        let id = sim
            .phone_send(bob, &group.to_string(), "three")
            .await
            .unwrap();
        next_event(
            &mut events,
            |e| matches!(e, Event::Undecryptable { id: i, .. } if *i == id),
        )
        .await;
        let Event::Message(m) = next_event(
            &mut events,
            |e| matches!(e, Event::Message(m) if m.id == id),
        )
        .await
        else {
            unreachable!()
        };
        assert_eq!(
            (m.chat.clone(), m.text.as_deref()),
            (group.clone(), Some("three"))
        );
        assert_eq!(client.stats().decrypt_failures, 1);
        let rows = client.messages(Some(&group), 10, 0).await.unwrap();
        assert_eq!(rows.iter().filter(|r| r.id == id).count(), 1);
        a.store.close().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_crash_while_receiving_a_group_message_with_its_key_loses_nothing() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        for (i, at) in [CrashAt::Decrypted, CrashAt::Committed]
            .into_iter()
            .enumerate()
        {
            let a = account().await;
            let (me, bob) = (format!("1555061{i}000"), format!("1555062{i}000"));
            let (client, _events, our_jid) = link(&sim, &a, &me).await;
            let group = sim
                .create_group("Crash", &bob, std::slice::from_ref(&me), AddressingMode::Pn)
                .unwrap();
            eventually("the group to reach our store", async || {
                client
                    .group_updates(&group, 1)
                    .await
                    .ok()
                    .filter(|u| !u.is_empty())
            })
            .await;
            drop(client);
            // Bob's first group text carries his key (pairwise) and the skmsg; the store dies
            // before (or right after) the commit that holds both.
            let crashy = Arc::new(Crashy {
                inner: a.creds.clone(),
                at,
                hit: tokio::sync::Notify::new(),
            });
            let (client, _events) = Client::start(options(&sim), crashy.clone());
            let hit = crashy.hit.notified();
            let id = sim
                .phone_send(&bob, &group.to_string(), "first words")
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(20), hit)
                .await
                .expect("the crash point is reached");
            drop(client);
            let stored = |rows: &[wa_gateway::client::StoredMessage]| {
                rows.iter().filter(|m| m.id == id).count()
            };
            let before = wa_gateway::client::CredsStore::messages(&*a.creds, Some(&group), 10, 0)
                .await
                .unwrap();
            assert_eq!(
                stored(&before),
                usize::from(at == CrashAt::Committed),
                "{at:?}"
            );
            assert!(
                sim.queued(&our_jid) >= 1,
                "{at:?}: not receipted, still queued"
            );
            // After the restart the redelivery is read (the key was not lost with the crash)
            // and stored once.
            let (client, _events) = Client::start(options(&sim), a.creds.clone());
            let rows = eventually("the redelivered group message", async || {
                let rows = client.messages(Some(&group), 10, 0).await.ok()?;
                (stored(&rows) == 1).then_some(rows)
            })
            .await;
            let m = rows.iter().find(|m| m.id == id).unwrap();
            assert_eq!(m.text.as_deref(), Some("first words"));
            eventually("the receipt", async || {
                (sim.queued(&our_jid) == 0).then_some(())
            })
            .await;
            assert_eq!(
                client.stats().decrypt_failures,
                0,
                "{at:?}: nothing needed a retry"
            );
            drop(client);
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_stale_addressing_mode_is_refused_with_421_and_the_send_goes_again_in_the_new_one() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob) = ("15550701000", "15550702000");
        let (client, _events, our_jid) = link(&sim, &a, me).await;
        let group = sim
            .create_group("Migrating", bob, &[me.into()], AddressingMode::Pn)
            .unwrap();
        let first = client.send_text(&group, "in pn").await.unwrap();
        eventually("bob reads it", async || {
            read_by(&sim, bob, &group, &first.id).filter(|(d, _)| *d == 2)
        })
        .await;
        // The group moves to LID addressing; nobody is told.
        sim.set_group_addressing(&group, AddressingMode::Lid)
            .unwrap();
        let second = client.send_text(&group, "after the move").await.unwrap();
        assert_eq!(second.status, MessageStatus::ServerAck);
        let attempts: Vec<_> = sim
            .message_log()
            .into_iter()
            .filter(|l| l.id == second.id && l.from == our_jid.to_string())
            .collect();
        assert_eq!(
            attempts.len(),
            2,
            "refused once, then sent again: {attempts:?}"
        );
        assert_eq!(attempts[0].error, Some(421));
        assert_eq!(attempts[1].error, None);
        assert!(
            attempts[1]
                .encs
                .iter()
                .filter(|(_, k)| k != "skmsg")
                .all(|(j, _)| j.ends_with("@lid")),
            "the new key went to LID devices: {:?}",
            attempts[1].encs
        );
        let (devices, text) = eventually("bob reads the resend", async || {
            read_by(&sim, bob, &group, &second.id).filter(|(d, _)| *d == 2)
        })
        .await;
        assert_eq!((devices, text.as_str()), (2, "after the move"));
        assert_eq!(
            client.group_info(&group).await.unwrap().addressing,
            AddressingMode::Lid
        );
        a.store.close().await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn our_client_creates_changes_and_leaves_a_group() {
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob, carol) = ("15550801000", "15550802000", "15550803000");
        let (client, mut events, _) = link(&sim, &a, me).await;
        sim.set_devices(bob, 2).unwrap();
        sim.set_devices(carol, 2).unwrap();
        let info = client.create_group("Ours", &[user(bob)]).await.unwrap();
        assert_eq!(info.subject, "Ours");
        assert!(info.jid.server == Server::Group);
        let theirs = sim.group_info(&info.jid).expect("the server has it");
        assert_eq!(theirs.participants.len(), 2);
        assert!(
            theirs
                .participants
                .iter()
                .any(|p| p.admin.as_deref() == Some("superadmin")
                    && p.phone_number.as_ref().map(|j| j.user.as_str()) == Some(me)),
            "we are its super admin: {theirs:?}"
        );
        let hello = client.send_text(&info.jid, "welcome").await.unwrap();
        eventually("bob reads it", async || {
            read_by(&sim, bob, &info.jid, &hello.id).filter(|(d, _)| *d == 2)
        })
        .await;

        // Add carol, remove bob: the server applies both; bob's devices cannot read on.
        let added = client
            .change_group_members(&info.jid, MemberAction::Add, &[user(carol)])
            .await
            .unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].1, None, "carol added: {added:?}");
        let removed = client
            .change_group_members(&info.jid, MemberAction::Remove, &[user(bob)])
            .await
            .unwrap();
        assert_eq!(removed[0].1, None, "bob removed: {removed:?}");
        assert_eq!(client.stats().group_key_rotations, 1);
        let theirs = sim.group_info(&info.jid).unwrap();
        let numbers: Vec<&str> = theirs
            .participants
            .iter()
            .filter_map(|p| p.phone_number.as_ref().map(|j| j.user.as_str()))
            .collect();
        assert_eq!(numbers, [me, carol]);
        let next = client.send_text(&info.jid, "carol's first").await.unwrap();
        eventually("carol reads it", async || {
            read_by(&sim, carol, &info.jid, &next.id).filter(|(d, _)| *d == 2)
        })
        .await;
        let tries = eventually("bob's devices to try", async || {
            Some(sim.eavesdrops(&info.jid, &next.id)).filter(|t| t.len() == 2)
        })
        .await;
        assert!(tries.iter().all(|t| !t.read));

        // A new subject reaches the members' clients; then we leave.
        client
            .set_group_subject(&info.jid, "Renamed")
            .await
            .unwrap();
        assert_eq!(sim.group_info(&info.jid).unwrap().subject, "Renamed");
        client.leave_group(&info.jid).await.unwrap();
        assert!(!sim.group_info(&info.jid).unwrap().has_member(&user(me)));
        let refused = client.send_text(&info.jid, "still here?").await;
        assert!(refused.is_err(), "no longer a member: {refused:?}");
        // The server told us of our own leaving too (stored as a change of the group).
        next_event(
            &mut events,
            |e| matches!(e, Event::GroupUpdate(u) if u.action == "remove" && u.group == info.jid),
        )
        .await;
        a.store.close().await;
    })
    .await
    .expect("in time");
}

/// A retry receipt or a receipt claiming another chat (`recipient`) from someone the message
/// never went to: nothing moves, and nothing is sent to them. A stranger's retry for a 1:1
/// message finds no such message in the chat with them; a non-member's retry for a group
/// message is refused before the message and our sender key go out again. Checked with the
/// stanzas pushed as the server would deliver them, then a text as a barrier (one connection,
/// in order).
#[tokio::test]
async fn receipts_and_retries_from_those_a_message_never_went_to_move_and_send_nothing() {
    use wa_gateway::binary::Node;
    tokio::time::timeout(LIMIT, async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = account().await;
        let (me, bob, carol) = ("15550111000", "15550112000", "15550113000");
        let (client, mut events, _) = link(&sim, &a, me).await;
        sim.set_devices(bob, 1).unwrap();
        sim.set_devices(carol, 1).unwrap();
        // Carol is a real peer we have talked to (so a bundle for her is at hand).
        let hello = sim.phone_send(carol, me, "hi").await.unwrap();
        next_event(
            &mut events,
            |e| matches!(e, Event::Message(m) if m.id == hello),
        )
        .await;

        let direct = client.send_text(&user(bob), "for bob only").await.unwrap();
        let group = sim
            .create_group("Closed", bob, &[me.into()], AddressingMode::Pn)
            .unwrap();
        next_event(&mut events, |e| matches!(e, Event::GroupUpdate(_))).await;
        let in_group = client.send_text(&group, "members only").await.unwrap();
        eventually("bob reads both", async || {
            (sim.phone_messages(bob)
                .iter()
                .filter(|m| m.id == direct.id || m.id == in_group.id)
                .count()
                == 2)
                .then_some(())
        })
        .await;

        let carol_device = Jid::with_device(carol, 0, Server::User);
        let now = wa_gateway::util::clock::now_ms() / 1000;
        let retry_child = |id: &str| {
            vec![
                Node::new("retry")
                    .attr("count", "1")
                    .attr("id", id.to_owned())
                    .attr("t", now.to_string())
                    .attr("v", "1"),
                Node::new("registration").bytes(4321u32.to_be_bytes().to_vec()),
            ]
        };
        let forged = [
            // "Bob read it", says carol.
            Node::new("receipt")
                .attr("id", direct.id.clone())
                .attr("from", carol_device.clone())
                .attr("recipient", user(bob))
                .attr("type", "read")
                .attr("t", now.to_string()),
            // Carol asks for bob's message again.
            Node::new("receipt")
                .attr("id", direct.id.clone())
                .attr("from", carol_device.clone())
                .attr("recipient", user(bob))
                .attr("type", "retry")
                .children(retry_child(&direct.id)),
            // Carol, not a member, asks for the group's message again.
            Node::new("receipt")
                .attr("id", in_group.id.clone())
                .attr("from", group.clone())
                .attr("participant", carol_device.clone())
                .attr("type", "retry")
                .children(retry_child(&in_group.id)),
        ];
        for n in &forged {
            assert_eq!(sim.push_stanza(me, n), 1);
        }
        let barrier = sim.phone_send(bob, me, "barrier").await.unwrap();
        next_event(
            &mut events,
            |e| matches!(e, Event::Message(m) if m.id == barrier),
        )
        .await;

        let chat = canonical(&a.creds, &user(bob)).await;
        let row = client
            .messages(Some(&chat), 10, 0)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.id == direct.id)
            .expect("our message");
        assert!(
            row.status < MessageStatus::Read,
            "carol cannot mark bob's chat read: {:?}",
            row.status
        );
        assert!(
            !sim.phone_messages(carol)
                .iter()
                .any(|m| m.id == direct.id || m.id == in_group.id),
            "carol decrypted neither"
        );
        drop(client);
    })
    .await
    .expect("in time");
}
