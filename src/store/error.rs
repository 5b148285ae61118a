//! Storage errors: the database failed, or a stored value is corrupt.

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite or the pool failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Running migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database holds sealed key material and no store key is configured.
    #[error("the database is encrypted: set WA_GATEWAY_STORE_KEY to the key it was written with")]
    Sealed,
    /// The configured store key is not the one the database was sealed with.
    #[error("WA_GATEWAY_STORE_KEY does not open this database (another key sealed it)")]
    WrongKey,
    /// A sealed value failed authentication (moved between rows, or tampered with).
    #[error("a sealed value does not open with the store key (moved or tampered with)")]
    Unsealable,
    /// The account has no identity yet.
    #[error("account {0} has no Signal identity")]
    NoIdentity(i64),
    /// A read through the client's store traits failed (their error names the cause).
    #[error("account store: {0}")]
    Account(String),
}

impl From<StoreError> for crate::signal::StoreError {
    fn from(e: StoreError) -> crate::signal::StoreError {
        crate::signal::StoreError(e.to_string())
    }
}
