//! `messages`: sent in a conversation, searchable through the generated `tsv` column.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::db::conversations::Conversation;
use crate::db::metadata::{metadata_predicate_for, planned_with_values, MetadataFilter, Within};
use crate::db::schema::{conversations, messages, sql_types::Tsvector, workspaces};
use crate::db::{keyset_page, Page, PageArgs};

metadata_predicate_for!(messages);

/// A row of `messages` (without the generated `tsv`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Associations)]
#[diesel(table_name = messages, belongs_to(Conversation), check_for_backend(diesel::pg::Pg))]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub sender_id: String,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `metadata`, or JSON `null` in its place (see [`columns`]).
pub type MetadataColumn =
    Box<dyn BoxableExpression<messages::table, diesel::pg::Pg, SqlType = diesel::sql_types::Jsonb>>;

/// The columns of [`Message`] in its field order, `metadata` read as JSON `null` unless
/// `with_metadata`: a list that does not show it has PostgreSQL neither send nor us
/// decode it (a nested page of 2,000 messages spent more memory on its metadata maps
/// than on everything else).
pub fn columns(
    with_metadata: bool,
) -> (
    messages::id,
    messages::conversation_id,
    messages::sender_id,
    messages::content,
    messages::timestamp,
    MetadataColumn,
    messages::created_at,
    messages::updated_at,
) {
    let metadata: MetadataColumn = if with_metadata {
        Box::new(messages::metadata)
    } else {
        Box::new(crate::db::lateral::FixedSql::<diesel::sql_types::Jsonb>::new("'null'::jsonb"))
    };
    (
        messages::id,
        messages::conversation_id,
        messages::sender_id,
        messages::content,
        messages::timestamp,
        metadata,
        messages::created_at,
        messages::updated_at,
    )
}

/// A message to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessage {
    pub conversation_id: Uuid,
    pub sender_id: String,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    pub metadata: Value,
}

/// A partial update: `None` leaves a column as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = messages)]
pub struct MessageChanges {
    pub content: Option<String>,
    pub metadata: Option<Value>,
}

/// Message criteria besides the conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MessageFilter {
    /// On `metadata`.
    pub metadata: Option<MetadataFilter>,
    /// Sent by this user.
    pub sender_id: Option<String>,
    /// Sent at or after.
    pub since: Option<DateTime<Utc>>,
    /// Sent before.
    pub until: Option<DateTime<Utc>>,
}

/// Inserts a message.
pub async fn create(conn: &mut AsyncPgConnection, new: &NewMessage) -> QueryResult<Message> {
    diesel::insert_into(messages::table)
        .values(new)
        .returning(Message::as_returning())
        .get_result(conn)
        .await
}

/// The message with this id.
pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Message>> {
    messages::table
        .find(id)
        .select(Message::as_select())
        .first(conn)
        .await
        .optional()
}

