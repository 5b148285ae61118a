-- What each message is (issue 21): its kind by whatsapp-web.js's type names (`chat`, `image`,
-- `location`, `reaction`, …, `unknown`), a JSON object of what the kind carries, the envelopes it
-- came in, and for reactions, edits and revokes the id of the message they act on. What those
-- did to their target is kept on the target (`edited_at`, `reactions`, its type `revoked`), so
-- every reader sees it without replaying them; edits and revokes are not listed on their own.
ALTER TABLE messages ADD COLUMN type TEXT NOT NULL DEFAULT 'chat';
ALTER TABLE messages ADD COLUMN content TEXT;
ALTER TABLE messages ADD COLUMN ephemeral INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN view_once INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN target_id TEXT;
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN reactions TEXT;
CREATE INDEX messages_by_target ON messages (account_id, chat, target_id) WHERE target_id IS NOT NULL;

-- The guide's message view with the truthful type, hasMedia and content (and the rest above).
DROP VIEW whatsappmessages;
CREATE VIEW whatsappmessages AS
SELECT
    a.subaccount_id AS subaccountId,
    a.agent_id AS agentId,
    m.id AS messageId,
    CASE WHEN m.from_me THEN NULL ELSE (CASE substr(m.sender, instr(m.sender, '@') + 1) WHEN 's.whatsapp.net' THEN (CASE WHEN instr(substr(m.sender, 1, instr(m.sender, '@') - 1), ':') > 0 THEN substr(substr(m.sender, 1, instr(m.sender, '@') - 1), 1, instr(substr(m.sender, 1, instr(m.sender, '@') - 1), ':') - 1) ELSE substr(m.sender, 1, instr(m.sender, '@') - 1) END) || '@c.us' WHEN 'lid' THEN COALESCE((SELECT l.pn || '@c.us' FROM lid_map l WHERE l.account_id = m.account_id AND l.lid = (CASE WHEN instr(substr(m.sender, 1, instr(m.sender, '@') - 1), ':') > 0 THEN substr(substr(m.sender, 1, instr(m.sender, '@') - 1), 1, instr(substr(m.sender, 1, instr(m.sender, '@') - 1), ':') - 1) ELSE substr(m.sender, 1, instr(m.sender, '@') - 1) END)), (CASE WHEN instr(substr(m.sender, 1, instr(m.sender, '@') - 1), ':') > 0 THEN substr(substr(m.sender, 1, instr(m.sender, '@') - 1), 1, instr(substr(m.sender, 1, instr(m.sender, '@') - 1), ':') - 1) ELSE substr(m.sender, 1, instr(m.sender, '@') - 1) END) || '@lid') ELSE (CASE WHEN instr(substr(m.sender, 1, instr(m.sender, '@') - 1), ':') > 0 THEN substr(substr(m.sender, 1, instr(m.sender, '@') - 1), 1, instr(substr(m.sender, 1, instr(m.sender, '@') - 1), ':') - 1) ELSE substr(m.sender, 1, instr(m.sender, '@') - 1) END) || '@' || substr(m.sender, instr(m.sender, '@') + 1) END) END AS "from",
    CASE WHEN m.from_me THEN (CASE substr(m.chat, instr(m.chat, '@') + 1) WHEN 's.whatsapp.net' THEN (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END) || '@c.us' WHEN 'lid' THEN COALESCE((SELECT l.pn || '@c.us' FROM lid_map l WHERE l.account_id = m.account_id AND l.lid = (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END)), (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END) || '@lid') ELSE (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END) || '@' || substr(m.chat, instr(m.chat, '@') + 1) END) ELSE NULL END AS "to",
    m.body AS message,
    CASE WHEN m.from_me THEN 'outbound' ELSE 'inbound' END AS direction,
    strftime('%Y-%m-%dT%H:%M:%fZ', m.ts / 1, 'unixepoch') AS timestamp,
    CASE WHEN m.type IN ('image', 'video', 'ptv', 'audio', 'ptt', 'document', 'sticker') THEN 1 ELSE 0 END AS hasMedia,
    m.type AS type,
    strftime('%Y-%m-%dT%H:%M:%fZ', COALESCE(m.created_ms, m.ts * 1000) / 1000.0, 'unixepoch') AS createdAt,
    m.account_id AS accountId,
    (CASE substr(m.chat, instr(m.chat, '@') + 1) WHEN 's.whatsapp.net' THEN (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END) || '@c.us' WHEN 'lid' THEN COALESCE((SELECT l.pn || '@c.us' FROM lid_map l WHERE l.account_id = m.account_id AND l.lid = (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END)), (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END) || '@lid') ELSE (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END) || '@' || substr(m.chat, instr(m.chat, '@') + 1) END) AS chat,
    m.status AS status,
    m.error AS errorCode,
    COALESCE(m.content, '{}') AS content,
    m.ephemeral AS ephemeral,
    m.view_once AS viewOnce,
    strftime('%Y-%m-%dT%H:%M:%fZ', m.edited_at, 'unixepoch') AS editedAt,
    m.type = 'revoked' AS revoked,
    COALESCE(m.reactions, '[]') AS reactions
FROM messages m JOIN accounts a ON a.id = m.account_id
WHERE m.type NOT IN ('edit', 'revoke');
