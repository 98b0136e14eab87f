//! Checks on input values that hold for every argument, wherever it is used.
//!
//! PostgreSQL's `text` and `jsonb` cannot hold the NUL character (`\u0000`), which
//! GraphQL strings and JSON may: left alone, a NUL in a name, a topic, a metadata
//! string (or key), a filter or a search query fails in the database as an
//! internal error, after other statements of the request may have run. It is
//! refused here, before anything runs, as `BAD_USER_INPUT` with `extensions.field`
//! naming where it was: the argument or variable, then the keys and list positions
//! down to the string (`input.metadata.tags.2`).

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use std::convert::Infallible;

use async_graphql::{Name, ServerError, ServerResult, Value as ConstValue, Variables};

/// Refuses variables holding a NUL (checked for every request).
pub fn reject_nul_in_variables(variables: &Variables) -> ServerResult<()> {
    for (name, value) in variables.iter() {
        if let Some(path) = nul_in_const(value) {
            return Err(nul_error(name.as_str(), &path));
        }
    }
    Ok(())
}

/// Refuses a document whose arguments, directive arguments or variable defaults
/// hold a NUL (each written value visited once; checked when a text is first
/// seen, before the document cache keeps it).
pub fn reject_nul_in_document(document: &ExecutableDocument) -> ServerResult<()> {
    for (_, op) in document.operations.iter() {
        for definition in &op.node.variable_definitions {
            if let Some(default) = &definition.node.default_value {
                if let Some(path) = nul_in_const(&default.node) {
                    return Err(nul_error(definition.node.name.node.as_str(), &path));
                }
            }
        }
        in_selection_set(&op.node.selection_set.node)?;
    }
    for fragment in document.fragments.values() {
        in_selection_set(&fragment.node.selection_set.node)?;
    }
    Ok(())
}

/// A literal as written, its variables (checked apart) taken as null. A macro:
/// async-graphql does not export the parser's value type under a name.
macro_rules! literal {
    ($value:expr) => {
        $value
            .clone()
            .into_const_with(|_| Ok::<_, Infallible>(ConstValue::Null))
            .unwrap_or_else(|never| match never {})
    };
}

fn in_selection_set(set: &SelectionSet) -> ServerResult<()> {
    for item in &set.items {
        for directive in item.node.directives() {
            for (name, value) in &directive.node.arguments {
                if let Some(path) = nul_in_const(&literal!(value.node)) {
                    return Err(nul_error(name.node.as_str(), &path));
                }
            }
        }
        match &item.node {
            Selection::Field(field) => {
                for (name, value) in &field.node.arguments {
                    if let Some(path) = nul_in_const(&literal!(value.node)) {
                        return Err(nul_error(name.node.as_str(), &path));
                    }
                }
                in_selection_set(&field.node.selection_set.node)?;
            }
            Selection::InlineFragment(fragment) => {
                in_selection_set(&fragment.node.selection_set.node)?;
            }
            Selection::FragmentSpread(_) => {}
        }
    }
    Ok(())
}

/// Where in `value` a string (or object key) holds a NUL, as the keys and list
/// positions leading to it (empty: `value` itself).
fn nul_in_const(value: &ConstValue) -> Option<Vec<String>> {
    match value {
        ConstValue::String(s) => s.contains('\0').then(Vec::new),
        ConstValue::Enum(name) => in_name(name),
        ConstValue::List(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in_const(item).map(|path| prefixed(i.to_string(), path))),
        ConstValue::Object(fields) => fields.iter().find_map(|(key, item)| {
            in_name(key)
                .or_else(|| nul_in_const(item))
                .map(|path| prefixed(key.to_string(), path))
        }),
        ConstValue::Null
        | ConstValue::Number(_)
        | ConstValue::Boolean(_)
        | ConstValue::Binary(_) => None,
    }
}

fn in_name(name: &Name) -> Option<Vec<String>> {
    name.contains('\0').then(Vec::new)
}

fn prefixed(first: String, mut rest: Vec<String>) -> Vec<String> {
    rest.insert(0, first);
    rest
}

fn nul_error(argument: &str, path: &[String]) -> ServerError {
    let field = std::iter::once(argument.to_string())
        .chain(path.iter().map(|p| p.replace('\0', "\\u0000")))
        .collect::<Vec<_>>()
        .join(".");
    let mut error = ServerError::new(
        format!("`{field}` must not contain the NUL character (\\u0000)"),
        None,
    );
    let ext = error.extensions.get_or_insert_with(Default::default);
    ext.set("code", ConstValue::from("BAD_USER_INPUT"));
    ext.set("field", ConstValue::from(field));
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(query: &str, variables: serde_json::Value) -> Option<String> {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let variables = Variables::from_json(variables);
        let checked =
            reject_nul_in_variables(&variables).and_then(|()| reject_nul_in_document(&document));
        checked.err().map(|e| {
            let ext = e.extensions.unwrap();
            assert_eq!(ext.get("code"), Some(&ConstValue::from("BAD_USER_INPUT")));
            match ext.get("field") {
                Some(ConstValue::String(s)) => s.clone(),
                other => panic!("{other:?}"),
            }
        })
    }

    #[test]
    fn a_nul_anywhere_in_the_variables_is_named_by_its_path() {
        let q = "mutation($input: X) { a(input: $input) { id } }";
        let deep = serde_json::json!({"input": {"metadata": {"tags": ["a", "b", "c\u{0}"]}}});
        assert_eq!(field_of(q, deep).as_deref(), Some("input.metadata.tags.2"));
        let key = serde_json::json!({"input": {"metadata": {"k\u{0}": 1}}});
        assert_eq!(field_of(q, key).as_deref(), Some("input.metadata.k\\u0000"));
        assert_eq!(
            field_of(q, serde_json::json!({"input": {"name": "ok"}})),
            None
        );
    }

    #[test]
    fn a_nul_in_a_literal_argument_or_default_is_named_too() {
        let none = serde_json::json!({});
        assert_eq!(
            field_of("{ a(input: {name: \"x\\u0000\"}) { id } }", none.clone()).as_deref(),
            Some("input.name")
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
            Some("q")
        );
        assert_eq!(field_of("{ s(query: \"fine\") }", none), None);
    }
}
