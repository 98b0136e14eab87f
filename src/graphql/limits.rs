//! Query limits checked on the parsed document, before validation and before any
//! resolver or SQL runs.
//!
//! Depth is measured here instead of with async-graphql's `limit_depth`, because
//! that one also counts the introspection query every client tool sends (graphql-js's
//! `getIntrospectionQuery` nests `ofType` nine levels deep), so a depth limit tight
//! enough for real queries would break Apollo, Relay and GraphiQL's schema loading.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, ServerError, ServerResult, Value, Variables};

/// The query-limit extension.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Deepest field nesting accepted, not counting introspection.
    pub max_depth: usize,
}

impl ExtensionFactory for QueryLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_trait::async_trait]
impl Extension for QueryLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let depth = depth(&document);
        if depth > self.max_depth {
            return Err(limit_error(
                "depth",
                format!(
                    "the query is nested {depth} levels deep; the limit is {}",
                    self.max_depth
                ),
            ));
        }
        Ok(document)
    }
}

/// A refusal naming the limit, with a stable code.
fn limit_error(limit: &str, message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    let ext = error.extensions.get_or_insert_with(Default::default);
    ext.set("code", Value::from("BAD_USER_INPUT"));
    ext.set("limit", Value::from(limit));
    error
}

/// The deepest field nesting of any operation, `{ me { id } }` being 2. Fragments
/// are expanded (each measured once, so fragment "bombs" stay linear); a fragment
/// cycle counts as nothing here and is refused by validation.
pub fn depth(document: &ExecutableDocument) -> usize {
    let mut walker = DepthWalker {
        document,
        measured: HashMap::new(),
        in_progress: Vec::new(),
    };
    document
        .operations
        .iter()
        .map(|(_, op)| walker.selection_set(&op.node.selection_set.node))
        .max()
        .unwrap_or(0)
}

struct DepthWalker<'a> {
    document: &'a ExecutableDocument,
    measured: HashMap<&'a Name, usize>,
    in_progress: Vec<&'a Name>,
}

impl<'a> DepthWalker<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    if name == "__schema" || name == "__type" {
                        0
                    } else {
                        1 + self.selection_set(&field.node.selection_set.node)
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => self.fragment(&spread.node.fragment_name.node),
            })
            .max()
            .unwrap_or(0)
    }

    fn fragment(&mut self, name: &'a Name) -> usize {
        if let Some(depth) = self.measured.get(name) {
            return *depth;
        }
        let Some((key, fragment)) = self.document.fragments.get_key_value(name) else {
            return 0; // unknown: validation reports it
        };
        if self.in_progress.contains(&key) {
            return 0; // a cycle: validation reports it
        }
        self.in_progress.push(key);
        let depth = self.selection_set(&fragment.node.selection_set.node);
        self.in_progress.pop();
        self.measured.insert(key, depth);
        depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_of(query: &str) -> usize {
        depth(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn counts_field_levels() {
        assert_eq!(depth_of("{ me { id } }"), 2);
        assert_eq!(depth_of("{ a { b { c } } d }"), 3);
    }

    #[test]
    fn expands_fragments_and_inline_fragments() {
        assert_eq!(
            depth_of("{ me { ...F } } fragment F on User { x { ... on X { y } } }"),
            3
        );
    }

    #[test]
    fn introspection_is_not_counted() {
        assert_eq!(
            depth_of("{ __schema { types { fields { type { ofType { ofType { ofType { name } } } } } } } me { id } }"),
            2
        );
    }

    #[test]
    fn fragment_cycles_and_unknown_fragments_terminate() {
        assert_eq!(
            depth_of(
                "{ a { ...A } } fragment A on T { b { ...B } } fragment B on T { c { ...A ...Z } }"
            ),
            3
        );
    }

    #[test]
    fn fragment_bombs_are_measured_once_per_fragment() {
        let mut query = String::from("{ a { ...F0 } }");
        for i in 0..40 {
            query.push_str(&format!(
                " fragment F{i} on T {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        query.push_str(" fragment F40 on T { leaf }");
        assert_eq!(depth_of(&query), 2);
    }
}
