//! App-state patch apply rate: decode + verify (patch MAC, every value and index MAC, AES-CBC,
//! index JSON, LTHash fold, snapshot MAC) + apply to the MAC table, for patches of 1, 100 and
//! 1000 mutations on a collection of 10,000 records. Half of each patch overwrites existing
//! records (an LTHash subtraction each), half adds new ones. Results in mutations/s:
//! benches/README.md ("App-state patch apply").
//!
//! `appstate/commit`: storing what was applied (`AppStateStore::commit_app_state` on SQLite, a
//! file database): a snapshot of 10,000 records replacing the collection, and a patch of 1,000
//! records on it. Records only (no chat or contact changes): the cost of the record writes.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wa_gateway::appstate::encode;
use wa_gateway::appstate::{
    Collection, CollectionState, MutationKeys, PendingMutation, decode_patch, decode_snapshot,
    encode_patch, encode_snapshot,
};
use wa_gateway::binary::Jid;
use wa_gateway::proto::wa;

const KID: &[u8] = b"\x00\x00bench";
const RECORDS: usize = 10_000;

fn contact(i: usize, name: &str) -> PendingMutation {
    let jid: Jid = format!("{}@s.whatsapp.net", 10_000_000 + i)
        .parse()
        .unwrap();
    let action = wa::ContactAction {
        full_name: Some(format!("{name} {i}")),
        first_name: Some(name.to_owned()),
        lid_jid: Some(format!("{}@lid", 90_000_000 + i)),
        ..Default::default()
    };
    encode::contact(&jid, Some(action)).1.remove(0)
}

fn ivs() -> impl FnMut() -> [u8; 16] {
    let mut n = 0u64;
    move || {
        n += 1;
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&n.to_le_bytes());
        iv
    }
}

