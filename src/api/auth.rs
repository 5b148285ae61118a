//! Who is calling: `Authorization: Bearer <JWT>`, verified with the one configured key and its
//! algorithm only (HS256 with a secret, or RS256 with a public key), `exp` required. Claims:
//! `sub` (the user), `role` (`admin`, `member` or `viewer`), `subaccounts` (the ids the user
//! may use; `*` or the admin role for all). With an issuer and an audience configured, `iss`
//! and `aud` must name them (RFC 7519 §4.1.1, §4.1.3); an RS256 key needs both, since a public
//! key's private half usually signs tokens for more than this service. Tokens never reach a log
//! line.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, on every subaccount.
    Admin,
    /// Read and write on its subaccounts.
    Member,
    /// Read only, on its subaccounts.
    Viewer,
}

/// The claims we read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id (stored as `createdBy` and in activities).
    pub sub: String,
    /// The role.
    pub role: Role,
    /// Subaccounts the user may use (`*` for all).
    #[serde(default)]
    pub subaccounts: Vec<String>,
    /// Expiry (unix seconds); required.
    pub exp: u64,
}

impl Claims {
    /// Whether the caller may use `subaccount`.
    pub fn may_use(&self, subaccount: &str) -> bool {
        self.role == Role::Admin || self.subaccounts.iter().any(|s| s == "*" || s == subaccount)
    }

    /// Whether the caller may change things (connect, send, disconnect).
    pub fn may_write(&self) -> bool {
        self.role != Role::Viewer
    }
}

/// The key tokens are verified (and, for a secret, minted) with.
#[derive(Clone)]
pub enum AuthKey {
    /// HS256 with this secret.
    Hs256(Vec<u8>),
    /// RS256 with this public key (PEM).
    Rs256(Vec<u8>),
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        match self {
            AuthKey::Hs256(_) => f.write_str("AuthKey::Hs256(..)"),
            AuthKey::Rs256(_) => f.write_str("AuthKey::Rs256(..)"),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token.
    #[error("missing bearer token")]
    Missing,
    /// Not a valid token for this service (bad signature, wrong algorithm, expired, …).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The key itself is unusable.
    #[error("unusable key: {0}")]
    Key(String),
}

/// What a token must name besides being signed with the key: who issued it (`iss`) and whom
/// it is for (`aud`). Each is enforced when set; an RS256 key needs both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRules {
    /// The `iss` every token must carry (`WA_GATEWAY_JWT_ISSUER`).
    pub issuer: Option<String>,
    /// The `aud` every token must carry (`WA_GATEWAY_JWT_AUDIENCE`).
    pub audience: Option<String>,
}

/// Verifies tokens with one key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Whether an audience is configured (a token's `aud` is then checked against it; without
    /// one, a token naming any audience is refused: it was minted for someone else).
    has_audience: bool,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

impl Verifier {
    /// A verifier pinned to `key`'s algorithm, with no issuer or audience (HS256 only).
    pub fn new(key: &AuthKey) -> Result<Verifier, AuthError> {
        Verifier::with_rules(key, &TokenRules::default())
    }

    /// A verifier pinned to `key`'s algorithm that also holds tokens to `rules`.
    pub fn with_rules(key: &AuthKey, rules: &TokenRules) -> Result<Verifier, AuthError> {
        let (key, alg) = match key {
            AuthKey::Hs256(secret) => (DecodingKey::from_secret(secret), Algorithm::HS256),
            AuthKey::Rs256(pem) => {
                if rules.issuer.is_none() || rules.audience.is_none() {
                    return Err(AuthError::Key(
                        "an RS256 key needs an issuer and an audience (WA_GATEWAY_JWT_ISSUER, \
                         WA_GATEWAY_JWT_AUDIENCE)"
                            .into(),
                    ));
                }
                (
                    DecodingKey::from_rsa_pem(pem).map_err(|e| AuthError::Key(e.to_string()))?,
                    Algorithm::RS256,
                )
            }
        };
        let mut validation = Validation::new(alg);
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &rules.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &rules.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.leeway = 30;
        Ok(Verifier {
            key,
            validation,
            has_audience: rules.audience.is_some(),
        })
    }

    /// The claims of `token`, if it is valid.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(self.describe(&e)))
    }

    /// What failed, without echoing the token.
    fn describe(&self, e: &jsonwebtoken::errors::Error) -> String {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => "expired".into(),
            ErrorKind::InvalidAlgorithm => "wrong algorithm".into(),
            ErrorKind::InvalidSignature => "bad signature".into(),
            ErrorKind::MissingRequiredClaim(c) => format!("missing claim {c}"),
            ErrorKind::InvalidIssuer => "wrong issuer (iss)".into(),
            ErrorKind::InvalidAudience if self.has_audience => "wrong audience (aud)".into(),
            ErrorKind::InvalidAudience => "the token names an audience (aud), but this service \
                                           has none configured (WA_GATEWAY_JWT_AUDIENCE): it \
                                           was minted for another service"
                .into(),
            ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
            ErrorKind::Json(_) => "claims do not parse".into(),
            _ => "malformed".into(),
        }
    }
}

