//! The document pass: what a document expands to, measured once per fragment.

use std::collections::HashMap;

use async_graphql::parser::types::{Directive, ExecutableDocument, Selection, SelectionSet};
use async_graphql::parser::Positioned;
use async_graphql::Name;

use super::*;

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
