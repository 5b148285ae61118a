//! Signal, ours next to `wacore-libsignal` (whatsapp-rust's libsignal) in the same run: 100-byte
//! encrypt and decrypt on an established session, session setup from a prekey bundle, and
//! sender-key encrypt and decrypt. Both sides run through their store APIs over plain in-memory
//! object stores (a HashMap of records), so neither pays for serialization. Results:
//! benches/README.md.

use std::collections::HashMap;
use std::hint::black_box;

use std::sync::Mutex;
use std::time::{Duration, Instant};
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
    use wa_gateway::signal::store::{
        IdentityChange, IdentityStore, PreKey, PreKeyStore, SenderKeyStore, SessionStore,
        SignedPreKey, SignedPreKeyStore, StoreResult,
    };
    use wa_gateway::signal::*;

    #[derive(Default)]
    struct Maps {
        identities: HashMap<ProtocolAddress, [u8; 32]>,
        pre_keys: HashMap<u32, PreKey>,
        signed: HashMap<u32, SignedPreKey>,
        sessions: HashMap<ProtocolAddress, SessionRecord>,
        sender: HashMap<String, SenderKeyRecord>,
    }

    /// An object store like the one used for the peer below.
    pub struct ObjStore {
        id: LocalIdentity,
        m: Mutex<Maps>,
    }

    impl IdentityStore for ObjStore {
        async fn local_identity(&self) -> StoreResult<LocalIdentity> {
            Ok(self.id.clone())
        }
        async fn identity(&self, a: &ProtocolAddress) -> StoreResult<Option<[u8; 32]>> {
            Ok(self.m.lock().unwrap().identities.get(a).copied())
        }
        async fn save_identity(
            &self,
            a: &ProtocolAddress,
            k: &[u8; 32],
        ) -> StoreResult<IdentityChange> {
            Ok(
                match self.m.lock().unwrap().identities.insert(a.clone(), *k) {
                    None => IdentityChange::New,
                    Some(o) if &o == k => IdentityChange::Unchanged,
                    Some(_) => IdentityChange::Changed,
                },
            )
        }
    }
    impl PreKeyStore for ObjStore {
        async fn pre_key(&self, id: u32) -> StoreResult<Option<PreKey>> {
            Ok(self.m.lock().unwrap().pre_keys.get(&id).cloned())
        }
        async fn store_pre_keys(&self, keys: &[PreKey]) -> StoreResult<()> {
            let mut m = self.m.lock().unwrap();
            for k in keys {
                m.pre_keys.insert(k.id, k.clone());
            }
            Ok(())
        }
        async fn remove_pre_key(&self, id: u32) -> StoreResult<()> {
            self.m.lock().unwrap().pre_keys.remove(&id);
            Ok(())
        }
        async fn create_pre_keys(&self, n: u32) -> StoreResult<Vec<PreKey>> {
            let keys: Vec<PreKey> = (1..=n)
                .map(|id| PreKey {
                    id,
                    key_pair: KeyPair::generate(),
                })
                .collect();
            self.store_pre_keys(&keys).await?;
            Ok(keys)
        }
        async fn pre_keys_allocated(&self) -> StoreResult<u64> {
            Ok(self.m.lock().unwrap().pre_keys.len() as u64)
        }
    }
    impl SignedPreKeyStore for ObjStore {
        async fn signed_pre_key(&self, id: u32) -> StoreResult<Option<SignedPreKey>> {
            Ok(self.m.lock().unwrap().signed.get(&id).cloned())
        }
        async fn store_signed_pre_key(&self, k: &SignedPreKey) -> StoreResult<()> {
            self.m.lock().unwrap().signed.insert(k.id, k.clone());
            Ok(())
        }
    }
    impl SessionStore for ObjStore {
        async fn session(&self, a: &ProtocolAddress) -> StoreResult<Option<SessionRecord>> {
            Ok(self.m.lock().unwrap().sessions.get(a).cloned())
        }
        async fn store_session(&self, a: &ProtocolAddress, r: &SessionRecord) -> StoreResult<()> {
            self.m.lock().unwrap().sessions.insert(a.clone(), r.clone());
            Ok(())
        }
        async fn delete_session(&self, a: &ProtocolAddress) -> StoreResult<()> {
            self.m.lock().unwrap().sessions.remove(a);
            Ok(())
        }
    }
    impl SenderKeyStore for ObjStore {
        async fn sender_key(&self, n: &SenderKeyName) -> StoreResult<Option<SenderKeyRecord>> {
            Ok(self.m.lock().unwrap().sender.get(&n.to_string()).cloned())
        }
        async fn store_sender_key(
            &self,
            n: &SenderKeyName,
            r: &SenderKeyRecord,
        ) -> StoreResult<()> {
            self.m
                .lock()
                .unwrap()
                .sender
                .insert(n.to_string(), r.clone());
            Ok(())
        }
    }

    pub struct Pair {
        pub alice: SessionCipher<ObjStore>,
        pub bob: SessionCipher<ObjStore>,
        pub a: ProtocolAddress,
        pub b: ProtocolAddress,
        pub bundle: PreKeyBundle,
    }

    fn party(name: &str) -> SessionCipher<ObjStore> {
        let id = LocalIdentity {
            key_pair: KeyPair::generate(),
            registration_id: 77,
        };
        SessionCipher::new(
            ObjStore {
                id,
                m: Mutex::default(),
            },
            name,
            IdentityTrust::AcceptChanges,
        )
    }

    /// Alice and Bob with an established session (one message each way).
    pub async fn pair() -> Pair {
        let alice = party("alice");
        let bob = party("bob");
        let bid = bob.store().local_identity().await.unwrap();
        let signed = SignedPreKey::generate(1, &bid.key_pair, 0);
        bob.store().store_signed_pre_key(&signed).await.unwrap();
        let pk = PreKey {
            id: 5,
            key_pair: KeyPair::generate(),
        };
        bob.store()
            .store_pre_keys(std::slice::from_ref(&pk))
            .await
            .unwrap();
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
        }
    }

    pub fn group_name(p: &ProtocolAddress) -> SenderKeyName {
        SenderKeyName {
            group: "120363041234567890@g.us".into(),
            sender: p.clone(),
        }
    }

    pub async fn group(p: &Pair) {
        let n = group_name(&p.a);
        let skdm = p.alice.group_distribution(&n).await.unwrap();
        p.bob.process_group_distribution(&n, &skdm).await.unwrap();
    }
}

