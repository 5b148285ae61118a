//! Who is calling: `Authorization: Bearer <JWT>`, verified with the one configured key and its
//! algorithm only (HS256 with a secret, or RS256 with a public key), `exp` required. Claims:
//! `sub` (the user), `role` (`admin`, `member` or `viewer`), `subaccounts` (the ids the user
//! may use; `*` or the admin role for all). Tokens never reach a log line.

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

/// Verifies tokens with one key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish()
    }
}

impl Verifier {
    /// A verifier pinned to `key`'s algorithm.
    pub fn new(key: &AuthKey) -> Result<Verifier, AuthError> {
        let (key, alg) = match key {
            AuthKey::Hs256(secret) => (DecodingKey::from_secret(secret), Algorithm::HS256),
            AuthKey::Rs256(pem) => (
                DecodingKey::from_rsa_pem(pem).map_err(|e| AuthError::Key(e.to_string()))?,
                Algorithm::RS256,
            ),
        };
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Ok(Verifier { key, validation })
    }

    /// The claims of `token`, if it is valid.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(e.kind_description()))
    }
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for jsonwebtoken::errors::Error {
    /// What failed, without echoing the token.
    fn kind_description(&self) -> String {
        use jsonwebtoken::errors::ErrorKind;
        match self.kind() {
            ErrorKind::ExpiredSignature => "expired".into(),
            ErrorKind::InvalidAlgorithm => "wrong algorithm".into(),
            ErrorKind::InvalidSignature => "bad signature".into(),
            ErrorKind::MissingRequiredClaim(c) => format!("missing claim {c}"),
            ErrorKind::Json(_) => "claims do not parse".into(),
            _ => "malformed".into(),
        }
    }
}

/// Mints a token with an HS256 secret (`wa-gateway token`).
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, AuthError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
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
    fn roles_and_subaccounts() {
        assert!(claims(Role::Admin, &[], 0).may_use("x"));
        assert!(claims(Role::Viewer, &["*"], 0).may_use("x"));
        assert!(!claims(Role::Viewer, &["*"], 0).may_write());
        assert!(!claims(Role::Member, &[], 0).may_use("x"));
    }
}
