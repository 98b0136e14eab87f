//! A synchronous fast path for objects that are returned by the thousand (a nested
//! page holds 2,000 messages and their senders).
//!
//! async-graphql resolves every field of every object through a boxed future, a
//! `FuturesUnordered` and the extension chain: for a message whose fields are all in
//! memory that machinery was most of the nested benchmark's CPU and allocations.
//! [`Plain`] resolves such an object directly when its selection is *plain*: fields
//! without arguments or directives (also through fragments on the type itself), each
//! of which the type can answer from memory. Anything else (a directive, a fragment on
//! an interface, a field selected twice, a field that must load or may fail) returns
//! `None` and the object goes through async-graphql's own resolution, unchanged.
//!
//! What this skips must stay empty for it to be right: the schema installs no
//! async-graphql extension (per-field hooks), and async-graphql applies `@skip` and
//! `@include` to the operation before executing it. It reads the selection through
//! `ContextSelectionSet::item` and `query_env`, public but hidden from async-graphql's
//! docs; the API test `messages_and_senders_resolve_the_same_on_the_fast_path_as_through_async_graphql`
//! compares both paths byte for byte, so an upgrade that changes them fails there.

use std::borrow::Cow;

use async_graphql::context::QueryEnv;
use async_graphql::indexmap::map::Entry;
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value};

/// An object type whose fields can often be answered from memory.
pub trait PlainFields: OutputType {
    /// The value of field `name`, whose own selection is `selection` (empty for
    /// scalars), or `None` when it cannot be answered synchronously.
    fn plain_field(&self, name: &str, selection: &PlainSelection<'_>) -> Option<Value>;
}

impl<T: PlainFields> PlainFields for &T {
    fn plain_field(&self, name: &str, selection: &PlainSelection<'_>) -> Option<Value> {
        T::plain_field(self, name, selection)
    }
}

/// A field's sub-selection, with what is needed to resolve fragments in it.
#[derive(Clone, Copy)]
pub struct PlainSelection<'a> {
    set: &'a SelectionSet,
    env: &'a QueryEnv,
}

impl PlainSelection<'_> {
    /// `value`'s plain resolution of this selection, if it is plain.
    pub fn of<T: PlainFields>(&self, value: &T) -> Option<Value> {
        let mut out = IndexMap::with_capacity(self.set.items.len());
        collect(value, self.set, self.env, &mut out)?;
        Some(Value::Object(out))
    }
}

/// Adds the plain fields of `set` to `out`; `None` at the first thing that is not plain.
fn collect<T: PlainFields>(
    value: &T,
    set: &SelectionSet,
    env: &QueryEnv,
    out: &mut IndexMap<Name, Value>,
) -> Option<()> {
    let type_name = T::type_name();
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let field: &Field = &field.node;
                if !field.directives.is_empty() || !field.arguments.is_empty() {
                    return None;
                }
                let resolved = if field.name.node == "__typename" {
                    Value::String(type_name.to_string())
                } else {
                    let selection = PlainSelection {
                        set: &field.selection_set.node,
                        env,
                    };
                    value.plain_field(field.name.node.as_str(), &selection)?
                };
                // The same key twice is merged by async-graphql: leave that to it.
                match out.entry(field.response_key().node.clone()) {
                    Entry::Occupied(_) => return None,
                    Entry::Vacant(slot) => slot.insert(resolved),
                };
            }
            Selection::InlineFragment(fragment) => {
                let fragment = &fragment.node;
                let on_this_type = fragment
                    .type_condition
                    .as_ref()
                    .is_none_or(|on| on.node.on.node.as_str() == type_name);
                if !fragment.directives.is_empty() || !on_this_type {
                    return None;
                }
                collect(value, &fragment.selection_set.node, env, out)?;
            }
            Selection::FragmentSpread(spread) => {
                if !spread.node.directives.is_empty() {
                    return None;
                }
                let fragment = &env.fragments.get(&spread.node.fragment_name.node)?.node;
                if fragment.type_condition.node.on.node.as_str() != type_name {
                    return None;
                }
                collect(value, &fragment.selection_set.node, env, out)?;
            }
        }
    }
    Some(())
}

/// `T` with the fast path in front of async-graphql's resolution. The schema sees `T`.
pub struct Plain<T>(pub T);

impl<T: PlainFields> OutputType for Plain<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let selection = PlainSelection {
            set: &ctx.item.node,
            env: ctx.query_env,
        };
        match selection.of(&self.0) {
            Some(value) => Ok(value),
            None => self.0.resolve(ctx, field).await,
        }
    }
}