/// Mints a token with an HS256 secret (`wa-gateway token`).
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, AuthError> {
    mint_with(secret, claims, &TokenRules::default())
}

/// Mints a token with an HS256 secret that names `rules`' issuer and audience, so a verifier
/// holding tokens to the same rules takes it.
pub fn mint_with(secret: &[u8], claims: &Claims, rules: &TokenRules) -> Result<String, AuthError> {
    #[derive(Serialize)]
    struct Minted<'a> {
        #[serde(flatten)]
        claims: &'a Claims,
        #[serde(skip_serializing_if = "Option::is_none")]
        iss: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        aud: Option<&'a str>,
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Minted {
            claims,
            iss: rules.issuer.as_deref(),
            aud: rules.audience.as_deref(),
        },
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AuthError::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role, subs: &[&str], exp: u64) -> Claims {
        Claims {
            sub: "u1".into(),
            role,
            subaccounts: subs.iter().map(|s| s.to_string()).collect(),
            exp,
        }
    }

    #[test]
    fn tokens_verify_only_with_their_key_algorithm_and_time() {
        let now = crate::util::clock::now_ms() / 1000;
        let key = AuthKey::Hs256(b"secret-secret-secret-secret-1234".to_vec());
        let v = Verifier::new(&key).unwrap();
        let good = mint(
            b"secret-secret-secret-secret-1234",
            &claims(Role::Member, &["a"], now + 60),
        );
        let c = v.verify(&good.unwrap()).unwrap();
        assert!(c.may_use("a") && !c.may_use("b") && c.may_write());
        let other = mint(
            b"another-secret-another-secret-12",
            &claims(Role::Admin, &[], now + 60),
        );
        assert_eq!(
            v.verify(&other.unwrap()),
            Err(AuthError::Invalid("bad signature".into()))
        );
        let expired = mint(
            b"secret-secret-secret-secret-1234",
            &claims(Role::Admin, &[], now - 3600),
        );
        assert_eq!(
            v.verify(&expired.unwrap()),
            Err(AuthError::Invalid("expired".into()))
        );
        // An unsigned token (alg none) is refused.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1In0.";
        assert!(v.verify(none).is_err());
        assert!(format!("{key:?}").contains(".."));
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_set_and_a_stray_audience_is_named() {
        let now = crate::util::clock::now_ms() / 1000;
        let secret = b"secret-secret-secret-secret-1234";
        let key = AuthKey::Hs256(secret.to_vec());
        let ours = TokenRules {
            issuer: Some("https://idp.example".into()),
            audience: Some("wa-gateway".into()),
        };
        let v = Verifier::with_rules(&key, &ours).unwrap();
        let c = claims(Role::Member, &["a"], now + 60);
        assert_eq!(
            v.verify(&mint_with(secret, &c, &ours).unwrap()),
            Ok(c.clone())
        );
        // One claim missing at a time: jsonwebtoken checks required claims in a set's order.
        let no_issuer = TokenRules {
            issuer: None,
            ..ours.clone()
        };
        assert_eq!(
            v.verify(&mint_with(secret, &c, &no_issuer).unwrap()),
            Err(AuthError::Invalid("missing claim iss".into()))
        );
        let bare = mint(secret, &c).unwrap();
        assert!(matches!(
            v.verify(&bare),
            Err(AuthError::Invalid(m)) if m.starts_with("missing claim")
        ));
        let other_aud = TokenRules {
            audience: Some("billing".into()),
            ..ours.clone()
        };
        assert_eq!(
            v.verify(&mint_with(secret, &c, &other_aud).unwrap()),
            Err(AuthError::Invalid("wrong audience (aud)".into()))
        );
        let other_iss = TokenRules {
            issuer: Some("https://elsewhere.example".into()),
            ..ours.clone()
        };
        assert_eq!(
            v.verify(&mint_with(secret, &c, &other_iss).unwrap()),
            Err(AuthError::Invalid("wrong issuer (iss)".into()))
        );
        // No audience configured: a token minted for some audience is not ours.
        let plain = Verifier::new(&key).unwrap();
        let Err(AuthError::Invalid(why)) = plain.verify(&mint_with(secret, &c, &ours).unwrap())
        else {
            panic!("a token with an aud passed a verifier without one")
        };
        assert!(why.contains("WA_GATEWAY_JWT_AUDIENCE"), "{why}");
        assert_eq!(plain.verify(&bare), Ok(c));
        // RS256 without both is refused before any token is seen.
        for rules in [TokenRules::default(), other_iss.clone()] {
            let partial = TokenRules {
                audience: None,
                ..rules
            };
            assert!(matches!(
                Verifier::with_rules(&AuthKey::Rs256(Vec::new()), &partial),
                Err(AuthError::Key(_))
            ));
        }
    }

    #[test]
    fn roles_and_subaccounts() {
        assert!(claims(Role::Admin, &[], 0).may_use("x"));
        assert!(claims(Role::Viewer, &["*"], 0).may_use("x"));
        assert!(!claims(Role::Viewer, &["*"], 0).may_write());
        assert!(!claims(Role::Member, &[], 0).may_use("x"));
    }
}
