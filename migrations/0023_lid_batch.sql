-- Learning PN ↔ LID pairs in batches (issue 23 review): a contact's group sender keys are named
-- `<group>::<user>.<device>`, so finding those of a batch's phone numbers needs the sender part
-- (after the first `::`) indexed; each number of the batch is then one range seek, not a scan
-- of the account's sender keys. The expression is the one `store/creds.rs` (SENDER) queries by.
CREATE INDEX signal_sender_keys_by_sender
    ON signal_sender_keys (account_id, substr(name, instr(name, '::') + 2));
