-- Retention (issue 21): the periodic pruner deletes old rows of each kind in small batches,
-- oldest first, so each batch must find its rows by age without scanning the table: one index
-- per kind on the time its retention counts from, where none serves already. Messages need
-- none (they age by their own time, `messages_by_time` per account), so the message path pays
-- for no new index: each costs every insert (measured here: two more indexes on `messages` cut
-- the rate of 100-row inserting transactions by 20-30%).

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
