-- The account's NCT salt (keys the cstoken a first message to a stranger carries, CLIENT-FEATURES
-- §1), sealed like the other secrets, and whether an `nct_salt_sync` mutation was ever seen: once
-- it was, a history-sync salt never applies (whatsapp-rust's backfill-only rule).
CREATE TABLE nct_salt (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    salt       BLOB,
    sync_seen  INTEGER NOT NULL DEFAULT 0
);

-- A send to a cold contact held while the account is time-locked or capped: the hold as JSON
-- (`reason`, `until`); the drain skips held rows and a lifted limit clears the hold.
ALTER TABLE outbox ADD COLUMN hold TEXT;
DROP INDEX outbox_queued;
CREATE INDEX outbox_queued ON outbox (account_id, pk) WHERE state = 'queued' AND hold IS NULL;
