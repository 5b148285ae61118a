-- Phone number ↔ LID of the contacts (and ourselves) an account has met: WhatsApp addresses one
-- person by both, and we key sessions and conversations by the LID once it is known.
CREATE TABLE lid_map (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    pn         TEXT    NOT NULL,
    lid        TEXT    NOT NULL,
    PRIMARY KEY (account_id, pn)
) WITHOUT ROWID;
CREATE UNIQUE INDEX lid_map_by_lid ON lid_map (account_id, lid);
