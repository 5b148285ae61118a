-- Whether a contact wrote to us (its warmth: the outbox gate on every cold send, and each
-- contact a contacts page lists): one seek instead of a walk over every row we sent it.
CREATE INDEX messages_inbound_by_chat ON messages (account_id, chat) WHERE from_me = 0;
