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
use std::collections::HashMap;

use async_graphql::parser::types::{Directive, ExecutableDocument, Selection, SelectionSet};
use async_graphql::parser::Positioned;
use async_graphql::{Name, ServerError, ServerResult};

use crate::config;

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

/// Walks the raw document as GraphQL's lexer would (strings, block strings and
/// comments are opaque), counting tokens and bracket nesting, and stops at the
/// first limit passed: linear time, no recursion, no allocation.
pub fn scan(query: &str, max_nesting: usize, max_tokens: usize) -> ServerResult<()> {
    let bytes = query.as_bytes();
    let (mut i, mut nesting, mut tokens) = (0, 0usize, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' | 0xEF | 0xBB | 0xBF => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'[' | b'{' | b'(' => {
                nesting += 1;
                if nesting > max_nesting {
                    return Err(limit_error(
                        "nesting",
                        format!("brackets nest deeper than {max_nesting} levels"),
                    ));
                }
                i += 1;
            }
            b']' | b'}' | b')' => {
                nesting = nesting.saturating_sub(1);
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || b"_-+.".contains(&bytes[i]))
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        tokens += 1;
        if tokens > max_tokens {
            return Err(limit_error(
                "tokens",
                format!("the document has more than {max_tokens} tokens"),
            ));
        }
    }
    Ok(())
}

/// What the document-level limits measure.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Measure {
    /// Selections (fields, spreads, inline fragments) once every spread is
    /// replaced by its fragment's content: what a pass that expands fragments,
    /// as validation and execution do, visits. Saturates instead of overflowing.
    pub selections: usize,
    /// Deepest nesting of selection sets, fragment spreads and inline fragments
    /// counting a level each, as async-graphql's recursion check counts it
    /// (`usize::MAX`: deeper than [`MAX_SELECTION_NESTING`], not measured further).
    pub nesting: usize,
    /// A fragment that spreads itself, directly or through others (never valid;
    /// expanding it would not end).
    pub fragment_cycle: Option<Name>,
    /// Deepest field nesting outside introspection, `{ me { id } }` being 2.
    pub depth: usize,
    /// Most list-valued introspection fields on one path (a repeated one counts
    /// as too many).
    pub introspection_lists: usize,
    /// Aliased fields, fragments counted at each spread.
    pub aliases: usize,
    /// Directives, fragments counted at each spread.
    pub directives: usize,
    /// Whether `__schema` or `__type` is asked.
    pub introspection: bool,
    /// The most times one response key is written in one selection set
    /// (`{ id id id … }`): merged at execution, but compared pairwise by validation.
    pub duplicate_fields: usize,
    /// A directive used twice on one field, fragment or operation (never valid:
    /// none is repeatable). Refused as one error rather than one per copy.
    pub repeated_directive: bool,
}

/// Measures every operation of the document: selections summed over them (every
/// operation is validated), the largest of each other figure. Each fragment is
/// measured once and its measure reused at every spread, so this takes time
/// linear in the document's length while counting what expanding it would
/// cost (fragment "bombs" included). A fragment cycle is reported, not followed.
pub fn measure(document: &ExecutableDocument) -> Measure {
    let mut walker = Walker {
        document,
        measured: HashMap::new(),
        lists_measured: HashMap::new(),
        in_progress: Vec::new(),
        cycle: None,
        level: 0,
        too_deep: false,
    };
    let mut total = Measure::default();
    for (_, op) in document.operations.iter() {
        let mut m = walker.selection_set(&op.node.selection_set.node);
        total.selections = total.selections.saturating_add(m.selections);
        m.directives = m.directives.saturating_add(op.node.directives.len());
        m.repeated_directive |= repeats(&op.node.directives);
        total.repeated_directive |= m.repeated_directive;
        total.introspection |= m.introspection;
        total.duplicate_fields = total.duplicate_fields.max(m.duplicate_fields);
        total.depth = total.depth.max(m.depth);
        total.nesting = total.nesting.max(m.nesting);
        total.introspection_lists = total.introspection_lists.max(m.introspection_lists);
        total.aliases = total.aliases.max(m.aliases);
        total.directives = total.directives.max(m.directives);
    }
    // Unused fragments too: validation walks every definition (and refuses them).
    for name in document.fragments.keys() {
        walker.fragment(name);
    }
    total.fragment_cycle = walker.cycle.cloned();
    if walker.too_deep {
        total.nesting = usize::MAX;
    }
    total
}

/// The deepest field nesting of any operation (see [`measure`]).
pub fn depth(document: &ExecutableDocument) -> usize {
    measure(document).depth
}

/// How many times the most repeated response key (alias or name) is written in `set`.
fn most_repeated_field(set: &SelectionSet) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for item in &set.items {
        if let Selection::Field(field) = &item.node {
            let key = field.node.response_key().node.as_str();
            *counts.entry(key).or_default() += 1;
        }
    }
    counts.into_values().max().unwrap_or(0)
}