/// The criteria of `filter` as a boxed query over all messages, to be read `within`
/// the table or one conversation (which decides whether the statement may be kept
/// prepared: within a parent it is planned with the values in view).
pub fn filtered<'a>(
    filter: &MessageFilter,
    within: Within,
) -> messages::BoxedQuery<'a, diesel::pg::Pg> {
    let mut query = messages::table.into_boxed();
    if let Some(m) = &filter.metadata {
        query = query.filter(metadata_predicate(m));
    }
    if let Some(sender) = &filter.sender_id {
        query = query.filter(messages::sender_id.eq(sender.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(messages::timestamp.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(messages::timestamp.lt(until));
    }
    // The metadata and sender tests may be answered by their own indexes or not,
    // depending on their values (`Within::Parent`); the time range is read from
    // the conversation's index either way.
    if within == Within::Parent && (filter.metadata.is_some() || filter.sender_id.is_some()) {
        query = query.filter(planned_with_values());
    }
    query
}

/// A conversation's messages, oldest first, one keyset page at a time.
pub async fn list_by_conversation(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    filter: &MessageFilter,
    args: &PageArgs,
) -> QueryResult<Page<Message>> {
    let query = filtered(filter, Within::Parent)
        .filter(messages::conversation_id.eq(conversation_id))
        .select(Message::as_select());
    let query = keyset_page!(query, args, messages::timestamp, messages::id, asc);
    Ok(Page::from_fetched(query.load(conn).await?, args))
}

/// How many of a conversation's messages match `filter`.
pub async fn count_by_conversation(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    filter: &MessageFilter,
) -> QueryResult<i64> {
    filtered(filter, Within::Parent)
        .filter(messages::conversation_id.eq(conversation_id))
        .count()
        .get_result(conn)
        .await
}

/// The newest `limit` messages of a conversation, returned oldest first (the seed's
/// `get_latest_messages`, served by the `(conversation_id, timestamp)` index).
pub async fn latest(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    limit: i64,
) -> QueryResult<Vec<Message>> {
    let mut rows: Vec<Message> = messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .order((messages::timestamp.desc(), messages::id.desc()))
        .limit(limit)
        .select(Message::as_select())
        .load(conn)
        .await?;
    rows.reverse();
    Ok(rows)
}

/// Messages per sender in a conversation, most active first.
pub async fn count_by_sender(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
) -> QueryResult<Vec<(String, i64)>> {
    messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .group_by(messages::sender_id)
        .select((messages::sender_id, diesel::dsl::count_star()))
        .order((diesel::dsl::count_star().desc(), messages::sender_id.asc()))
        .load(conn)
        .await
}

/// Messages of a conversation whose metadata matches (the seed's `find_by_metadata`).
pub async fn find_by_metadata(
    conn: &mut AsyncPgConnection,
    conversation_id: Uuid,
    filter: &MetadataFilter,
) -> QueryResult<Vec<Message>> {
    messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .into_boxed()
        .filter(metadata_predicate(filter))
        .filter(planned_with_values())
        .order((messages::timestamp.asc(), messages::id.asc()))
        .select(Message::as_select())
        .load(conn)
        .await
}

/// Applies `changes`; `None` when the message does not exist.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &MessageChanges,
) -> QueryResult<Option<Message>> {
    diesel::update(messages::table.find(id))
        .set(changes)
        .returning(Message::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes a message; whether it existed.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    Ok(diesel::delete(messages::table.find(id))
        .execute(conn)
        .await?
        > 0)
}

/// PostgreSQL's `regconfig` type (a text search configuration).
#[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId, Clone, Copy)]
#[diesel(postgres_type(name = "regconfig", schema = "pg_catalog"))]
pub struct RegConfig;

/// PostgreSQL's `tsquery` type.
#[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId, Clone, Copy)]
#[diesel(postgres_type(name = "tsquery", schema = "pg_catalog"))]
pub struct Tsquery;

diesel::define_sql_function! {
    /// Parses web-search syntax (`"quoted phrase" -excluded or`) into a query.
    fn websearch_to_tsquery(config: RegConfig, query: Text) -> Tsquery;
}
diesel::define_sql_function! {
    /// Relevance of a document to a query.
    fn ts_rank(document: Nullable<Tsvector>, query: Tsquery) -> diesel::sql_types::Float;
}
diesel::define_sql_function! {
    /// A snippet of the document with the matches marked.
    fn ts_headline(config: RegConfig, document: Text, query: Tsquery, options: Text) -> Text;
}
diesel::define_sql_function! {
    /// `replace(text, from, to)`.
    fn replace(text: Text, from: Text, to: Text) -> Text;
}
diesel::infix_operator!(Matches, " @@ ", backend: diesel::pg::Pg);

/// A message joined with its conversation and its workspace.
pub type MessageInWorkspace = diesel::helper_types::InnerJoinQuerySource<
    messages::table,
    diesel::helper_types::InnerJoin<conversations::table, workspaces::table>,
>;

/// A predicate over [`MessageInWorkspace`].
pub type ReadableMessages = Box<
    dyn BoxableExpression<MessageInWorkspace, diesel::pg::Pg, SqlType = diesel::sql_types::Bool>,
>;

/// Where to search.
pub struct SearchWithin {
    /// Which messages may be found: a predicate over a message joined with its
    /// conversation and workspace (the caller's rule: see
    /// [`crate::db::scope::Scope::readable_messages`]).
    pub readable: ReadableMessages,
    /// Only this workspace.
    pub workspace_id: Option<Uuid>,
    /// Only this conversation.
    pub conversation_id: Option<Uuid>,
}

/// Where a hit sits in the ranking, best first: its rank, then newest, then id.
/// A keyset position (not an offset), so a better hit written between two pages
/// does not repeat a row of the first page on the second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchKey {
    /// `ts_rank` (the same bits each time for the same message and query).
    pub rank: f32,
    /// The message's timestamp.
    pub timestamp: chrono::DateTime<chrono::Utc>,
    /// The message's id.
    pub id: Uuid,
}

impl Eq for SearchKey {}

impl std::hash::Hash for SearchKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.rank.to_bits(), self.timestamp, self.id).hash(state);
    }
}

