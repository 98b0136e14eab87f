//! Relay's object identification: the `Node` interface, `node(id:)` and
//! `nodes(ids:)`, and [`NodeId`], the `ID` every row's id is on the wire.
//!
//! Ids stay the rows' UUIDs (what clients already store and what the API has
//! always returned), typed `ID` so that Relay's normalised store and refetch
//! queries (`node(id: $id) { ... on Conversation { … } }`) work. A lookup goes
//! through the caller's scope like every read and is batched like every
//! lookup: all the ids of a level are one statement
//! ([`crate::db::scope::Scope::nodes_by_id`]); an id the caller may not read is
//! `null`, as one that does not exist.

use std::borrow::Cow;

use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, InputType, InputValueError, InputValueResult, Interface,
    OutputType, Positioned, ServerResult, Value, ID,
};
use uuid::Uuid;

use crate::db::scope::NodeRow;
use crate::graphql::conversation::Conversation;
use crate::graphql::message::Message;
use crate::graphql::user::User;
use crate::graphql::workspace::Workspace;

/// A row's id: a UUID, typed `ID` in the schema. An argument that is not a
/// UUID is `BAD_USER_INPUT` naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub Uuid);

impl From<Uuid> for NodeId {
    fn from(id: Uuid) -> Self {
        NodeId(id)
    }
}

impl From<NodeId> for Uuid {
    fn from(id: NodeId) -> Self {
        id.0
    }
}

impl InputType for NodeId {
    type RawValueType = Self;

    fn type_name() -> Cow<'static, str> {
        <ID as InputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        // The built-in `ID` itself: one scalar of that name in the schema.
        <ID as InputType>::create_type_info(registry)
    }

    fn parse(value: Option<Value>) -> InputValueResult<Self> {
        let id = <ID as InputType>::parse(value).map_err(InputValueError::propagate)?;
        Uuid::parse_str(&id)
            .map(NodeId)
            .map_err(|_| InputValueError::custom(format!("\"{}\" is not an id (a UUID)", id.0)))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }
}

impl OutputType for NodeId {
    fn type_name() -> Cow<'static, str> {
        <ID as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <ID as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<async_graphql::parser::types::Field>,
    ) -> ServerResult<Value> {
        Ok(Value::String(self.0.to_string()))
    }
}

/// An object with an id that `node(id:)` finds again.
#[derive(Interface)]
#[graphql(
    name = "Node",
    field(
        name = "id",
        ty = "NodeId",
        method = "node_id",
        desc = "The object's id (a UUID)."
    )
)]
pub enum NodeInterface {
    /// A workspace.
    Workspace(Workspace),
    /// A conversation.
    Conversation(Conversation),
    /// A message.
    Message(Message),
    /// The caller.
    User(User),
}

impl From<NodeRow> for NodeInterface {
    fn from(row: NodeRow) -> Self {
        match row {
            NodeRow::Workspace(row) => NodeInterface::Workspace(Workspace(row)),
            NodeRow::Conversation(row) => NodeInterface::Conversation(Conversation::from(row)),
            NodeRow::Message(row) => NodeInterface::Message(Message::from(row)),
            NodeRow::User(row) => NodeInterface::User(User(std::sync::Arc::new(row))),
        }
    }
}

/// What the `Node` interface asks of each type: its id. The interface calls it
/// with the field's context.
macro_rules! node_id {
    ($($ty:ty => |$this:ident| $id:expr),* $(,)?) => {$(
        impl $ty {
            async fn node_id(&self, _: &Context<'_>) -> async_graphql::Result<NodeId> {
                let $this = self;
                Ok(NodeId($id))
            }
        }
    )*};
}

node_id! {
    Workspace => |w| w.0.id,
    Conversation => |c| c.0.id,
    Message => |m| m.row.id,
    User => |u| u.0.id,
}