fn repeats(directives: &[Positioned<Directive>]) -> bool {
    let mut seen = std::collections::HashSet::new();
    directives
        .iter()
        .any(|d| !seen.insert(d.node.name.node.as_str()))
}

struct Walker<'a> {
    document: &'a ExecutableDocument,
    measured: HashMap<&'a Name, Measure>,
    lists_measured: HashMap<&'a Name, usize>,
    in_progress: Vec<&'a Name>,
    cycle: Option<&'a Name>,
    /// Selection sets entered and not left (the walk's recursion depth).
    level: usize,
    /// The walk stopped at [`MAX_SELECTION_NESTING`] somewhere.
    too_deep: bool,
}

impl<'a> Walker<'a> {
    /// Runs `measure` one level deeper, unless that is deeper than any document
    /// may nest: the walk recurses (through fields and fragments alike), and a
    /// chain of a thousand fragments must not overflow the stack.
    fn deeper<T: Default>(&mut self, measure: impl FnOnce(&mut Self) -> T) -> T {
        if self.level > MAX_SELECTION_NESTING {
            self.too_deep = true;
            return T::default();
        }
        self.level += 1;
        let measured = measure(self);
        self.level -= 1;
        measured
    }

    fn selection_set(&mut self, set: &'a SelectionSet) -> Measure {
        if set.items.is_empty() {
            return Measure::default(); // a leaf field: no level below it
        }
        self.deeper(|walker| walker.items(set))
    }

    fn items(&mut self, set: &'a SelectionSet) -> Measure {
        let mut total = Measure {
            duplicate_fields: most_repeated_field(set),
            ..Measure::default()
        };
        for item in &set.items {
            let (mut m, directives) = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let repeated = repeats(&field.directives);
                    let name = field.name.node.as_str();
                    let mut m = if name == "__schema" || name == "__type" {
                        let lists = self.introspection_lists(&field.selection_set.node);
                        Measure {
                            introspection_lists: lists,
                            introspection: true,
                            ..self.selection_set_skipping_depth(&field.selection_set.node)
                        }
                    } else {
                        let mut m = self.selection_set(&field.selection_set.node);
                        m.depth += 1;
                        m
                    };
                    m.aliases = m.aliases.saturating_add(usize::from(field.alias.is_some()));
                    m.repeated_directive |= repeated;
                    (m, field.directives.len())
                }
                Selection::InlineFragment(fragment) => {
                    let mut m = self.selection_set(&fragment.node.selection_set.node);
                    m.repeated_directive |= repeats(&fragment.node.directives);
                    (m, fragment.node.directives.len())
                }
                Selection::FragmentSpread(spread) => {
                    let mut m = self.fragment(&spread.node.fragment_name.node);
                    m.repeated_directive |= repeats(&spread.node.directives);
                    (m, spread.node.directives.len())
                }
            };
            total.selections = total
                .selections
                .saturating_add(1)
                .saturating_add(m.selections);
            // A leaf field adds no level; anything with a selection set adds one.
            let leaf = matches!(&item.node, Selection::Field(f) if f.node.selection_set.node.items.is_empty());
            total.nesting = total.nesting.max(m.nesting + usize::from(!leaf));
            total.repeated_directive |= m.repeated_directive;
            total.introspection |= m.introspection;
            total.duplicate_fields = total.duplicate_fields.max(m.duplicate_fields);
            m.repeated_directive = false;
            total.depth = total.depth.max(m.depth);
            total.introspection_lists = total.introspection_lists.max(m.introspection_lists);
            total.aliases = total.aliases.saturating_add(m.aliases);
            total.directives = total
                .directives
                .saturating_add(m.directives)
                .saturating_add(directives);
        }
        total
    }

    /// Aliases and directives inside introspection count; its depth does not.
    fn selection_set_skipping_depth(&mut self, set: &'a SelectionSet) -> Measure {
        Measure {
            depth: 0,
            ..self.selection_set(set)
        }
    }

    fn fragment(&mut self, name: &'a Name) -> Measure {
        if let Some(m) = self.measured.get(name) {
            return m.clone();
        }
        let Some((key, fragment)) = self.document.fragments.get_key_value(name) else {
            return Measure::default(); // unknown: validation reports it
        };
        if self.in_progress.contains(&key) {
            self.cycle.get_or_insert(key);
            return Measure::default();
        }
        self.in_progress.push(key);
        let m = self.selection_set(&fragment.node.selection_set.node);
        self.in_progress.pop();
        self.measured.insert(key, m.clone());
        m
    }
}

