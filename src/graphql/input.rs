//! Checks on input values that hold for every argument, wherever it is used.
//!
//! PostgreSQL's `text` and `jsonb` cannot hold the NUL character (`\u0000`), which
//! GraphQL strings and JSON may: left alone, a NUL in a name, a topic, a metadata
//! string (or key), a filter or a search query fails in the database as an
//! internal error, after other statements of the request may have run. It is
//! refused here, before anything runs, as `BAD_USER_INPUT` with `extensions.field`
//! naming the input field as the other validation errors do (`name`, `topic`,
//! `metadata`, `participantIds`: the field of an input object, else the argument,
//! `query`), whether the value was written in the document or sent as a
//! variable; the message gives the whole path (`input.metadata.tags.2`).

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, ServerError, ServerResult, Value as ConstValue, Variables};

use crate::error::AppError;
use crate::graphql::with_variables;

/// Refuses an operation whose arguments, as written or through its variables,
/// hold a NUL. `literals_checked`: the document's own text passed before (the
/// document cache), so only variables can bring one; then the document is
/// walked only when a variable holds a NUL, to say where it is used.
pub fn reject_nul(
    document: &ExecutableDocument,
    variables: &Variables,
    literals_checked: bool,
) -> ServerResult<()> {
    let in_variable = variables
        .iter()
        .find_map(|(name, value)| nul_in_const(value).map(|path| (name, path)));
    if literals_checked && in_variable.is_none() {
        return Ok(());
    }
    let walk = Walk {
        document,
        variables,
    };
    walk.document()?;
    match in_variable {
        // Sent but not used where an argument takes it (validation refuses that).
        Some((name, path)) => Err(nul_error(name.as_str(), &path)),
        None => Ok(()),
    }
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
}

impl Walk<'_> {
    fn document(&self) -> ServerResult<()> {
        for (_, op) in self.document.operations.iter() {
            self.selection_set(&op.node.selection_set.node)?;
        }
        for fragment in self.document.fragments.values() {
            self.selection_set(&fragment.node.selection_set.node)?;
        }
        Ok(())
    }

    /// A variable's value: the request's, else its default, else null.
    fn variable(&self, name: &Name) -> ConstValue {
        if let Some(value) = self.variables.get(name) {
            return value.clone();
        }
        self.document
            .operations
            .iter()
            .flat_map(|(_, op)| op.node.variable_definitions.iter())
            .find(|d| d.node.name.node == *name)
            .and_then(|d| d.node.default_value.as_ref())
            .map(|d| d.node.clone())
            .unwrap_or(ConstValue::Null)
    }

    fn selection_set(&self, set: &SelectionSet) -> ServerResult<()> {
        for item in &set.items {
            for directive in item.node.directives() {
                for (name, value) in &directive.node.arguments {
                    if let Some(path) = nul_in_const(&with_variables!(value.node, |name: Name| {
                        self.variable(&name)
                    })) {
                        return Err(nul_error(name.node.as_str(), &path));
                    }
                }
            }
            match &item.node {
                Selection::Field(field) => {
                    for (name, value) in &field.node.arguments {
                        if let Some(path) = nul_in_const(&with_variables!(
                            value.node,
                            |name: Name| self.variable(&name)
                        )) {
                            return Err(nul_error(name.node.as_str(), &path));
                        }
                    }
                    self.selection_set(&field.node.selection_set.node)?;
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set.node)?;
                }
                Selection::FragmentSpread(_) => {}
            }
        }
        Ok(())
    }
}

/// A path step: an object key or a list position.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where in `value` a string (or object key) holds a NUL, as the keys and list
/// positions leading to it (empty: `value` itself).
fn nul_in_const(value: &ConstValue) -> Option<Vec<Step>> {
    match value {
        ConstValue::String(s) => s.contains('\0').then(Vec::new),
        ConstValue::Enum(name) => in_name(name),
        ConstValue::List(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in_const(item).map(|path| prefixed(Step::Index(i), path))),
        ConstValue::Object(fields) => fields.iter().find_map(|(key, item)| {
            in_name(key)
                .or_else(|| nul_in_const(item))
                .map(|path| prefixed(Step::Key(key.to_string()), path))
        }),
        ConstValue::Null
        | ConstValue::Number(_)
        | ConstValue::Boolean(_)
        | ConstValue::Binary(_) => None,
    }
}

