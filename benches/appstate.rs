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

criterion_group!(benches, appstate, commit);
criterion_main!(benches);
