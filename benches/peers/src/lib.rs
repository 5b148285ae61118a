//! Side-by-side peers for wa-gateway: benchmarks and interoperability tests against
//! whatsapp-rust's crates (`wacore-binary`, `wacore-libsignal`). A separate workspace member so
//! that the main crate's `cargo test` never compiles them (their generated protobufs alone take
//! minutes on a 2-core machine). `.ci/run` runs this member's tests after the README's command.

pub mod theirs {
    //! A wacore-libsignal party over plain in-memory stores, with the role-splitting its API
    //! needs, for benches and interoperability tests.
    use std::collections::HashMap;

    /// The plaintext the bench helpers encrypt.
    pub const MSG: &[u8] = &[0x42; 100];
    use async_trait::async_trait;
    use wacore_libsignal::protocol::error::Result;
    use wacore_libsignal::protocol::*;

    /// One party's stores, all in one value.
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

    /// Two parties with an established session (Alice → Bob and back).
    pub struct Pair {
        pub alice: Store,
        pub bob: Store,
        pub a: ProtocolAddress,
        pub b: ProtocolAddress,
        pub bundle: PreKeyBundle,
    }

    /// The RNG their API takes (rand 0.10).
    pub fn rng() -> rand010::rngs::ThreadRng {
        rand010::rng()
    }

    /// Alice and Bob after one message each way.
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

    /// Encrypts [`MSG`] for `to`.
    pub async fn encrypt(s: &mut Store, to: &ProtocolAddress) -> CiphertextMessage {
        encrypt_bytes(s, to, MSG).await
    }

    /// Encrypts `plaintext` for `to` (the API takes the identity role as a separate store).
    pub async fn encrypt_bytes(
        s: &mut Store,
        to: &ProtocolAddress,
        plaintext: &[u8],
    ) -> CiphertextMessage {
        let mut tmp = Store {
            identities: std::mem::take(&mut s.identities),
            id: s.id.clone(),
            ..Default::default()
        };
        let ct = message_encrypt(plaintext, to, s, &mut tmp).await.unwrap();
        s.identities = tmp.identities;
        ct
    }

    /// Decrypts a message from `from`.
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

    /// The sender-key name of `p` in the bench group.
    pub fn group_name(p: &ProtocolAddress) -> SenderKeyName {
        SenderKeyName::new("120363041234567890@g.us".into(), p.to_string())
    }

    /// Alice distributes her sender key to Bob.
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
