-- `cortex import-sqlite`: the old (SQLite) id → new (PostgreSQL) id of every imported
-- workspace, conversation and message. Written in the same transaction as the rows
-- it maps, so a re-run (or a run resumed after a crash) skips what is already there,
-- and a later import of a grown copy of the same file adds only the new rows.
CREATE TABLE import_id_map (
    entity      text NOT NULL CHECK (entity IN ('workspace', 'conversation', 'message')),
    old_id      text NOT NULL,
    new_id      uuid NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, old_id)
);
