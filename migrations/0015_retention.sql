-- Retention (issue 21): the periodic pruner deletes old rows of each kind in small batches,
-- oldest first, so each batch must find its rows by age without scanning the table. One index
-- per kind, on the time its retention counts from.

-- Messages age from when they were stored. Rows stored before migration 9 have no such time:
-- their own timestamp (seconds) stands in, once, so every row has an age the index can order.
UPDATE messages SET created_ms = ts * 1000 WHERE created_ms IS NULL;
CREATE INDEX messages_by_age ON messages (created_ms);

-- The pruner keeps a message while a webhook event not yet delivered points at it (its body
-- may still have to be made from the row); this finds those events without a scan.
CREATE INDEX webhook_events_by_message ON webhook_events (message_pk) WHERE message_pk IS NOT NULL;

-- Dead-lettered events, by when they died (`next_ms` is set to that moment).
CREATE INDEX webhook_events_dead ON webhook_events (next_ms) WHERE state = 'failed';

-- Finished sends (never queued ones), by when they were accepted.
CREATE INDEX outbox_finished ON outbox (created_ms) WHERE state <> 'queued';

CREATE INDEX activities_by_age ON activities (at_ms);

-- Group changes by server time (seconds).
CREATE INDEX group_updates_by_age ON group_updates (t);
