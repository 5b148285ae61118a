-- The guide's collections (`whatsappconnections`, `whatsappmessages`) as views with its field
-- names and forms, for reports and for anyone moving from the Node service: numbers as
-- `…@c.us` (a contact we key by LID shown by its number when known), ISO times; plus the
-- account key, the chat, the delivery status and WhatsApp's error code. The tables underneath
-- stay keyed by account.
CREATE VIEW whatsappconnections AS
SELECT
    a.subaccount_id AS subaccountId,
    a.agent_id AS agentId,
    c.status AS status,
    c.qr_generated AS qrGenerated,
    strftime('%Y-%m-%dT%H:%M:%fZ', c.connected_at / 1000.0, 'unixepoch') AS connectedAt,
    c.phone_number AS phoneNumber,
    c.platform AS platform,
    c.pushname AS pushname,
    c.created_by AS createdBy,
    strftime('%Y-%m-%dT%H:%M:%fZ', c.created_at / 1000.0, 'unixepoch') AS createdAt,
    strftime('%Y-%m-%dT%H:%M:%fZ', c.updated_at / 1000.0, 'unixepoch') AS updatedAt,
    strftime('%Y-%m-%dT%H:%M:%fZ', c.disconnected_at / 1000.0, 'unixepoch') AS disconnectedAt,
    c.account_id AS accountId,
    c.code AS code
FROM connections c JOIN accounts a ON a.id = c.account_id;

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
    0 AS hasMedia,
    'chat' AS type,
    strftime('%Y-%m-%dT%H:%M:%fZ', COALESCE(m.created_ms, m.ts * 1000) / 1000.0, 'unixepoch') AS createdAt,
    m.account_id AS accountId,
    (CASE substr(m.chat, instr(m.chat, '@') + 1) WHEN 's.whatsapp.net' THEN (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END) || '@c.us' WHEN 'lid' THEN COALESCE((SELECT l.pn || '@c.us' FROM lid_map l WHERE l.account_id = m.account_id AND l.lid = (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END)), (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END) || '@lid') ELSE (CASE WHEN instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') > 0 THEN substr(substr(m.chat, 1, instr(m.chat, '@') - 1), 1, instr(substr(m.chat, 1, instr(m.chat, '@') - 1), ':') - 1) ELSE substr(m.chat, 1, instr(m.chat, '@') - 1) END) || '@' || substr(m.chat, instr(m.chat, '@') + 1) END) AS chat,
    m.status AS status,
    m.error AS errorCode
FROM messages m JOIN accounts a ON a.id = m.account_id;