fn in_name(name: &Name) -> Option<Vec<Step>> {
    name.contains('\0').then(Vec::new)
}

fn prefixed(first: Step, mut rest: Vec<Step>) -> Vec<Step> {
    rest.insert(0, first);
    rest
}

fn nul_error(argument: &str, path: &[Step]) -> ServerError {
    let shown = |step: &Step| match step {
        Step::Key(key) => key.replace('\0', "\\u0000"),
        Step::Index(i) => i.to_string(),
    };
    let whole = std::iter::once(argument.to_string())
        .chain(path.iter().map(shown))
        .collect::<Vec<_>>()
        .join(".");
    // The input object's field, as other validation errors name it; else the argument.
    let field = match path.first() {
        Some(Step::Key(key)) => key.replace('\0', "\\u0000"),
        _ => argument.to_string(),
    };
    AppError::bad_input(
        field,
        format!("`{whole}` must not contain the NUL character (\\u0000)"),
    )
    .to_server_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusal's `field` and message, if refused.
    fn refusal(query: &str, variables: serde_json::Value) -> Option<(String, String)> {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let variables = Variables::from_json(variables);
        reject_nul(&document, &variables, false).err().map(|e| {
            let ext = e.extensions.unwrap();
            assert_eq!(ext.get("code"), Some(&ConstValue::from("BAD_USER_INPUT")));
            match ext.get("field") {
                Some(ConstValue::String(s)) => (s.clone(), e.message),
                other => panic!("{other:?}"),
            }
        })
    }

    fn field_of(query: &str, variables: serde_json::Value) -> Option<String> {
        refusal(query, variables).map(|(field, _)| field)
    }

    #[test]
    fn a_nul_in_a_variable_is_named_by_the_input_field_that_takes_it() {
        let q = "mutation($input: X) { a(input: $input) { id } }";
        let deep = serde_json::json!({"input": {"metadata": {"tags": ["a", "b", "c\u{0}"]}}});
        let (field, message) = refusal(q, deep).unwrap();
        assert_eq!(field, "metadata");
        assert!(message.contains("`input.metadata.tags.2`"), "{message}");
        let key = serde_json::json!({"input": {"metadata": {"k\u{0}": 1}}});
        let (_, message) = refusal(q, key).unwrap();
        assert!(message.contains("`input.metadata.k\\u0000`"), "{message}");
        let inside = "mutation($t: String) { a(input: {content: $t}) { id } }";
        assert_eq!(
            field_of(inside, serde_json::json!({"t": "x\u{0}"})).as_deref(),
            Some("content")
        );
        let list = "query($ids: [String]) { a(ids: $ids) { id } }";
        assert_eq!(
            field_of(list, serde_json::json!({"ids": ["a", "\u{0}"]})).as_deref(),
            Some("ids")
        );
        assert_eq!(
            field_of(q, serde_json::json!({"input": {"name": "ok"}})),
            None
        );
        // Sent and not used: still refused, under its own name.
        assert_eq!(
            field_of("{ a }", serde_json::json!({"spare": "\u{0}"})).as_deref(),
            Some("spare")
        );
    }

    #[test]
    fn a_nul_in_a_literal_argument_or_default_is_named_too() {
        let none = serde_json::json!({});
        assert_eq!(
            field_of("{ a(input: {name: \"x\\u0000\"}) { id } }", none.clone()).as_deref(),
            Some("name")
        );
        assert_eq!(
            field_of(
                "{ ...F } fragment F on Q { s(query: \"\\u0000\") }",
                none.clone()
            )
            .as_deref(),
            Some("query")
        );
        assert_eq!(
            field_of(
                "query($q: String = \"\\u0000\") { s(query: $q) }",
                none.clone()
            )
            .as_deref(),
            Some("query")
        );
        assert_eq!(field_of("{ s(query: \"fine\") }", none), None);
    }

    #[test]
    fn a_checked_document_is_walked_only_when_a_variable_holds_a_nul() {
        let document = async_graphql::parser::parse_query("{ s(query: \"\\u0000\") }").unwrap();
        let clean = Variables::from_json(serde_json::json!({}));
        assert!(reject_nul(&document, &clean, true).is_ok());
        assert!(reject_nul(&document, &clean, false).is_err());
    }
}
