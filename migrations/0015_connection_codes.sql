-- A connection's `status` takes the guide's values only (pending, connected, disconnected); the
-- precise state moves to `code` (connecting, awaiting_pair, logging_in, connected, reconnecting,
-- disconnected, logged_out, qr_timeout, temp_banned, client_outdated, replaced, error) and the
-- client's failure code, which `code` held, to `reason`. Every right-hand side below reads the
-- row as it was.
ALTER TABLE connections ADD COLUMN reason TEXT;

UPDATE connections SET
    reason = code,
    code = CASE status WHEN 'pending' THEN 'connecting' ELSE status END,
    status = CASE
        WHEN status IN ('pending', 'reconnecting') THEN 'pending'
        WHEN status = 'connected' THEN 'connected'
        ELSE 'disconnected'
    END;

DROP VIEW whatsappconnections;
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
    c.code AS code,
    c.reason AS reason
FROM connections c JOIN accounts a ON a.id = c.account_id;
