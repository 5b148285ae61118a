-- Facts about the database itself. `key_check` holds a value sealed with the store key when
-- envelope encryption is on, so a wrong or missing key is refused at start-up.
CREATE TABLE store_meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
