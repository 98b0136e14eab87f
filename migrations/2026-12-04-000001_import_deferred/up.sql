-- `cortex import-sqlite` in bulk mode drops the secondary indexes and foreign keys of
-- workspaces, conversations and messages while it loads, and rebuilds them at the
-- end, as pg_restore does. Each one is recorded here, with its definition as
-- PostgreSQL printed it, in the same transaction that drops it, and deleted in the
-- same transaction that rebuilds it: a row here is an object not rebuilt yet (the
-- import was killed). The next import, `cortex migrate` or `cortex serve` rebuilds it.
CREATE TABLE import_deferred_objects (
    name        text NOT NULL,
    table_name  text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('index', 'foreign_key')),
    definition  text NOT NULL,
    -- An index's key columns: the rebuild starts the widest GIN indexes first.
    key_columns text[] NOT NULL DEFAULT '{}',
    -- For a foreign key with ON DELETE CASCADE: the DELETE that does what the cascade
    -- would have done to rows whose parent was deleted while the key was dropped.
    orphans     text,
    deferred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);
