-- History-sync notifications our phone sent, kept before their message is acknowledged
-- (CLIENT-FEATURES §5): the worker stores each chunk from here, so a crash between the
-- delivery receipt and the chunk being stored loses nothing. One row per (account, message id);
-- `seq` is the arrival order. `notification` is the HistorySyncNotification protobuf (it holds
-- the blob's media key: sealed like key material under a store key), dropped once the chunk is
-- stored; `receipt_due` then says the `hist_sync` receipt still has to go out, and the row is
-- deleted once it has. `attempts` counts the worker's starts on it (it gives up after a few).
CREATE TABLE pending_history (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    msg_id       TEXT    NOT NULL,
    notification BLOB,
    attempts     INTEGER NOT NULL DEFAULT 0,
    receipt_due  INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    UNIQUE (account_id, msg_id)
);
CREATE INDEX pending_history_by_account ON pending_history (account_id, receipt_due, seq);
