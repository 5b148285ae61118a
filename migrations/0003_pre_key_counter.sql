-- The next one-time prekey id of each account. Ids only grow (as in whatsmeow): a consumed key's
-- id is never handed out again, so a late message naming it cannot meet a different key.
ALTER TABLE accounts ADD COLUMN next_pre_key_id INTEGER NOT NULL DEFAULT 1;
-- Accounts that already hold keys continue past them.
UPDATE accounts SET next_pre_key_id =
    COALESCE((SELECT MAX(key_id) + 1 FROM signal_pre_keys WHERE account_id = accounts.id), 1);
