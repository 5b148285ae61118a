//! Signal, ours next to `wacore-libsignal` (whatsapp-rust's libsignal) in the same run: 100-byte
//! encrypt and decrypt on an established session, session setup from a prekey bundle, and
//! sender-key encrypt and decrypt. Both sides run through their store APIs over plain in-memory
//! object stores (a HashMap of records), so neither pays for serialization. Results:
//! benches/README.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

mod theirs {
    use super::*;
    use async_trait::async_trait;
    use wacore_libsignal::protocol::error::Result;
    use wacore_libsignal::protocol::*;

    #[derive(Default)]
    pub struct Store {
        pub identities: HashMap<String, IdentityKey>,
        pub pre_keys: HashMap<u32, PreKeyRecord>,
        pub signed: HashMap<u32, SignedPreKeyRecord>,
        pub sessions: HashMap<String, SessionRecord>,
        pub sender: HashMap<String, SenderKeyRecord>,
        pub id: Option<IdentityKeyPair>,
    }

    #[async_trait]
    impl IdentityKeyStore for Store {
        async fn get_identity_key_pair(&self) -> Result<IdentityKeyPair> {
            Ok(self.id.clone().unwrap())
        }
        async fn get_local_registration_id(&self) -> Result<u32> {
            Ok(77)
        }
        async fn save_identity(
            &mut self,
            a: &ProtocolAddress,
            k: &IdentityKey,
        ) -> Result<IdentityChange> {
            let old = self.identities.insert(a.to_string(), *k);
            Ok(IdentityChange::from_changed(old.is_some_and(|o| &o != k)))
        }
        async fn is_trusted_identity(
            &self,
            _: &ProtocolAddress,
            _: &IdentityKey,
            _: Direction,
        ) -> Result<bool> {
            Ok(true)
        }
        async fn get_identity(&self, a: &ProtocolAddress) -> Result<Option<IdentityKey>> {
            Ok(self.identities.get(&a.to_string()).copied())
        }
    }
    #[async_trait]
    impl PreKeyStore for Store {
        async fn get_pre_key(&self, id: PreKeyId) -> Result<PreKeyRecord> {
            Ok(self.pre_keys.get(&u32::from(id)).cloned().unwrap())
        }
        async fn save_pre_key(&mut self, id: PreKeyId, r: &PreKeyRecord) -> Result<()> {
            self.pre_keys.insert(u32::from(id), r.clone());
            Ok(())
        }
        async fn remove_pre_key(&mut self, id: PreKeyId) -> Result<()> {
            self.pre_keys.remove(&u32::from(id));
            Ok(())
        }
    }
    #[async_trait]
    impl SignedPreKeyStore for Store {
        async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> Result<SignedPreKeyRecord> {
            Ok(self.signed.get(&u32::from(id)).cloned().unwrap())
        }
        async fn save_signed_pre_key(
            &mut self,
            id: SignedPreKeyId,
            r: &SignedPreKeyRecord,
        ) -> Result<()> {
            self.signed.insert(u32::from(id), r.clone());
            Ok(())
        }
    }
    #[async_trait]
    impl SessionStore for Store {
        async fn load_session(&self, a: &ProtocolAddress) -> Result<Option<SessionRecord>> {
            Ok(self.sessions.get(&a.to_string()).cloned())
        }
        async fn has_session(&self, a: &ProtocolAddress) -> Result<bool> {
            Ok(self.sessions.contains_key(&a.to_string()))
        }
        async fn store_session(&mut self, a: &ProtocolAddress, r: SessionRecord) -> Result<()> {
            self.sessions.insert(a.to_string(), r);
            Ok(())
        }
    }
    #[async_trait]
    impl SenderKeyStore for Store {
        async fn store_sender_key(&mut self, n: &SenderKeyName, r: SenderKeyRecord) -> Result<()> {
            self.sender.insert(format!("{n:?}"), r);
            Ok(())
        }
        async fn load_sender_key(&self, n: &SenderKeyName) -> Result<Option<SenderKeyRecord>> {
            Ok(self.sender.get(&format!("{n:?}")).cloned())
        }
    }