/// One search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The message.
    pub message: Message,
    /// Its `ts_rank`.
    pub rank: f32,
    /// A snippet of the content as HTML-escaped text, the matches in `<b>…</b>`
    /// (the only markup in it).
    pub headline: String,
}

/// Where `ts_headline` marks a match. Private-use characters, removed from the
/// content before `ts_headline` sees it, so that only PostgreSQL's own marks
/// become `<b>`/`</b>` once the rest is escaped ([`html_headline`]).
const MATCH_START: char = '\u{E000}';
const MATCH_END: char = '\u{E001}';

/// Options for `ts_headline`: short snippets with the matches between the marks.
const HEADLINE_OPTIONS: &str =
    "StartSel=\u{E000}, StopSel=\u{E001}, MaxWords=35, MinWords=15, MaxFragments=2";

/// `ts_headline`'s snippet as HTML: the text escaped (so a message holding
/// `<img onerror=…>` shows as text), the match marks as `<b>…</b>`.
pub fn html_headline(snippet: &str) -> String {
    let mut html = String::with_capacity(snippet.len() + 16);
    for c in snippet.chars() {
        match c {
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            MATCH_START => html.push_str("<b>"),
            MATCH_END => html.push_str("</b>"),
            c => html.push(c),
        }
    }
    html
}

impl SearchHit {
    /// Its place in the ranking.
    pub fn key(&self) -> SearchKey {
        SearchKey {
            rank: self.rank,
            timestamp: self.message.timestamp,
            id: self.message.id,
        }
    }
}

/// Full-text search with `websearch_to_tsquery` over the `tsv` column, best first
/// (`ts_rank`, then newest, then id), after the hit at `after`.
pub async fn search(
    conn: &mut AsyncPgConnection,
    text: &str,
    within: SearchWithin,
    after: Option<SearchKey>,
    limit: i64,
) -> QueryResult<Vec<SearchHit>> {
    // Deliberately diesel's literal, which keeps the search out of the statement cache:
    // a cached statement is soon run with PostgreSQL's generic plan, which cannot see
    // the search words, and that plan took ~350 ms where the custom one takes ~5 ms.
    let english = diesel::dsl::sql::<RegConfig>("'english'::regconfig");
    let query = || websearch_to_tsquery(english.clone(), text.to_string());
    let rank = ts_rank(messages::tsv, query());
    let mut q = messages::table
        .inner_join(conversations::table.inner_join(workspaces::table))
        .filter(within.readable)
        .filter(Matches::new(messages::tsv, query()))
        .into_boxed();
    if let Some(ws) = within.workspace_id {
        q = q.filter(conversations::workspace_id.eq(ws));
    }
    if let Some(c) = within.conversation_id {
        q = q.filter(messages::conversation_id.eq(c));
    }
    if let Some(key) = after {
        // (rank, timestamp, id) < the cursor's, all descending.
        let rank = || ts_rank(messages::tsv, query());
        q = q.filter(
            rank().lt(key.rank).or(rank().eq(key.rank).and(
                messages::timestamp.lt(key.timestamp).or(messages::timestamp
                    .eq(key.timestamp)
                    .and(messages::id.lt(key.id))),
            )),
        );
    }
    let rows: Vec<(Message, f32, String)> = q
        .select((
            Message::as_select(),
            rank.clone(),
            ts_headline(
                english.clone(),
                replace(
                    replace(messages::content, MATCH_START.to_string(), String::new()),
                    MATCH_END.to_string(),
                    String::new(),
                ),
                query(),
                HEADLINE_OPTIONS.to_string(),
            ),
        ))
        .order((rank.desc(), messages::timestamp.desc(), messages::id.desc()))
        .limit(limit)
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(message, rank, headline)| SearchHit {
            message,
            rank,
            headline: html_headline(&headline),
        })
        .collect())
}
