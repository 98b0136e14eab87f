//! Writes: the rule is in the statement itself, so an allowed write costs one
//! statement and only a refused one asks why.

use super::*;

impl Scope {
    // --- Writes ----------------------------------------------------------------------

    /// Creates a workspace owned by the caller.
    pub async fn create_workspace(
        &self,
        conn: &mut AsyncPgConnection,
        draft: WorkspaceDraft,
    ) -> QueryResult<Workspace> {
        workspaces::create(conn, &self.new_workspace(draft)).await
    }

    fn new_workspace(&self, draft: WorkspaceDraft) -> workspaces::NewWorkspace {
        workspaces::NewWorkspace {
            name: draft.name,
            description: draft.description,
            owner_id: self.me(),
            metadata: draft.metadata,
        }
    }

    /// Changes one of the caller's workspaces (no changes: reads it).
    pub async fn update_workspace(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        changes: &WorkspaceChanges,
    ) -> QueryResult<Lookup<Workspace>> {
        if changes.name.is_none() && changes.description.is_none() && changes.metadata.is_none() {
            return self.workspace(conn, id).await;
        }
        let updated = diesel::update(w::table.filter(w::id.eq(id)).filter(self.owns_workspace()))
            .set(changes)
            .returning(Workspace::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match updated {
            Some(row) => Ok(Lookup::Found(row)),
            None => self.workspace_miss(conn, id, NOT_YOUR_WORKSPACE).await,
        }
    }

    /// Deletes one of the caller's workspaces with everything in it.
    pub async fn delete_workspace(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<()>> {
        let deleted = diesel::delete(w::table.filter(w::id.eq(id)).filter(self.owns_workspace()))
            .execute(conn)
            .await?;
        if deleted > 0 {
            return Ok(Lookup::Found(()));
        }
        self.workspace_miss(conn, id, NOT_YOUR_WORKSPACE).await
    }

    /// Creates a conversation in one of the caller's workspaces, in one statement
    /// (`INSERT … SELECT` from the workspace when the caller owns it).
    pub async fn create_conversation(
        &self,
        conn: &mut AsyncPgConnection,
        draft: &ConversationDraft,
    ) -> QueryResult<Lookup<Conversation>> {
        let source = w::table
            .filter(w::id.eq(draft.workspace_id))
            .filter(self.owns_workspace())
            .select((
                w::id,
                draft.topic.as_str().into_sql::<Text>(),
                draft.participant_ids.clone().into_sql::<Array<Text>>(),
                (&draft.metadata).into_sql::<Jsonb>(),
            ));
        let created = diesel::insert_into(c::table)
            .values(source)
            .into_columns((c::workspace_id, c::topic, c::participant_ids, c::metadata))
            .returning(Conversation::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match created {
            Some(row) => Ok(Lookup::Found(row)),
            None => Ok(self
                .workspace_miss(conn, draft.workspace_id, NOT_YOUR_WORKSPACE)
                .await?),
        }
    }

    /// Creates a workspace of the caller and its first conversation in one
    /// transaction: both or neither.
    pub async fn create_workspace_with_conversation(
        &self,
        conn: &mut AsyncPgConnection,
        workspace: WorkspaceDraft,
        conversation: ConversationDraft,
    ) -> QueryResult<(Workspace, Conversation)> {
        let workspace = self.new_workspace(workspace);
        conn.transaction(async |conn| {
            let workspace = workspaces::create(conn, &workspace).await?;
            let conversation = conversations::create(
                conn,
                &conversations::NewConversation {
                    workspace_id: workspace.id,
                    topic: conversation.topic,
                    participant_ids: conversation.participant_ids,
                    metadata: conversation.metadata,
                },
            )
            .await?;
            Ok((workspace, conversation))
        })
        .await
    }

    /// Changes a conversation of one of the caller's workspaces (no changes: reads it).
    pub async fn update_conversation(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        changes: &ConversationChanges,
    ) -> QueryResult<Lookup<Conversation>> {
        if changes.topic.is_none()
            && changes.participant_ids.is_none()
            && changes.metadata.is_none()
        {
            // Nothing to write: the conversation, under the rule for writing it.
            let found = c::table
                .inner_join(w::table)
                .filter(c::id.eq(id))
                .select((
                    Conversation::as_select(),
                    self.reads_conversation(),
                    self.owns_workspace(),
                ))
                .first(conn)
                .await
                .optional()?;
            return Ok(match found {
                Some((row, _, true)) => Lookup::Found(row),
                Some((_, true, false)) => Lookup::Forbidden(ONLY_OWNER_CHANGES_CONVERSATION),
                Some((_, false, false)) => Lookup::Forbidden(NOT_YOUR_CONVERSATION),
                None => Lookup::Missing(Entity::Conversation),
            });
        }
        let updated = diesel::update(
            c::table
                .filter(c::id.eq(id))
                .filter(c::workspace_id.eq_any(self.owned_workspace_ids())),
        )
        .set(changes)
        .returning(Conversation::as_returning())
        .get_result(conn)
        .await
        .optional()?;
        match updated {
            Some(row) => Ok(Lookup::Found(row)),
            None => Ok(self
                .conversation_miss(conn, id, ONLY_OWNER_CHANGES_CONVERSATION)
                .await?),
        }
    }

    /// Deletes a conversation of one of the caller's workspaces, with its messages.
    pub async fn delete_conversation(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<()>> {
        let deleted = diesel::delete(
            c::table
                .filter(c::id.eq(id))
                .filter(c::workspace_id.eq_any(self.owned_workspace_ids())),
        )
        .execute(conn)
        .await?;
        if deleted > 0 {
            return Ok(Lookup::Found(()));
        }
        self.conversation_miss(conn, id, ONLY_OWNER_CHANGES_CONVERSATION)
            .await
    }

    /// Sends a message from the caller into a conversation they may read, in one
    /// statement (`INSERT … SELECT` from the conversation when the rule holds).
    pub async fn send_message(
        &self,
        conn: &mut AsyncPgConnection,
        draft: &MessageDraft,
    ) -> QueryResult<Lookup<Message>> {
        let source = c::table
            .inner_join(w::table)
            .filter(c::id.eq(draft.conversation_id))
            .filter(self.reads_conversation())
            .select((
                c::id,
                self.me().into_sql::<Text>(),
                draft.content.as_str().into_sql::<Text>(),
                draft.timestamp.into_sql::<Timestamptz>(),
                (&draft.metadata).into_sql::<Jsonb>(),
            ));
        let sent = diesel::insert_into(m::table)
            .values(source)
            .into_columns((
                m::conversation_id,
                m::sender_id,
                m::content,
                m::timestamp,
                m::metadata,
            ))
            .returning(Message::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match sent {
            Some(row) => Ok(Lookup::Found(row)),
            None => Ok(self
                .conversation_miss(conn, draft.conversation_id, NOT_YOUR_CONVERSATION)
                .await?),
        }
    }

    /// The ids of the messages the caller may change: in their workspaces, or sent
    /// by them in a conversation they still take part in. Bounded to `id` so that
    /// PostgreSQL reads one row, whatever the caller's size.
    fn editable_message(&self, id: Uuid) -> EditableMessage {
        m::table
            .inner_join(c::table.inner_join(w::table))
            .select(m::id)
            .into_boxed()
            .filter(m::id.eq(id))
            .filter(
                self.owns_workspace().or(m::sender_id
                    .eq(self.me())
                    .and(c::participant_ids.contains(vec![self.me()]))),
            )
    }

    /// Why a message the caller could not change was not changed.
    async fn message_write_miss(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<Message>> {
        let why = match self.message(conn, id).await? {
            Lookup::Found(_) => ONLY_SENDER_OR_OWNER_CHANGES_MESSAGE,
            Lookup::Forbidden(why) => why,
            Lookup::Missing(what) => return Ok(Lookup::Missing(what)),
        };
        Ok(Lookup::Forbidden(why))
    }

    /// Changes a message the caller may change (no changes: reads it, under the same rule).
    pub async fn update_message(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
        changes: &MessageChanges,
    ) -> QueryResult<Lookup<Message>> {
        if changes.content.is_none() && changes.metadata.is_none() {
            let found = m::table
                .filter(m::id.eq_any(self.editable_message(id)))
                .select(Message::as_select())
                .first(conn)
                .await
                .optional()?;
            return match found {
                Some(row) => Ok(Lookup::Found(row)),
                None => self.message_write_miss(conn, id).await,
            };
        }
        let updated = diesel::update(m::table.filter(m::id.eq_any(self.editable_message(id))))
            .set(changes)
            .returning(Message::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        match updated {
            Some(row) => Ok(Lookup::Found(row)),
            None => self.message_write_miss(conn, id).await,
        }
    }

    /// Deletes a message the caller may change.
    pub async fn delete_message(
        &self,
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> QueryResult<Lookup<()>> {
        let deleted = diesel::delete(m::table.filter(m::id.eq_any(self.editable_message(id))))
            .execute(conn)
            .await?;
        if deleted > 0 {
            return Ok(Lookup::Found(()));
        }
        Ok(self.message_write_miss(conn, id).await?.map(|_| ()))
    }
}
