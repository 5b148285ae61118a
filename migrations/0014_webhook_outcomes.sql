-- How a webhook attempt went, beyond its text: `last_error_kind` is the failure's stable kind
-- (`timeout`, `connect`, `not_allowed`, `status`, `answer`, `reply`, `internal`; viewers see
-- only what it names, never `last_error`'s detail); `reply_ignored` says why a taken answer's
-- `reply` was not sent (`not_json`, `no_reply`, `not_text`, `empty`, `too_long`,
-- `not_repliable`, `no_chat`).
ALTER TABLE webhook_events ADD COLUMN last_error_kind TEXT;
ALTER TABLE webhook_events ADD COLUMN reply_ignored TEXT;