fn appstate(c: &mut Criterion) {
    let c_name = Collection::CriticalUnblockLow;
    let key = MutationKeys::expand(&[0x42; 32]);
    let lookup = |id: &[u8]| (id == KID).then(|| key.clone());
    let records: Vec<_> = (0..RECORDS).map(|i| contact(i, "Old")).collect();
    let (snap, _) = encode_snapshot(c_name, 1, &records, KID, &key, &mut ivs());
    let base = {
        let a = decode_snapshot(c_name, &snap, &lookup).unwrap();
        let mut s = CollectionState::default();
        s.apply(&a);
        s
    };
    let mut g = c.benchmark_group("appstate/apply");
    for n in [1usize, 100, 1000] {
        // Even i overwrite record i; odd i add record RECORDS + i.
        let muts: Vec<_> = (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    contact(i, "New")
                } else {
                    contact(RECORDS + i, "New")
                }
            })
            .collect();
        let (mut patch, _) = encode_patch(c_name, &base, KID, &key, &muts, 1, &mut ivs());
        patch.version = Some(wa::SyncdVersion { version: Some(2) });
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(if n == 1000 { 20 } else { 50 });
        g.bench_function(format!("{n} mutations on {RECORDS} records"), |b| {
            b.iter_batched_ref(
                || base.clone(),
                |state| {
                    let a = decode_patch(c_name, state, black_box(&patch), &lookup).unwrap();
                    state.apply(&a);
                    black_box(a.version)
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// A stored record of `n` bytes of data.
fn record(i: usize, data: usize) -> wa_gateway::client::appstate_store::AppStateRecord {
    let mut mac = [0u8; 32];
    mac[..8].copy_from_slice(&(i as u64).to_le_bytes());
    wa_gateway::client::appstate_store::AppStateRecord {
        index_mac: mac,
        value_mac: [7; 32],
        index: format!("[\"contact\",\"{}@s.whatsapp.net\"]", 10_000_000 + i),
        data: vec![1; data],
    }
}

fn commit(c: &mut Criterion) {
    use wa_gateway::client::appstate_store::{AppStateCommit, AppStateStore, CollectionVersion};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let creds = rt.block_on(async {
        let store = wa_gateway::store::Store::open(&url).await.unwrap();
        let id = store.account("sub", "agent").await.unwrap();
        store.creds(id)
    });
    let commit_of = |replace: bool, records: Vec<_>| AppStateCommit {
        collection: "critical_unblock_low".into(),
        state: CollectionVersion {
            version: 1,
            hash: [0; 128],
        },
        replace,
        removed: Vec::new(),
        added: records,
        chats: Vec::new(),
        contacts: Vec::new(),
        nct_salt: None,
    };
    let snapshot = commit_of(true, (0..RECORDS).map(|i| record(i, 120)).collect());
    let patch = commit_of(false, (0..1000).map(|i| record(i * 7, 120)).collect());
    let mut g = c.benchmark_group("appstate/commit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function(format!("snapshot of {RECORDS} records"), |b| {
        b.iter(|| {
            rt.block_on(creds.commit_app_state(black_box(&snapshot)))
                .unwrap()
        })
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function(format!("patch of 1000 records on {RECORDS}"), |b| {
        b.iter(|| {
            rt.block_on(creds.commit_app_state(black_box(&patch)))
                .unwrap()
        })
    });
    g.finish();
}

const CONTACTS: usize = 20_000;
const SESSIONS: usize = 2_000;

fn lid_snapshot(c: &mut Criterion) {
    use std::time::{Duration, Instant};
    use wa_gateway::client::{AccountStore, ContactChange, CredsStore};
    use wa_gateway::signal::store::ApplyChanges;
    use wa_gateway::signal::{
        ProtocolAddress, SenderKeyName, SenderKeyRecord, SessionRecord, SignalChanges,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wa.db").display());
    let key = wa_gateway::store::StoreKey::generate();
    let store = rt
        .block_on(wa_gateway::store::Store::open_with(&url, Some(&key)))
        .unwrap();
    let pn = |i: usize| format!("{}", 4_915_550_000_000u64 + i as u64);
    let lid = |i: usize| format!("{}", 190_000_000_000_000u64 + i as u64);
    let pairs: Vec<(String, String)> = (0..CONTACTS).map(|i| (pn(i), lid(i))).collect();
    let contacts: Vec<ContactChange> = (0..CONTACTS)
        .map(|i| ContactChange {
            jid: Jid::new(pn(i), wa_gateway::binary::Server::User),
            full_name: Some(format!("Contact {i}")),
            first_name: Some("Contact".into()),
            ..ContactChange::default()
        })
        .collect();
    // What 2,000 numbers already have under their phone number: a session, an identity and a
    // sender key in one group, each to move to the LID.
    let signal_state = || {
        let mut ch = SignalChanges::default();
        let mut sk = SenderKeyRecord::new();
        sk.distribution();
        for i in 0..SESSIONS {
            let a = ProtocolAddress::new(pn(i), 0);
            ch.sessions.push((a.clone(), SessionRecord::new()));
            ch.identities.push((a.clone(), [i as u8; 32]));
            ch.sender_keys.push((
                SenderKeyName {
                    group: "120363000000000001@g.us".into(),
                    sender: a,
                },
                sk.clone(),
            ));
        }
        ch
    };
    let signal_state = signal_state();
    let mut n = 0usize;
    let mut fresh = |learned: bool| {
        n += 1;
        rt.block_on(async {
            let id = store.account("sub", &format!("agent-{n}")).await.unwrap();
            store.signal(id).apply(&signal_state).await.unwrap();
            let creds = store.creds(id);
            if learned {
                creds.learn_lids(&pairs).await.unwrap();
            }
            (id, creds)
        })
    };
    let mut g = c.benchmark_group("lid/snapshot");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CONTACTS as u64));
    g.bench_function(
        format!("learn {CONTACTS} pairs, {SESSIONS} sessions to move"),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (id, creds) = fresh(false);
                    let t = Instant::now();
                    rt.block_on(creds.learn_lids(black_box(&pairs))).unwrap();
                    total += t.elapsed();
                    rt.block_on(store.delete_account(id)).unwrap();
                }
                total
            })
        },
    );
    g.bench_function(format!("{CONTACTS} contact changes, pairs known"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (id, creds) = fresh(true);
                let t = Instant::now();
                rt.block_on(creds.apply_account_changes(&[], black_box(&contacts)))
                    .unwrap();
                total += t.elapsed();
                rt.block_on(store.delete_account(id)).unwrap();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, appstate, commit, lid_snapshot);
criterion_main!(benches);
