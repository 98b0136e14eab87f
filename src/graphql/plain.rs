//! A synchronous fast path for objects that are returned by the thousand (a nested
//! page holds 2,000 messages and their senders; a filtered one, hundreds of
//! conversations).
//!
//! async-graphql resolves every field of every object through a boxed future, a
//! `FuturesUnordered` and the extension chain: for a message whose fields are all in
//! memory that machinery was most of the nested benchmark's CPU and allocations.
//!
//! The list's resolver reads its selection once, through async-graphql's public
//! look-ahead ([`Context::field`]), into a [`PlainPlan`] when the selection is
//! *plain*: fields without arguments or directives (fragments on the type itself
//! are seen through; a concrete type's fragments always apply once validated),
//! each named at most once, each a field the type answers from memory
//! ([`PlainFields::FIELDS`]). Each object of the list is then answered from the
//! plan ([`Plain`]); anything else (a field that must load or may fail, a field
//! selected twice) goes through async-graphql's own resolution, unchanged.
//!
//! What this skips must stay empty for it to be right. async-graphql applies
//! `@skip` and `@include` before executing, and the schema declares no other
//! executable directive. Extensions hook every field, so a schema built with one
//! turns the fast path off ([`FastPath`]; `build_schema_with_extension`). Values
//! are encoded by the scalars' own `to_value`, as async-graphql encodes them;
//! the API tests `messages_and_senders_resolve_the_same_on_the_fast_path_as_through_async_graphql`
//! and `conversations_resolve_the_same_on_the_fast_path_as_through_async_graphql`
//! compare both paths byte for byte, and `tests/fast_path.rs` shows the path runs,
//! and does not with an extension.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, Name, OutputType, Positioned, SelectionField, ServerResult, Value,
};

use crate::graphql::context::RequestContext;

/// An object type whose fields can often be answered from memory.
pub trait PlainFields: OutputType + 'static {
    /// The fields it can answer from memory: GraphQL name, and the value (`None`
    /// when this object cannot answer it after all, e.g. a sender not loaded).
    /// A field with a selection of its own gets the plan of that selection.
    const FIELDS: &'static [(&'static str, PlainField<Self>)];
}

/// How one field is answered from memory.
pub type PlainField<T> = fn(&T, Option<&PlainPlan>) -> Option<Value>;

/// Whether the schema may use the fast path: not when an extension is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPath(pub bool);

/// A plain selection, read once for a whole list.
pub struct PlainPlan {
    fields: Vec<PlannedField>,
    /// Objects this plan answered, added to the request's count when the list
    /// is done.
    answered: AtomicU64,
    request: Option<Arc<RequestContext>>,
}

struct PlannedField {
    /// The response key (the alias, or the name).
    key: Name,
    name: String,
    /// The field's place in the type's `FIELDS`, when the plan was made for it.
    index: Option<usize>,
    sub: Option<PlainPlan>,
}

impl PlainPlan {
    /// The plan of the list field `ctx` resolves (its items are `T`s), or `None`
    /// when the selection is not plain or the fast path is off.
    pub fn for_list<T: PlainFields>(ctx: &Context<'_>) -> Option<Arc<PlainPlan>> {
        if !ctx.data_opt::<FastPath>().is_none_or(|f| f.0) {
            return None;
        }
        let mut plan = Self::of(ctx.field())?;
        for field in &mut plan.fields {
            if field.name != "__typename" {
                // A field the type cannot answer from memory: no object of the
                // list could take the fast path.
                field.index = Some(T::FIELDS.iter().position(|(n, _)| *n == field.name)?);
            }
        }
        plan.request = Some(crate::graphql::context::shared(ctx));
        Some(Arc::new(plan))
    }

    /// The selection of `field`, when it is plain syntax: no arguments, no
    /// directives, no response key twice.
    fn of(field: SelectionField<'_>) -> Option<PlainPlan> {
        let mut fields: Vec<PlannedField> = Vec::new();
        let mut keys = HashSet::new();
        for child in field.selection_set() {
            let plain = child.arguments().ok()?.is_empty() && child.directives().ok()?.is_empty();
            let key = child.alias().unwrap_or(child.name());
            // The same key twice is merged by async-graphql: leave that to it.
            if !plain || !keys.insert(key) {
                return None;
            }
            let sub = match child.selection_set().next() {
                Some(_) => Some(Self::of(child)?),
                None => None,
            };
            fields.push(PlannedField {
                key: Name::new(key),
                name: child.name().to_string(),
                index: None,
                sub,
            });
        }
        Some(PlainPlan {
            fields,
            answered: AtomicU64::new(0),
            request: None,
        })
    }

    /// `value` answered by this plan, or `None` when it cannot be.
    pub fn answer<T: PlainFields>(&self, value: &T) -> Option<Value> {
        let mut out = IndexMap::with_capacity(self.fields.len());
        for field in &self.fields {
            let resolved = if field.name == "__typename" {
                Value::String(T::type_name().into_owned())
            } else {
                let (_, answer) = match field.index {
                    Some(index) => T::FIELDS.get(index)?,
                    None => T::FIELDS.iter().find(|(n, _)| *n == field.name)?,
                };
                answer(value, field.sub.as_ref())?
            };
            out.insert(field.key.clone(), resolved);
        }
        self.answered.fetch_add(1, Ordering::Relaxed);
        Some(Value::Object(out))
    }
}

impl Drop for PlainPlan {
    fn drop(&mut self) {
        if let Some(request) = &self.request {
            request.add_fast_path_objects(*self.answered.get_mut());
        }
    }
}

/// `T` with the fast path in front of async-graphql's resolution. The schema sees `T`.
pub struct Plain<T> {
    value: T,
    plan: Option<Arc<PlainPlan>>,
}

impl<T> Plain<T> {
    /// `value`, answered from `plan` when there is one.
    pub fn new(value: T, plan: Option<Arc<PlainPlan>>) -> Self {
        Self { value, plan }
    }
}

impl<T: PlainFields> OutputType for Plain<&T> {
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
        match self.plan.as_ref().and_then(|plan| plan.answer(self.value)) {
            Some(value) => Ok(value),
            None => self.value.resolve(ctx, field).await,
        }
    }
}
