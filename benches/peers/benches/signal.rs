//! Signal, ours next to `wacore-libsignal` (whatsapp-rust's libsignal) in the same run: 100-byte
//! encrypt and decrypt on an established session, session setup from a prekey bundle, and
//! sender-key encrypt and decrypt. Ours runs through the stores the product runs — the
//! in-memory `MemoryStore` and the SQLite store (records serialized and parsed on every
//! operation, the SQLite one a real database file) — and the peer through its own store API over
//! in-memory object stores (its best case: no serialization). Results: benches/README.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use wa_gateway_peers::theirs;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const MSG: &[u8] = &[0x42; 100];

/// Runs a future to completion on a current-thread runtime.
fn block<F: std::future::Future>(rt: &Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

mod ours {
    use super::*;
    use wa_gateway::signal::*;

    /// Alice and Bob with an established session, each over a store of kind `S`.
    pub struct Pair<S> {
        pub alice: SessionCipher<S>,
        pub bob: SessionCipher<S>,
        pub a: ProtocolAddress,
        pub b: ProtocolAddress,
        pub bundle: PreKeyBundle,
        /// Keeps an SQLite database alive while the pair is used.
        pub _db: Option<wa_gateway::store::Store>,
    }

    fn identity() -> LocalIdentity {
        LocalIdentity {
            key_pair: KeyPair::generate(),
            registration_id: 77,
        }
    }

    /// The product's in-memory store (records serialized, as in SQLite).
    pub async fn memory() -> Pair<Arc<MemoryStore>> {
        let alice = SessionCipher::new(
            Arc::new(MemoryStore::new(identity())),
            IdentityTrust::AcceptChanges,
        );
        let bob = SessionCipher::new(
            Arc::new(MemoryStore::new(identity())),
            IdentityTrust::AcceptChanges,
        );
        establish(alice, bob, None).await
    }

    /// The product's SQLite store (one database file, WAL, as the service runs it).
    pub async fn sqlite(dir: &std::path::Path) -> Pair<wa_gateway::store::SqliteSignalStore> {
        let url = format!("sqlite://{}", dir.join("bench.db").display());
        let db = wa_gateway::store::Store::open(&url).await.unwrap();
        let mut parties = Vec::new();
        for name in ["alice", "bob"] {
            let store = db.signal(db.account("bench", name).await.unwrap());
            store.set_local_identity(&identity()).await.unwrap();
            parties.push(SessionCipher::new(store, IdentityTrust::AcceptChanges));
        }
        let bob = parties.pop().unwrap();
        let alice = parties.pop().unwrap();
        establish(alice, bob, Some(db)).await
    }

    async fn establish<S: SignalStore>(
        alice: SessionCipher<S>,
        bob: SessionCipher<S>,
        db: Option<wa_gateway::store::Store>,
    ) -> Pair<S> {
        let bid = bob.store().local_identity().await.unwrap();
        let signed = SignedPreKey::generate(1, &bid.key_pair, 0);
        bob.store().store_signed_pre_key(&signed).await.unwrap();
        let pk = bob.store().create_pre_keys(1).await.unwrap().remove(0);
        let bundle = PreKeyBundle {
            registration_id: bid.registration_id,
            pre_key: Some((pk.id, pk.key_pair.public)),
            signed_pre_key_id: 1,
            signed_pre_key: signed.key_pair.public,
            signed_pre_key_signature: signed.signature,
            identity_key: bid.key_pair.public,
        };
        let (a, b) = (
            ProtocolAddress::new("alice", 1),
            ProtocolAddress::new("bob", 1),
        );
        alice.process_bundle(&b, &bundle).await.unwrap();
        let m = alice.encrypt(&b, MSG).await.unwrap();
        bob.decrypt(&a, EncType::PreKey, m.bytes()).await.unwrap();
        let r = bob.encrypt(&a, MSG).await.unwrap();
        alice
            .decrypt(&b, EncType::Whisper, r.bytes())
            .await
            .unwrap();
        Pair {
            alice,
            bob,
            a,
            b,
            bundle,
            _db: db,
        }
    }

    pub fn group_name(p: &ProtocolAddress) -> SenderKeyName {
        SenderKeyName {
            group: "120363041234567890@g.us".into(),
            sender: p.clone(),
        }
    }

    pub async fn group<S: SignalStore>(p: &Pair<S>) {
        let n = group_name(&p.a);
        let skdm = p.alice.group_distribution(&n).await.unwrap();
        p.bob.process_group_distribution(&n, &skdm).await.unwrap();
    }
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Our five operations over stores made by `make` (a fresh pair each time it is called).
fn ours<S, F, Fut>(c: &mut Criterion, rt: &Runtime, label: &str, make: F)
where
    S: wa_gateway::signal::SignalStore,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ours::Pair<S>>,
{
    use wa_gateway::signal::EncType;
    let name = format!("wa-gateway {label}");
    let p = block(rt, make());
    group(c, "signal/encrypt 100B", |g: &mut Group| {
        g.bench_function(&name, |b| {
            b.iter(|| block(rt, p.alice.encrypt(&p.b, black_box(MSG))).unwrap())
        });
    });
    group(c, "signal/decrypt 100B", |g: &mut Group| {
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let p = block(rt, make());
                let cts: Vec<_> = (0..iters)
                    .map(|_| block(rt, p.alice.encrypt(&p.b, MSG)).unwrap())
                    .collect();
                let start = Instant::now();
                for ct in &cts {
                    black_box(
                        block(rt, p.bob.decrypt(&p.a, EncType::Whisper, ct.bytes())).unwrap(),
                    );
                }
                start.elapsed()
            })
        });
    });
    group(c, "signal/session from bundle", |g: &mut Group| {
        g.bench_function(&name, |b| {
            b.iter(|| block(rt, p.alice.process_bundle(&p.b, black_box(&p.bundle))).unwrap())
        });
    });
    let p = block(rt, make());
    block(rt, ours::group(&p));
    let n = ours::group_name(&p.a);
    group(c, "signal/sender-key encrypt 100B", |g: &mut Group| {
        g.bench_function(&name, |b| {
            b.iter(|| block(rt, p.alice.group_encrypt(&n, black_box(MSG))).unwrap())
        });
    });
    group(c, "signal/sender-key decrypt 100B", |g: &mut Group| {
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let p = block(rt, make());
                block(rt, ours::group(&p));
                let n = ours::group_name(&p.a);
                let cts: Vec<_> = (0..iters)
                    .map(|_| block(rt, p.alice.group_encrypt(&n, MSG)).unwrap())
                    .collect();
                let start = Instant::now();
                for ct in &cts {
                    black_box(block(rt, p.bob.group_decrypt(&n, ct)).unwrap());
                }
                start.elapsed()
            })
        });
    });
}

