//! Query limits, all checked before any resolver or SQL runs, each answered with
//! `BAD_USER_INPUT` and `extensions.limit` naming the limit:
//!
//! - on the raw text, before parsing: bracket nesting (async-graphql's parser
//!   recurses on nested list and object values without a guard, and a stack
//!   overflow aborts the whole process, not one request) and the token count;
//! - on the parsed document, in one pass that visits each fragment once: the
//!   selections the document expands to (so a fragment "bomb", fragments that
//!   each spread the next one twice, is refused before anything expands it),
//!   fragment cycles, field depth, aliases, directives, and the nesting of list
//!   fields inside introspection (the "circular introspection" query);
//! - in validation: complexity, with connection fields costed by their page size
//!   (see [`crate::graphql::paging::page_cost`]).
//!
//! Every later pass (async-graphql's own depth check, its validation, execution)
//! expands fragment spreads where they are written, so its work is bounded by the
//! expanded size measured here, not by the document's length. What execution
//! multiplies by list sizes is bounded by complexity and, whatever slips past,
//! by the CPU budget ([`super::budget`]).
//!
//! Depth is measured here instead of with async-graphql's `limit_depth`, because
//! that one also counts the introspection query every client tool sends (graphql-js's
//! `getIntrospectionQuery` nests `ofType` nine levels deep), so a depth limit tight
//! enough for real queries would break Apollo, Relay and GraphiQL's schema loading.

use crate::error::response::limit_error;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult};

use crate::config;

mod measure;
mod scan;
#[cfg(test)]
mod tests;

pub use measure::{depth, measure, Measure};
pub use scan::scan;

/// Deepest nesting of `[`, `{` and `(` in the raw document. Real queries stay far
/// below (the depth limit is 10 and the standard introspection query nests 13);
/// the parser's stack is safe far above.
pub const MAX_NESTING: usize = 32;

/// Deepest nesting of selections, a fragment spread or inline fragment counting
/// as a level like a field: async-graphql refuses deeper documents itself
/// (`The recursion depth of the query cannot be greater than 32`), after walking
/// them; here they are refused before, and the walk never recurses deeper.
pub const MAX_SELECTION_NESTING: usize = 32;

/// List-valued introspection fields (`types`, `fields`, ...) one path may pass
/// through: the standard introspection query needs 3 (`types → fields → args`);
/// the "circular" `types { fields { type { fields { type { fields ... }}}}}`
/// multiplies the answer by the schema's size at each level.
pub const MAX_INTROSPECTION_LISTS: usize = 3;

/// Times one field may be written in one selection set. Writing it twice is
/// harmless (it is merged), but validation compares such fields pairwise, so
/// thousands of copies (graphql-cop's "field duplication") cost quadratic time.
pub const MAX_DUPLICATE_FIELDS: usize = 20;

const INTROSPECTION_LISTS: [&str; 9] = [
    "types",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
    "directives",
    "locations",
];

/// The limits, each configurable (`QUERY_MAX_*`, see [`crate::config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Deepest field nesting accepted, not counting introspection.
    pub max_depth: usize,
    /// Largest complexity: one per field, connection fields times their page size.
    pub max_complexity: usize,
    /// Most aliased fields in one operation (fragments counted where spread).
    pub max_aliases: usize,
    /// Most directives in one operation (fragments counted where spread).
    pub max_directives: usize,
    /// Most tokens in the document.
    pub max_tokens: usize,
    /// Most selections (fields, fragment spreads, inline fragments) the
    /// document expands to, each spread counted with its fragment's content.
    pub max_selections: usize,
    /// Whether `__schema` and `__type` may be asked (production turns it off):
    /// refused with a clear error, where async-graphql alone answers `null`.
    pub introspection: bool,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_depth: config::DEFAULT_QUERY_MAX_DEPTH,
            max_complexity: config::DEFAULT_QUERY_MAX_COMPLEXITY,
            max_aliases: config::DEFAULT_QUERY_MAX_ALIASES,
            max_directives: config::DEFAULT_QUERY_MAX_DIRECTIVES,
            max_tokens: config::DEFAULT_QUERY_MAX_TOKENS,
            max_selections: config::DEFAULT_QUERY_MAX_SELECTIONS,
            introspection: true,
        }
    }
}