    pub struct Pair {
        pub alice: Store,
        pub bob: Store,
        pub a: ProtocolAddress,
        pub b: ProtocolAddress,
        pub bundle: PreKeyBundle,
    }

    pub fn rng() -> rand010::rngs::ThreadRng {
        rand010::rng()
    }

    pub async fn pair() -> Pair {
        let mut r = rng();
        let mut alice = Store {
            id: Some(IdentityKeyPair::generate(&mut r)),
            ..Default::default()
        };
        let mut bob = Store {
            id: Some(IdentityKeyPair::generate(&mut r)),
            ..Default::default()
        };
        let bid = bob.id.clone().unwrap();
        let signed = KeyPair::generate(&mut r);
        let sig = bid
            .private_key()
            .calculate_signature(&signed.public_key.serialize(), &mut r)
            .unwrap();
        bob.signed.insert(
            1,
            SignedPreKeyRecord::new(1.into(), Timestamp::from_epoch_millis(0), &signed, &sig),
        );
        let pk = KeyPair::generate(&mut r);
        bob.pre_keys.insert(5, PreKeyRecord::new(5.into(), &pk));
        let bundle = PreKeyBundle::new(
            77,
            DeviceId::from(1),
            Some((5.into(), pk.public_key)),
            1.into(),
            signed.public_key,
            sig.to_vec(),
            *bid.identity_key(),
        )
        .unwrap();
        let a = ProtocolAddress::new("alice", DeviceId::from(1));
        let b = ProtocolAddress::new("bob", DeviceId::from(1));
        // The API takes the session and identity roles as separate stores.
        let mut ids = Store {
            id: alice.id.clone(),
            ..Default::default()
        };
        process_prekey_bundle(&b, &mut alice, &mut ids, &bundle, &mut r, UsePQRatchet::No)
            .await
            .unwrap();
        alice.identities = ids.identities;
        let m = encrypt(&mut alice, &b).await;
        decrypt(&mut bob, &a, &m).await;
        let r2 = encrypt(&mut bob, &a).await;
        decrypt(&mut alice, &b, &r2).await;
        Pair {
            alice,
            bob,
            a,
            b,
            bundle,
        }
    }

    pub async fn encrypt(s: &mut Store, to: &ProtocolAddress) -> CiphertextMessage {
        let mut tmp = Store {
            identities: std::mem::take(&mut s.identities),
            id: s.id.clone(),
            ..Default::default()
        };
        let ct = message_encrypt(MSG, to, s, &mut tmp).await.unwrap();
        s.identities = tmp.identities;
        ct
    }

    pub async fn decrypt(s: &mut Store, from: &ProtocolAddress, ct: &CiphertextMessage) -> Vec<u8> {
        // The API takes each store role separately; split one party's store into its roles.
        let mut sessions = Store {
            sessions: std::mem::take(&mut s.sessions),
            ..Default::default()
        };
        let mut ids = Store {
            identities: std::mem::take(&mut s.identities),
            id: s.id.clone(),
            ..Default::default()
        };
        let mut pre = Store {
            pre_keys: std::mem::take(&mut s.pre_keys),
            ..Default::default()
        };
        let signed = Store {
            signed: std::mem::take(&mut s.signed),
            ..Default::default()
        };
        let out = message_decrypt(
            ct,
            from,
            &mut sessions,
            &mut ids,
            &mut pre,
            &signed,
            &mut rng(),
            UsePQRatchet::No,
        )
        .await
        .unwrap();
        s.sessions = sessions.sessions;
        s.identities = ids.identities;
        s.pre_keys = pre.pre_keys;
        s.signed = signed.signed;
        out.plaintext
    }

    pub fn group_name(p: &ProtocolAddress) -> SenderKeyName {
        SenderKeyName::new("120363041234567890@g.us".into(), p.to_string())
    }

    pub async fn group(p: &mut Pair) {
        let n = group_name(&p.a);
        let skdm = create_sender_key_distribution_message(&n, &mut p.alice, &mut rng())
            .await
            .unwrap();
        process_sender_key_distribution_message(&n, &skdm, &mut p.bob)
            .await
            .unwrap();
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
