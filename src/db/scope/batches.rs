//! The loaders' batches: one statement for every parent of a query level
//! ([`crate::db::lateral`]), answered per parent.

use std::collections::HashMap;

use super::*;

impl Scope {
    // --- Batches for the loaders (one statement each) ------------------------------

    /// The caller's workspaces among `ids`.
    pub async fn workspaces_by_id(
        &self,
        conn: &mut AsyncPgConnection,
        ids: Vec<Uuid>,
    ) -> QueryResult<Vec<Workspace>> {
        w::table
            .filter(w::id.eq_any(ids))
            .filter(self.owns_workspace())
            .select(Workspace::as_select())
            .load(conn)
            .await
    }

    /// The conversations among `ids` the caller may read.
    pub async fn conversations_by_id(
        &self,
        conn: &mut AsyncPgConnection,
        ids: Vec<Uuid>,
    ) -> QueryResult<Vec<Conversation>> {
        c::table
            .inner_join(w::table)
            .filter(c::id.eq_any(ids))
            .filter(self.reads_conversation())
            .select(Conversation::as_select())
            .load(conn)
            .await
    }

    /// A page of conversations for each of the caller's workspaces among `parents`
    /// (only the owner sees a workspace's conversations).
    pub async fn conversation_pages(
        &self,
        conn: &mut AsyncPgConnection,
        parents: Vec<Uuid>,
        filter: &ConversationFilter,
        args: &PageArgs,
    ) -> QueryResult<HashMap<Uuid, Page<Conversation>>> {
        let inner = conversations::filtered(filter, Within::Parent)
            .filter(c::workspace_id.eq(parent_id()))
            .select(Conversation::as_select());
        let inner = ordered_page!(inner, args, conversations);
        let rows = PerParent::new(parents.clone(), self.parent_workspace_owned(), inner)
            .load(conn)
            .await?;
        let order = args.order;
        Ok(pages_by_parent(
            rows,
            &parents,
            args,
            order.ascending() != args.from_end(),
            |r: &Conversation| r.workspace_id,
            |r| order.key(r.created_at, r.updated_at, r.id),
        ))
    }

    /// How many conversations match `filter` in each of the caller's workspaces among `parents`.
    pub async fn conversation_counts(
        &self,
        conn: &mut AsyncPgConnection,
        parents: Vec<Uuid>,
        filter: &ConversationFilter,
    ) -> QueryResult<HashMap<Uuid, i64>> {
        let inner = conversations::filtered(filter, Within::Parent)
            .filter(c::workspace_id.eq(parent_id()))
            .count();
        let counts = TaggedPerParent::new(parents.clone(), self.parent_workspace_owned(), inner)
            .load(conn)
            .await?;
        Ok(counts_by_parent(&parents, counts))
    }

    /// A page of messages for each conversation among `parents` the caller may read.
    pub async fn message_pages(
        &self,
        conn: &mut AsyncPgConnection,
        parents: Vec<Uuid>,
        filter: &MessageFilter,
        with_metadata: bool,
        args: &PageArgs,
    ) -> QueryResult<HashMap<Uuid, Page<Message>>> {
        let inner = messages::filtered(filter, Within::Parent)
            .filter(m::conversation_id.eq(parent_id()))
            .select(messages::columns(with_metadata));
        let inner = keyset_page!(inner, args, m::timestamp, m::id, asc);
        let rows = PerParent::new(parents.clone(), self.parent_conversation_readable(), inner)
            .load(conn)
            .await?;
        Ok(pages_by_parent(
            rows,
            &parents,
            args,
            !args.from_end(),
            |r: &Message| r.conversation_id,
            |r| (r.timestamp, r.id),
        ))
    }

    /// How many messages match `filter` in each conversation among `parents` the caller may read.
    pub async fn message_counts(
        &self,
        conn: &mut AsyncPgConnection,
        parents: Vec<Uuid>,
        filter: &MessageFilter,
    ) -> QueryResult<HashMap<Uuid, i64>> {
        let inner = messages::filtered(filter, Within::Parent)
            .filter(m::conversation_id.eq(parent_id()))
            .count();
        let counts =
            TaggedPerParent::new(parents.clone(), self.parent_conversation_readable(), inner)
                .load(conn)
                .await?;
        Ok(counts_by_parent(&parents, counts))
    }

    /// The newest `limit` messages of each conversation among `parents` the caller
    /// may read, oldest first.
    pub async fn latest_messages(
        &self,
        conn: &mut AsyncPgConnection,
        parents: Vec<Uuid>,
        limit: i64,
    ) -> QueryResult<HashMap<Uuid, Vec<Message>>> {
        let inner = m::table
            .filter(m::conversation_id.eq(parent_id()))
            .order((m::timestamp.desc(), m::id.desc()))
            .limit(limit)
            .select(Message::as_select())
            .into_boxed();
        let rows = PerParent::new(parents.clone(), self.parent_conversation_readable(), inner)
            .load(conn)
            .await?;
        let mut out = by_parent(rows, &parents, |r: &Message| r.conversation_id);
        for rows in out.values_mut() {
            rows.sort_by_key(|r| (r.timestamp, r.id));
        }
        Ok(out)
    }

    /// `(sender, messages)` for each conversation among `ids` the caller may read,
    /// most messages first (then by sender).
    pub async fn sender_counts(
        &self,
        conn: &mut AsyncPgConnection,
        ids: Vec<Uuid>,
    ) -> QueryResult<HashMap<Uuid, Vec<(String, i64)>>> {
        let rows: Vec<(Uuid, String, i64)> = m::table
            .inner_join(c::table.inner_join(w::table))
            .filter(m::conversation_id.eq_any(ids.clone()))
            .filter(self.reads_conversation())
            .group_by((m::conversation_id, m::sender_id))
            .select((m::conversation_id, m::sender_id, diesel::dsl::count_star()))
            .load(conn)
            .await?;
        let mut out: HashMap<Uuid, Vec<(String, i64)>> =
            ids.iter().map(|id| (*id, Vec::new())).collect();
        for (conversation, sender, n) in rows {
            out.entry(conversation).or_default().push((sender, n));
        }
        for counts in out.values_mut() {
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        }
        Ok(out)
    }

    /// The names of the users among `user_ids` (never their e-mail, metadata or
    /// active flag; which names a caller is shown is decided where they are met).
    pub async fn user_names(
        &self,
        conn: &mut AsyncPgConnection,
        user_ids: Vec<String>,
    ) -> QueryResult<Vec<UserName>> {
        u::table
            .filter(u::user_id.eq_any(user_ids))
            .select(UserName::as_select())
            .load(conn)
            .await
    }
}