fn signal(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut g = c.benchmark_group("signal/encrypt 100B");
    let p = block(&rt, ours::pair());
    g.bench_function("wa-gateway", |b| {
        b.iter(|| block(&rt, p.alice.encrypt(&p.b, black_box(MSG))).unwrap())
    });
    let mut t = block(&rt, theirs::pair());
    g.bench_function("wacore-libsignal", |b| {
        b.iter(|| block(&rt, theirs::encrypt(&mut t.alice, &t.b)))
    });
    g.finish();

    let mut g = c.benchmark_group("signal/decrypt 100B");
    g.bench_function("wa-gateway", |b| {
        b.iter_custom(|iters| {
            let p = block(&rt, ours::pair());
            let cts: Vec<_> = (0..iters)
                .map(|_| block(&rt, p.alice.encrypt(&p.b, MSG)).unwrap())
                .collect();
            let start = Instant::now();
            for ct in &cts {
                black_box(
                    block(
                        &rt,
                        p.bob
                            .decrypt(&p.a, wa_gateway::signal::EncType::Whisper, ct.bytes()),
                    )
                    .unwrap(),
                );
            }
            start.elapsed()
        })
    });
    g.bench_function("wacore-libsignal", |b| {
        b.iter_custom(|iters| {
            let mut t = block(&rt, theirs::pair());
            let cts: Vec<_> = (0..iters)
                .map(|_| block(&rt, theirs::encrypt(&mut t.alice, &t.b)))
                .collect();
            let start = Instant::now();
            for ct in &cts {
                black_box(block(&rt, theirs::decrypt(&mut t.bob, &t.a, ct)));
            }
            start.elapsed()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("signal/session from bundle");
    let p = block(&rt, ours::pair());
    g.bench_function("wa-gateway", |b| {
        b.iter(|| block(&rt, p.alice.process_bundle(&p.b, black_box(&p.bundle))).unwrap())
    });
    let mut t = block(&rt, theirs::pair());
    g.bench_function("wacore-libsignal", |b| {
        b.iter(|| {
            let mut ids = theirs::Store {
                id: t.alice.id.clone(),
                ..Default::default()
            };
            block(
                &rt,
                wacore_libsignal::protocol::process_prekey_bundle(
                    &t.b,
                    &mut t.alice,
                    &mut ids,
                    black_box(&t.bundle),
                    &mut theirs::rng(),
                    wacore_libsignal::protocol::UsePQRatchet::No,
                ),
            )
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("signal/sender-key encrypt 100B");
    let p = block(&rt, ours::pair());
    block(&rt, ours::group(&p));
    let n = ours::group_name(&p.a);
    g.bench_function("wa-gateway", |b| {
        b.iter(|| block(&rt, p.alice.group_encrypt(&n, black_box(MSG))).unwrap())
    });
    let mut t = block(&rt, theirs::pair());
    block(&rt, theirs::group(&mut t));
    let tn = theirs::group_name(&t.a);
    g.bench_function("wacore-libsignal", |b| {
        b.iter(|| {
            block(
                &rt,
                wacore_libsignal::protocol::group_encrypt(
                    &mut t.alice,
                    &tn,
                    black_box(MSG),
                    &mut theirs::rng(),
                ),
            )
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("signal/sender-key decrypt 100B");
    g.bench_function("wa-gateway", |b| {
        b.iter_custom(|iters| {
            let p = block(&rt, ours::pair());
            block(&rt, ours::group(&p));
            let n = ours::group_name(&p.a);
            let cts: Vec<_> = (0..iters)
                .map(|_| block(&rt, p.alice.group_encrypt(&n, MSG)).unwrap())
                .collect();
            let start = Instant::now();
            for ct in &cts {
                black_box(block(&rt, p.bob.group_decrypt(&n, ct)).unwrap());
            }
            start.elapsed()
        })
    });
    g.bench_function("wacore-libsignal", |b| {
        b.iter_custom(|iters| {
            let mut t = block(&rt, theirs::pair());
            block(&rt, theirs::group(&mut t));
            let n = theirs::group_name(&t.a);
            let cts: Vec<_> = (0..iters)
                .map(|_| {
                    block(
                        &rt,
                        wacore_libsignal::protocol::group_encrypt(
                            &mut t.alice,
                            &n,
                            MSG,
                            &mut theirs::rng(),
                        ),
                    )
                    .unwrap()
                })
                .collect();
            let start = Instant::now();
            for ct in &cts {
                black_box(
                    block(
                        &rt,
                        wacore_libsignal::protocol::group_decrypt(ct.serialized(), &mut t.bob, &n),
                    )
                    .unwrap(),
                );
            }
            let _ = Duration::ZERO;
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, signal);
criterion_main!(benches);
