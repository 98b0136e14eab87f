//! Reads by id and lists at the root, each one statement.

use super::*;

impl Scope {
    // --- Reads by id: one statement reads the row with the rule's verdict, so
    // every answer (found, forbidden, missing) costs one statement ----------------------------------------------------------------

    /// The caller's own user row (in full: only the caller sees it).
    pub async fn me_user(&self, conn: &mut AsyncPgConnection) -> QueryResult<Option<User>> {
        crate::db::users::get_by_user_id(conn, self.user_id()).await
    }

    /// A workspace, if the caller owns it.
    pub async fn workspace(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<Workspace>> {
        let found = w::table
            .filter(w::id.eq(id))
            .select((Workspace::as_select(), self.owns_workspace()))
            .first(conn)
            .await
            .optional()?;
        Ok(decide(found, NOT_YOUR_WORKSPACE, Entity::Workspace))
    }

    /// A workspace's id, if the caller may read anything in it: they own it, or
    /// read one of its conversations (what a workspace-wide message subscription
    /// needs; each message is then checked on its own).
    pub async fn workspace_reach(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<Uuid>> {
        // `reads_conversation` for each of its conversations, the owner's half
        // taken out of the subquery (the workspace is the outer row).
        let reads_some_conversation = exists(
            c::table
                .filter(c::workspace_id.eq(id))
                .filter(self.takes_part())
                .select(c::id),
        );
        let found = w::table
            .filter(w::id.eq(id))
            .select((w::id, self.owns_workspace().or(reads_some_conversation)))
            .first(conn)
            .await
            .optional()?;
        Ok(decide(found, NOT_YOUR_WORKSPACE, Entity::Workspace))
    }

    /// A conversation, if the caller may read it.
    pub async fn conversation(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<Conversation>> {
        let found = c::table
            .inner_join(w::table)
            .filter(c::id.eq(id))
            .select((Conversation::as_select(), self.reads_conversation()))
            .first(conn)
            .await
            .optional()?;
        Ok(decide(found, NOT_YOUR_CONVERSATION, Entity::Conversation))
    }

    /// A message, if the caller may read its conversation.
    pub async fn message(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<Message>> {
        let found = m::table
            .inner_join(c::table.inner_join(w::table))
            .filter(m::id.eq(id))
            .select((Message::as_select(), self.reads_conversation()))
            .first(conn)
            .await
            .optional()?;
        Ok(decide(found, NOT_YOUR_MESSAGE, Entity::Message))
    }

    // --- Lists at the root ----------------------------------------------------------

    /// The caller's workspaces matching `filter`, one keyset page.
    pub async fn workspaces(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &WorkspaceFilter,
        args: &PageArgs,
    ) -> QueryResult<Page<Workspace>> {
        workspaces::list_by_owner(conn, self.user_id(), filter, args).await
    }

    /// How many of the caller's workspaces match `filter`.
    pub async fn workspace_count(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &WorkspaceFilter,
    ) -> QueryResult<i64> {
        workspaces::count_by_owner(conn, self.user_id(), filter).await
    }

    fn participating(&self, filter: &ConversationFilter) -> c::BoxedQuery<'static, Pg> {
        conversations::filtered(filter, Within::Table)
            .filter(c::participant_ids.contains(vec![self.me()]))
    }

    /// The conversations the caller takes part in, in any workspace, one keyset page
    /// (served by the GIN index on `participant_ids`).
    pub async fn participating_conversations(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &ConversationFilter,
        args: &PageArgs,
    ) -> QueryResult<Page<Conversation>> {
        let query = self.participating(filter).select(Conversation::as_select());
        let query = ordered_page!(query, args, conversations);
        Ok(Page::from_fetched(query.load(conn).await?, args))
    }

    /// How many conversations the caller takes part in match `filter`.
    pub async fn participating_conversation_count(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &ConversationFilter,
    ) -> QueryResult<i64> {
        self.participating(filter).count().get_result(conn).await
    }

    /// Full-text search over the messages the caller may read, inside `bounds`.
    /// An empty page inside bounds the caller may not read (or that do not exist)
    /// is told apart from one with no hits.
    pub async fn search(
        &self,
        conn: &mut AsyncPgConnection,
        text: &str,
        bounds: SearchBounds,
        after: Option<SearchKey>,
        limit: i64,
    ) -> QueryResult<Lookup<Vec<SearchHit>>> {
        let within = messages::SearchWithin {
            readable: self.readable_messages(),
            workspace_id: bounds.workspace_id,
            conversation_id: bounds.conversation_id,
        };
        let hits = messages::search(conn, text, within, after, limit).await?;
        // Hits prove access; only an empty page needs its bounds checked.
        if !hits.is_empty() {
            return Ok(Lookup::Found(hits));
        }
        if let Some(id) = bounds.conversation_id {
            if let Some(refused) = self.conversation(conn, id).await?.refusal() {
                return Ok(refused);
            }
        }
        if let Some(id) = bounds.workspace_id {
            // A workspace is searchable where the caller reads any of its conversations.
            let (exists_at_all, reads_any): (bool, bool) = diesel::select((
                exists(w::table.find(id)),
                exists(
                    c::table
                        .inner_join(w::table)
                        .filter(c::workspace_id.eq(id))
                        .filter(self.reads_conversation()),
                ),
            ))
            .get_result(conn)
            .await?;
            if !reads_any {
                return Ok(missed(exists_at_all, Entity::Workspace, NOT_YOUR_WORKSPACE));
            }
        }
        Ok(Lookup::Found(hits))
    }
}
