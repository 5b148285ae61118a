//! App-state patch apply rate: decode + verify (patch MAC, every value and index MAC, AES-CBC,
//! index JSON, LTHash fold, snapshot MAC) + apply to the MAC table, for patches of 1, 100 and
//! 1000 mutations on a collection of 10,000 records. Half of each patch overwrites existing
//! records (an LTHash subtraction each), half adds new ones. Results in mutations/s:
//! benches/README.md ("App-state patch apply").

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

criterion_group!(benches, appstate);
criterion_main!(benches);