/// The peer's five operations over its own in-memory object stores.
fn theirs_all(c: &mut Criterion, rt: &Runtime) {
    use wacore_libsignal::protocol as w;
    let name = "wacore-libsignal";
    let mut t = block(rt, theirs::pair());
    group(c, "signal/encrypt 100B", |g: &mut Group| {
        g.bench_function(name, |b| {
            b.iter(|| block(rt, theirs::encrypt(&mut t.alice, &t.b)))
        });
    });
    group(c, "signal/decrypt 100B", |g: &mut Group| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut t = block(rt, theirs::pair());
                let cts: Vec<_> = (0..iters)
                    .map(|_| block(rt, theirs::encrypt(&mut t.alice, &t.b)))
                    .collect();
                let start = Instant::now();
                for ct in &cts {
                    black_box(block(rt, theirs::decrypt(&mut t.bob, &t.a, ct)));
                }
                start.elapsed()
            })
        });
    });
    group(c, "signal/session from bundle", |g: &mut Group| {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut ids = theirs::Store {
                    id: t.alice.id.clone(),
                    ..Default::default()
                };
                block(
                    rt,
                    w::process_prekey_bundle(
                        &t.b,
                        &mut t.alice,
                        &mut ids,
                        black_box(&t.bundle),
                        &mut theirs::rng(),
                        w::UsePQRatchet::No,
                    ),
                )
                .unwrap()
            })
        });
    });
    let mut t = block(rt, theirs::pair());
    block(rt, theirs::group(&mut t));
    let tn = theirs::group_name(&t.a);
    group(c, "signal/sender-key encrypt 100B", |g: &mut Group| {
        g.bench_function(name, |b| {
            b.iter(|| {
                block(
                    rt,
                    w::group_encrypt(&mut t.alice, &tn, black_box(MSG), &mut theirs::rng()),
                )
                .unwrap()
            })
        });
    });
    group(c, "signal/sender-key decrypt 100B", |g: &mut Group| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut t = block(rt, theirs::pair());
                block(rt, theirs::group(&mut t));
                let n = theirs::group_name(&t.a);
                let cts: Vec<_> = (0..iters)
                    .map(|_| {
                        block(
                            rt,
                            w::group_encrypt(&mut t.alice, &n, MSG, &mut theirs::rng()),
                        )
                        .unwrap()
                    })
                    .collect();
                let start = Instant::now();
                for ct in &cts {
                    black_box(
                        block(rt, w::group_decrypt(ct.serialized(), &mut t.bob, &n)).unwrap(),
                    );
                }
                start.elapsed()
            })
        });
    });
}

/// Adds to the named group (criterion merges functions of the same group in its report).
fn group(c: &mut Criterion, name: &str, f: impl FnOnce(&mut Group)) {
    let mut g = c.benchmark_group(name);
    f(&mut g);
    g.finish();
}

fn signal(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    theirs_all(c, &rt);
    ours(c, &rt, "(MemoryStore)", ours::memory);
    let dirs = std::sync::Mutex::new(Vec::new());
    ours(c, &rt, "(SQLite)", || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        dirs.lock().unwrap().push(dir);
        async move { ours::sqlite(&path).await }
    });
}

criterion_group!(benches, signal);
criterion_main!(benches);