impl<'a> Walker<'a> {
    /// The most list-valued introspection fields on one path below `set`
    /// (fragments measured once each; a cycle counts as nothing and is refused by
    /// validation).
    fn introspection_lists(&mut self, set: &'a SelectionSet) -> usize {
        if set.items.is_empty() {
            return 0;
        }
        self.deeper(|walker| walker.introspection_list_items(set))
    }

    fn introspection_list_items(&mut self, set: &'a SelectionSet) -> usize {
        let mut most = 0;
        for item in &set.items {
            let below = match &item.node {
                Selection::Field(field) => {
                    let own =
                        usize::from(INTROSPECTION_LISTS.contains(&field.node.name.node.as_str()));
                    own + self.introspection_lists(&field.node.selection_set.node)
                }
                Selection::InlineFragment(fragment) => {
                    self.introspection_lists(&fragment.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if let Some(n) = self.lists_measured.get(name) {
                        *n
                    } else if let Some((key, fragment)) =
                        self.document.fragments.get_key_value(name)
                    {
                        if self.in_progress.contains(&key) {
                            0
                        } else {
                            self.in_progress.push(key);
                            let n = self.introspection_lists(&fragment.node.selection_set.node);
                            self.in_progress.pop();
                            self.lists_measured.insert(key, n);
                            n
                        }
                    } else {
                        0
                    }
                }
            };
            most = most.max(below);
        }
        most
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
        for i in 0..30 {
            query.push_str(&format!(
                " fragment F{i} on T {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        query.push_str(" fragment F30 on T { leaf }");
        assert_eq!(depth_of(&query), 2);
    }

    fn measure_of(query: &str) -> Measure {
        measure(&async_graphql::parser::parse_query(query).unwrap())
    }

    fn refused_by(result: ServerResult<()>) -> Option<String> {
        result.err().map(|e| {
            e.extensions
                .and_then(|x| x.get("limit").cloned())
                .map(|v| v.to_string())
                .unwrap_or_default()
        })
    }

    #[test]
    fn the_scan_refuses_deep_brackets_before_the_parser_sees_them() {
        let deep = format!("{{ f(x: {}1{}) }}", "[".repeat(2000), "]".repeat(2000));
        assert_eq!(
            refused_by(scan(&deep, 32, 10_000)),
            Some("\"nesting\"".into())
        );
        let objects = format!("{{ f(x: {}1{}) }}", "{a:".repeat(2000), "}".repeat(2000));
        assert_eq!(
            refused_by(scan(&objects, 32, 10_000)),
            Some("\"nesting\"".into())
        );
        assert_eq!(refused_by(scan("{ f(x: [[[1]]]) }", 32, 10_000)), None);
    }

    #[test]
    fn brackets_inside_strings_block_strings_and_comments_do_not_count() {
        let q = format!(
            "{{ f(a: \"{0}\", b: \"\"\"{0}\\\"\"\"{0}\"\"\") # {0}\n }}",
            "[".repeat(100)
        );
        assert_eq!(refused_by(scan(&q, 32, 10_000)), None);
    }

    #[test]
    fn the_scan_counts_tokens() {
        let q = format!("{{ {} }}", "a ".repeat(200));
        assert_eq!(refused_by(scan(&q, 32, 202)), None);
        assert_eq!(refused_by(scan(&q, 32, 201)), Some("\"tokens\"".into()));
        // Commas and whitespace are not tokens; `...` is one.
        assert_eq!(refused_by(scan("{ a, b, ...F }", 32, 6)), None);
    }

    #[test]
    fn aliases_and_directives_are_counted_at_every_fragment_spread() {
        let m = measure_of(
            "{ a: me { id } ...F ...F } fragment F on Query { b: me { id @skip(if: false) } }",
        );
        assert_eq!((m.aliases, m.directives), (3, 2));
        assert!(!m.repeated_directive);
    }

    #[test]
    fn a_repeated_directive_is_flagged_once() {
        let m = measure_of("{ __typename @aa @aa @aa }");
        assert!(m.repeated_directive);
        assert!(!measure_of("{ a @skip(if: true) @include(if: true) }").repeated_directive);
    }

    #[test]
    fn circular_introspection_counts_list_fields_on_one_path() {
        assert_eq!(
            measure_of(
                "{ __schema { types { fields { args { name } type { ofType { name } } } } } }"
            )
            .introspection_lists,
            3
        );
        assert_eq!(
            measure_of(
                "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
            )
            .introspection_lists,
            4
        );
    }

    #[test]
    fn duplicate_fields_count_per_selection_set_by_response_key() {
        assert_eq!(measure_of("{ a a b: a c { x x x } }").duplicate_fields, 3);
        assert_eq!(measure_of("{ a b: a }").duplicate_fields, 1);
    }

    /// `{ ...F0 }` where each of `levels` fragments spreads the next twice.
    fn bomb(levels: usize, leaf: &str) -> String {
        let mut query = String::from("{ ...F0 }");
        for i in 0..levels {
            query.push_str(&format!(
                " fragment F{i} on Query {{ ...F{} ...F{} }}",
                i + 1,
                i + 1
            ));
        }
        query.push_str(&format!(" fragment F{levels} on Query {{ {leaf} }}"));
        query
    }

    #[test]
    fn selections_count_every_spread_with_its_fragment() {
        assert_eq!(measure_of("{ me { id name } }").selections, 3);
        // 2 spreads of F (1 field each) + 1 inline fragment holding 1 field.
        assert_eq!(
            measure_of("{ ...F ...F ... on Query { x } } fragment F on Query { y }").selections,
            6
        );
        // Summed over operations: each is validated.
        assert_eq!(measure_of("query A { a } query B { b c }").selections, 3);
        // F_k = 2 (1 + F_{k+1}), F_leaf = 1, plus the operation's spread.
        let expected = (0..24).fold(1usize, |inner, _| 2 * (1 + inner)) + 1;
        assert_eq!(measure_of(&bomb(24, "__typename")).selections, expected);
    }

    #[test]
    fn a_bomb_is_measured_without_expanding_it_and_a_deep_one_without_deep_recursion() {
        let started = std::time::Instant::now();
        let m = measure_of(&bomb(30, "__typename"));
        assert_eq!((m.selections, m.nesting), (3 * (1usize << 30) - 1, 31));
        // Deeper than any document may nest: the walk stops (no stack overflow
        // for a chain of thousands of fragments), and says so.
        assert_eq!(measure_of(&bomb(64, "__typename")).nesting, usize::MAX);
        assert_eq!(measure_of(&bomb(5000, "a")).nesting, usize::MAX);
        let mut unused = String::from("{ a }");
        for i in 0..5000 {
            unused.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
        }
        assert_eq!(measure_of(&unused).nesting, usize::MAX);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn nesting_counts_spreads_and_inline_fragments_as_levels() {
        assert_eq!(measure_of("{ a }").nesting, 0);
        assert_eq!(measure_of("{ a { b } }").nesting, 1);
        assert_eq!(
            measure_of("{ ...F } fragment F on Query { ... on Query { a { b } } }").nesting,
            3
        );
    }

    #[test]
    fn a_bomb_is_refused_as_selections_before_any_other_limit() {
        let limits = QueryLimits::default();
        let aliased = bomb(30, "a: __typename @include(if: true)");
        for query in [bomb(24, "__typename"), bomb(30, "__typename"), aliased] {
            let document = async_graphql::parser::parse_query(&query).unwrap();
            assert_eq!(
                refused_by(limits.check_document(&document)),
                Some("\"selections\"".into())
            );
        }
        let deep = async_graphql::parser::parse_query(bomb(64, "__typename")).unwrap();
        assert_eq!(
            refused_by(limits.check_document(&deep)),
            Some("\"nesting\"".into())
        );
        let fits = async_graphql::parser::parse_query(bomb(10, "__typename")).unwrap();
        assert_eq!(refused_by(limits.check_document(&fits)), None);
    }

    #[test]
    fn fragment_cycles_are_refused_as_invalid() {
        for query in [
            "{ ...A } fragment A on Query { ...A }",
            "{ ...A } fragment A on Query { x { ...B } } fragment B on X { ...A }",
            "{ ...A ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A }",
        ] {
            let document = async_graphql::parser::parse_query(query).unwrap();
            let m = measure(&document);
            assert!(m.fragment_cycle.is_some(), "{query}");
            let error = QueryLimits::default()
                .check_document(&document)
                .unwrap_err();
            assert!(
                error.message.starts_with("Cannot spread fragment"),
                "{error:?}"
            );
            assert_eq!(refused_by(Err(error)), Some(String::new()));
        }
        assert_eq!(
            measure_of("{ ...A ...A } fragment A on Query { x }").fragment_cycle,
            None
        );
    }
}
