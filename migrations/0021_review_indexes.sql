-- Indexes the account-state review asked for (issue 23): held sends are found (and expired)
-- without walking the account's whole outbox; a page of failed rows finds its sends' results by
-- message id; a contact moving to its LID rewrites its messages' sender without a table scan.
CREATE INDEX outbox_held ON outbox (account_id, pk) WHERE state = 'queued' AND hold IS NOT NULL;
CREATE INDEX outbox_by_message ON outbox (account_id, message_id);
CREATE INDEX messages_by_sender ON messages (account_id, sender);
