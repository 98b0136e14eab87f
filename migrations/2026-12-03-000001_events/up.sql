-- Real time (GraphQL subscriptions): an outbox of what changed, written by
-- triggers in the same transaction as the change, whichever client writes it.
-- Every Cortex instance LISTENs on `cortex_events`; the NOTIFY carries no payload
-- (it is only a wake-up: notifications are lost while a listener is away and
-- limited to 8,000 bytes) and each instance reads the new rows from this table.
--
-- Order: an event's place is (txid, id). Readers only read events of
-- transactions older than every transaction still running
-- (`txid < pg_snapshot_xmin(pg_current_snapshot())`), so no event can later
-- appear before one already read: a cursor (txid, id) never skips anything.
CREATE TABLE events (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    txid            bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    kind            text NOT NULL CHECK (kind IN (
                        'message_added', 'conversation_created', 'conversation_updated',
                        'conversation_deleted', 'workspace_deleted', 'user_deactivated')),
    workspace_id    uuid,
    conversation_id uuid,
    message_id      uuid,
    user_id         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (txid, id)
);
-- Pruning (EVENT_RETENTION_HOURS) walks the oldest rows.
CREATE INDEX idx_events_created_at ON events (created_at);

-- The newest (txid, id) pruned: a resume cursor older than this may have missed
-- events, and is refused rather than answered with a gap.
CREATE TABLE events_pruned (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    txid      bigint NOT NULL,
    id        bigint NOT NULL
);
INSERT INTO events_pruned (txid, id) VALUES (0, 0);

-- A session may turn events off (`SET LOCAL cortex.events = 'off'`): the SQLite
-- import copies history, which no subscriber is waiting for.
CREATE FUNCTION cortex_events_on() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('cortex.events', true), '') <> 'off'
$$;

-- Statement-level triggers with transition tables: a bulk insert writes its
-- events in one statement, not one per row, in the order the rows were written
-- (a plain scan of the transition table; no join or sort to reorder them).
CREATE FUNCTION cortex_messages_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF cortex_events_on() THEN
        INSERT INTO events (kind, workspace_id, conversation_id, message_id, user_id)
        SELECT 'message_added',
               (SELECT c.workspace_id FROM conversations c WHERE c.id = n.conversation_id),
               n.conversation_id, n.id, n.sender_id
        FROM added n;
        IF FOUND THEN PERFORM pg_notify('cortex_events', ''); END IF;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER messages_events AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION cortex_messages_added();

CREATE FUNCTION cortex_conversations_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF cortex_events_on() THEN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO events (kind, workspace_id, conversation_id)
            SELECT 'conversation_deleted', o.workspace_id, o.id FROM gone o;
        ELSE
            INSERT INTO events (kind, workspace_id, conversation_id)
            SELECT CASE TG_OP WHEN 'INSERT' THEN 'conversation_created'
                              ELSE 'conversation_updated' END,
                   n.workspace_id, n.id
            FROM changed n;
        END IF;
        IF FOUND THEN PERFORM pg_notify('cortex_events', ''); END IF;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER conversations_created_events AFTER INSERT ON conversations
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION cortex_conversations_changed();
CREATE TRIGGER conversations_updated_events AFTER UPDATE ON conversations
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION cortex_conversations_changed();
CREATE TRIGGER conversations_deleted_events AFTER DELETE ON conversations
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION cortex_conversations_changed();

CREATE FUNCTION cortex_workspaces_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF cortex_events_on() THEN
        INSERT INTO events (kind, workspace_id)
        SELECT 'workspace_deleted', o.id FROM gone o;
        IF FOUND THEN PERFORM pg_notify('cortex_events', ''); END IF;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER workspaces_deleted_events AFTER DELETE ON workspaces
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION cortex_workspaces_deleted();

-- A deactivation ends the user's subscriptions on every instance at once (and
-- clears each instance's caller cache), instead of at their next event.
CREATE FUNCTION cortex_users_deactivated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF cortex_events_on() THEN
        INSERT INTO events (kind, user_id)
        SELECT 'user_deactivated', n.user_id
        FROM changed n JOIN before_change o ON o.id = n.id
        WHERE o.is_active AND NOT n.is_active;
        IF FOUND THEN PERFORM pg_notify('cortex_events', ''); END IF;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER users_deactivated_events AFTER UPDATE ON users
    REFERENCING OLD TABLE AS before_change NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION cortex_users_deactivated();