impl QueryLimits {
    /// Checks `request` before it runs: the raw text, then the parsed document,
    /// which is kept in the request so it is parsed once. A document that does
    /// not parse passes here; execution reports its syntax error. Complexity is
    /// checked by the schema's validation (`limit_complexity`, named by
    /// [`crate::error::response::normalize_error`]).
    ///
    /// Not an async-graphql extension on purpose: with any extension installed,
    /// every field and list item of every response goes through the extension
    /// chain, which cost the nested benchmark a measurable share of its CPU.
    pub fn check_request(&self, request: &mut async_graphql::Request) -> ServerResult<()> {
        scan(&request.query, MAX_NESTING, self.max_tokens)?;
        match request.parsed_query() {
            Ok(document) => self.check_document(document),
            Err(_) => Ok(()),
        }
    }

    /// The limits measured on the parsed document.
    pub fn check_document(&self, document: &ExecutableDocument) -> ServerResult<()> {
        let m = measure(document);
        // First: the walk stops at this nesting, so the rest is measured only below it.
        if m.nesting > MAX_SELECTION_NESTING {
            return Err(limit_error(
                "nesting",
                format!("selections nest deeper than {MAX_SELECTION_NESTING} levels (fields, fragment spreads and inline fragments each count as one)"),
            ));
        }
        // Then: the work of every later pass is bounded once this one holds.
        if m.selections > self.max_selections {
            return Err(limit_error(
                "selections",
                format!(
                    "the query expands to {} selections (each fragment counted where it is spread); the limit is {}",
                    display_count(m.selections),
                    self.max_selections
                ),
            ));
        }
        if let Some(name) = &m.fragment_cycle {
            return Err(validation_error(format!(
                "Cannot spread fragment \"{name}\" within itself."
            )));
        }
        if m.introspection && !self.introspection {
            return Err(limit_error(
                "introspection",
                "introspection is disabled on this server".into(),
            ));
        }
        if m.depth > self.max_depth {
            return Err(limit_error(
                "depth",
                format!(
                    "the query is nested {} levels deep; the limit is {}",
                    m.depth, self.max_depth
                ),
            ));
        }
        if m.introspection_lists > MAX_INTROSPECTION_LISTS {
            return Err(limit_error(
                "introspection",
                format!(
                    "introspection nests {} list fields in one path; the limit is {MAX_INTROSPECTION_LISTS}",
                    m.introspection_lists
                ),
            ));
        }
        if m.aliases > self.max_aliases {
            return Err(limit_error(
                "aliases",
                format!(
                    "the query has {} aliases; the limit is {}",
                    m.aliases, self.max_aliases
                ),
            ));
        }
        if m.repeated_directive {
            return Err(limit_error(
                "directives",
                "a directive is repeated on one field, fragment or operation".into(),
            ));
        }
        if m.directives > self.max_directives {
            return Err(limit_error(
                "directives",
                format!(
                    "the query has {} directives; the limit is {}",
                    m.directives, self.max_directives
                ),
            ));
        }
        if m.duplicate_fields > MAX_DUPLICATE_FIELDS {
            return Err(limit_error(
                "duplicates",
                format!(
                    "a field is repeated {} times in one selection; the limit is {MAX_DUPLICATE_FIELDS}",
                    m.duplicate_fields
                ),
            ));
        }
        Ok(())
    }
}

/// A document that is not valid GraphQL, with the code async-graphql's own
/// validation errors get (see [`crate::error::response::normalize_error`]).
fn validation_error(message: String) -> ServerError {
    crate::error::AppError::BadUserInput {
        message,
        field: None,
    }
    .to_server_error()
}

/// A measured count, `usize::MAX` (saturated) shown as "more than" it.
fn display_count(n: usize) -> String {
    if n == usize::MAX {
        format!("more than {}", usize::MAX - 1)
    } else {
        n.to_string()
    }
}
