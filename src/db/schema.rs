// @generated automatically by Diesel CLI.

pub mod sql_types {
    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "tsvector", schema = "pg_catalog"))]
    pub struct Tsvector;
}

diesel::table! {
    conversations (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        #[max_length = 200]
        topic -> Varchar,
        participant_ids -> Array<Text>,
        metadata -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    events (txid, id) {
        id -> Int8,
        txid -> Int8,
        kind -> Text,
        workspace_id -> Nullable<Uuid>,
        conversation_id -> Nullable<Uuid>,
        message_id -> Nullable<Uuid>,
        user_id -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    events_pruned (singleton) {
        singleton -> Bool,
        txid -> Int8,
        id -> Int8,
    }
}

diesel::table! {
    import_deferred_objects (kind, name) {
        name -> Text,
        table_name -> Text,
        kind -> Text,
        definition -> Text,
        key_columns -> Array<Text>,
        orphans -> Nullable<Text>,
        deferred_at -> Timestamptz,
    }
}

diesel::table! {
    import_id_map (entity, old_id) {
        entity -> Text,
        old_id -> Text,
        new_id -> Uuid,
        imported_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::Tsvector;

    messages (id) {
        id -> Uuid,
        conversation_id -> Uuid,
        sender_id -> Text,
        content -> Text,
        timestamp -> Timestamptz,
        metadata -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        tsv -> Nullable<Tsvector>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        user_id -> Text,
        #[max_length = 100]
        name -> Varchar,
        #[max_length = 255]
        email -> Nullable<Varchar>,
        is_active -> Bool,
        metadata -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    workspaces (id) {
        id -> Uuid,
        #[max_length = 100]
        name -> Varchar,
        description -> Text,
        owner_id -> Text,
        metadata -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(conversations -> workspaces (workspace_id));
diesel::joinable!(messages -> conversations (conversation_id));

diesel::allow_tables_to_appear_in_same_query!(
    conversations,
    events,
    events_pruned,
    import_deferred_objects,
    import_id_map,
    messages,
    users,
    workspaces,
);
