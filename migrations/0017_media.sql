-- The files of media messages (issue 22): one row per message that has one, written in the
-- message's own transaction. What the message says of its file (key, CDN path, hashes, declared
-- size) is the download's reference; `state` is where the file stands: `pending` (to fetch),
-- `stored` (in the blob store, named by its SHA-256, `sha256`), `failed` (`error` says why: a
-- hash or MAC mismatch, too large, gone from the CDN and the phone), `skipped` (not fetched on
-- its own: automatic download is off or the file is over its cap; fetched when asked for).
-- Blobs are shared by content: one is deleted only when no row here or in the outbox names it.
CREATE TABLE message_media (
    message_pk  INTEGER PRIMARY KEY REFERENCES messages (pk) ON DELETE CASCADE,
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,
    mimetype    TEXT,
    file_name   TEXT,
    size        INTEGER,
    sha256      BLOB,
    enc_sha256  BLOB,
    media_key   BLOB,
    direct_path TEXT,
    url         TEXT,
    seconds     INTEGER,
    width       INTEGER,
    height      INTEGER,
    state       TEXT    NOT NULL,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX message_media_todo ON message_media (account_id, message_pk) WHERE state = 'pending';
CREATE INDEX message_media_blob ON message_media (sha256) WHERE state = 'stored';

-- A media send keeps its file (a blob, by SHA-256) and how to present it (JSON: kind, mimetype,
-- file name, seconds, dimensions, thumbnail); once uploaded, what the upload returned, so a
-- restart sends what was uploaded instead of uploading again.
ALTER TABLE outbox ADD COLUMN media TEXT;
ALTER TABLE outbox ADD COLUMN media_blob BLOB;
CREATE INDEX outbox_media_blob ON outbox (media_blob) WHERE media_blob IS NOT NULL;
