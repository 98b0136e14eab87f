-- Cortex Core schema: the seed document's models, table and column names unchanged
-- so that existing SQL and tools keep working.

-- Keeps updated_at current on every UPDATE, whichever client writes the row.
CREATE FUNCTION cortex_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     text NOT NULL UNIQUE,
    name        varchar(100) NOT NULL,
    email       varchar(255) UNIQUE,
    is_active   boolean NOT NULL DEFAULT true,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspaces (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        varchar(100) NOT NULL,
    description text NOT NULL DEFAULT '',
    owner_id    text NOT NULL REFERENCES users (user_id) ON UPDATE CASCADE,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE conversations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id    uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    topic           varchar(200) NOT NULL,
    participant_ids text[] NOT NULL DEFAULT '{}'
                    CHECK (array_position(participant_ids, NULL) IS NULL),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id       text NOT NULL REFERENCES users (user_id) ON UPDATE CASCADE,
    content         text NOT NULL,
    "timestamp"     timestamptz NOT NULL DEFAULT now(),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    tsv             tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED
);

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION cortex_set_updated_at();
CREATE TRIGGER workspaces_set_updated_at BEFORE UPDATE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION cortex_set_updated_at();
CREATE TRIGGER conversations_set_updated_at BEFORE UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION cortex_set_updated_at();
CREATE TRIGGER messages_set_updated_at BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION cortex_set_updated_at();

-- The seed's "Indexing Strategy". users.user_id and users.email are already indexed
-- by their UNIQUE constraints.
CREATE INDEX idx_workspaces_owner_id ON workspaces (owner_id);
CREATE INDEX idx_conversations_workspace_id ON conversations (workspace_id);
CREATE INDEX idx_conversations_participants ON conversations USING GIN (participant_ids);
CREATE INDEX idx_messages_conversation_id ON messages (conversation_id);
CREATE INDEX idx_messages_sender_id ON messages (sender_id);
CREATE INDEX idx_messages_conversation_timestamp ON messages (conversation_id, "timestamp");
CREATE INDEX idx_messages_tsv ON messages USING GIN (tsv);

-- Keyset pagination orders (newest first, id as tie-break).
CREATE INDEX idx_workspaces_owner_created ON workspaces (owner_id, created_at DESC, id DESC);
CREATE INDEX idx_conversations_workspace_created ON conversations (workspace_id, created_at DESC, id DESC);

-- Metadata filters. jsonb_path_ops serves containment (@>) compactly; key existence
-- (?, ?|, ?&) needs the default jsonb_ops operator class, so each table has both.
CREATE INDEX idx_users_metadata ON users USING GIN (metadata jsonb_path_ops);
CREATE INDEX idx_workspaces_metadata ON workspaces USING GIN (metadata jsonb_path_ops);
CREATE INDEX idx_conversations_metadata ON conversations USING GIN (metadata jsonb_path_ops);
CREATE INDEX idx_messages_metadata ON messages USING GIN (metadata jsonb_path_ops);
CREATE INDEX idx_users_metadata_keys ON users USING GIN (metadata);
CREATE INDEX idx_workspaces_metadata_keys ON workspaces USING GIN (metadata);
CREATE INDEX idx_conversations_metadata_keys ON conversations USING GIN (metadata);
CREATE INDEX idx_messages_metadata_keys ON messages USING GIN (metadata);
