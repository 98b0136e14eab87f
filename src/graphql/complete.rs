//! Response completion as the GraphQL spec defines it, where async-graphql 7
//! does not: its containers resolve fields concurrently and insert each as it
//! finishes, so keys came back in completion order (`{a b c d}` as `a b d c`), and
//! a field that failed was left out of its object, where the spec (6.4.4,
//! "Handling Field Errors") makes it `null` and, when its type is non-null, makes
//! its parent `null` in turn, up to the nearest nullable field or `data` itself.
//! Apollo Client reports a missing key as "Missing field" and drops the result.
//!
//! [`ResponseShape`] knows each object field's type (read once from the schema's
//! SDL, public API only); [`ResultPlan::complete`] walks the response once with
//! a plan of the operation (its selections merged by response key, fragments
//! and `@skip`/`@include` applied), reorders an object only when its keys are out
//! of order, and propagates nulls.
//!
//! A field of an interface or union type (`node`) has one plan per concrete
//! type, since fragments (`... on Conversation`) apply to some and not others.
//! Which type an object is, the response says: [`ResponseShape::mark_abstract`]
//! adds an aliased `__typename` ([`TYPE_MARKER`]) to those selections before the
//! operation runs, and completion reads it and leaves it out.

use std::collections::HashMap;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    BaseType, Directive, DocumentOperations, ExecutableDocument, Field, OperationType, Selection,
    SelectionSet, Type, TypeKind, TypeSystemDefinition,
};
use async_graphql::parser::Positioned;
use async_graphql::{Name, Value, Variables};

use crate::graphql::with_variables;

/// The response key of the `__typename` added under abstract-typed fields: the
/// concrete type an object is, read by completion and never returned.
pub const TYPE_MARKER: &str = "_cortexTypename";

/// The type of every field of every object type, and the object types each
/// interface and union stands for.
#[derive(Debug, Default)]
pub struct ResponseShape {
    fields: HashMap<String, HashMap<String, Type>>,
    possible: HashMap<String, Vec<String>>,
}

/// What one selection set asks of an object: its response keys in order.
#[derive(Debug, Default)]
struct Plan {
    fields: Vec<FieldPlan>,
    /// For an interface or union: the plan of each concrete type, chosen by
    /// [`TYPE_MARKER`] (`fields` is then empty).
    by_type: Option<HashMap<String, Plan>>,
}

#[derive(Debug)]
struct FieldPlan {
    key: Name,
    /// `None`: not in the shape (introspection): the value is left as it is.
    ty: Option<Type>,
    child: Option<Plan>,
}

impl ResponseShape {
    /// Reads the object types' fields from `sdl`.
    pub fn from_sdl(sdl: &str) -> Self {
        let mut fields = HashMap::new();
        let mut possible: HashMap<String, Vec<String>> = HashMap::new();
        if let Ok(document) = async_graphql::parser::parse_schema(sdl) {
            for definition in document.definitions {
                if let TypeSystemDefinition::Type(ty) = definition {
                    let name = ty.node.name.node.to_string();
                    let object_fields = match ty.node.kind {
                        TypeKind::Object(object) => {
                            for interface in &object.implements {
                                possible
                                    .entry(interface.node.to_string())
                                    .or_default()
                                    .push(name.clone());
                            }
                            object.fields
                        }
                        TypeKind::Interface(interface) => {
                            possible.entry(name.clone()).or_default();
                            interface.fields
                        }
                        TypeKind::Union(union) => {
                            let members = union.members.iter().map(|m| m.node.to_string());
                            possible.entry(name).or_default().extend(members);
                            continue;
                        }
                        _ => continue,
                    };
                    let types = object_fields
                        .into_iter()
                        .map(|f| (f.node.name.node.to_string(), f.node.ty.node))
                        .collect();
                    fields.insert(name, types);
                }
            }
        }
        Self { fields, possible }
    }

    /// Adds `_cortexTypename: __typename` ([`TYPE_MARKER`]) to the selection of
    /// every field of an interface or union type in `document`, so that
    /// completion knows each object's type; `false` when there is none.
    pub fn mark_abstract(&self, document: &mut ExecutableDocument) -> bool {
        let mut marked = false;
        let roots = match &mut document.operations {
            DocumentOperations::Single(op) => vec![op],
            DocumentOperations::Multiple(ops) => ops.values_mut().collect(),
        };
        for operation in roots {
            let root = match operation.node.ty {
                OperationType::Query => "Query",
                OperationType::Mutation => "Mutation",
                OperationType::Subscription => "Subscription",
            };
            marked |= self.mark_set(&mut operation.node.selection_set.node, root);
        }
        for fragment in document.fragments.values_mut() {
            let on = fragment.node.type_condition.node.on.node.to_string();
            marked |= self.mark_set(&mut fragment.node.selection_set.node, &on);
        }
        marked
    }

    fn mark_set(&self, set: &mut SelectionSet, type_name: &str) -> bool {
        let mut marked = false;
        for item in &mut set.items {
            match &mut item.node {
                Selection::Field(field) => {
                    let field = &mut field.node;
                    let Some(ty) = self
                        .fields
                        .get(type_name)
                        .and_then(|fields| fields.get(field.name.node.as_str()))
                    else {
                        continue;
                    };
                    let child = named(ty).to_string();
                    let children = &mut field.selection_set;
                    if children.node.items.is_empty() {
                        continue;
                    }
                    if self.possible.contains_key(&child) {
                        let at = children.pos;
                        let marker = Field {
                            alias: Some(Positioned::new(Name::new(TYPE_MARKER), at)),
                            name: Positioned::new(Name::new("__typename"), at),
                            arguments: Vec::new(),
                            directives: Vec::new(),
                            selection_set: Positioned::new(SelectionSet::default(), at),
                        };
                        children.node.items.push(Positioned::new(
                            Selection::Field(Positioned::new(marker, at)),
                            at,
                        ));
                        marked = true;
                    }
                    marked |= self.mark_set(&mut children.node, &child);
                }
                Selection::InlineFragment(fragment) => {
                    let on = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map_or_else(|| type_name.to_string(), |c| c.node.on.node.to_string());
                    marked |= self.mark_set(&mut fragment.node.selection_set.node, &on);
                }
                Selection::FragmentSpread(_) => {} // its definition is marked on its own
            }
        }
        marked
    }

    /// Whether a fragment on `condition` applies to an object of `type_name`.
    fn applies(&self, condition: &str, type_name: &str) -> bool {
        condition == type_name
            || self
                .possible
                .get(condition)
                .is_some_and(|types| types.iter().any(|t| t == type_name))
    }

    /// The plan of the operation `operation_name` of `document` (`None`: no such
    /// operation, or a subscription): made before the operation runs, while its
    /// variables are at hand (`@skip`/`@include` read them).
    pub fn plan(
        &self,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
    ) -> Option<ResultPlan> {
        let operation = match (&document.operations, operation_name) {
            (DocumentOperations::Single(op), _) => op,
            (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
            _ => return None,
        };
        let root = match operation.node.ty {
            OperationType::Query => "Query",
            OperationType::Mutation => "Mutation",
            OperationType::Subscription => return None,
        };
        let planner = Planner {
            shape: self,
            document,
            variables,
        };
        Some(ResultPlan(
            planner.plan(&[&operation.node.selection_set.node], root),
        ))
    }
}

/// What an operation's result must look like (see [`ResponseShape::plan`]).
#[derive(Debug)]
pub struct ResultPlan(Plan);

impl ResultPlan {
    /// Completes `data`, the operation's result, in place: keys in selection
    /// order, failed fields `null`, nulls propagated (`data` itself included).
    pub fn complete(&self, data: &mut Value) {
        let mut map = match std::mem::take(data) {
            Value::Object(map) => map,
            // async-graphql answers `null` when every root field failed.
            Value::Null => IndexMap::new(),
            other => {
                *data = other;
                return;
            }
        };
        if complete_object(&mut map, &self.0) {
            *data = Value::Object(map);
        }
    }
}

struct Planner<'a> {
    shape: &'a ResponseShape,
    document: &'a ExecutableDocument,
    variables: &'a Variables,
}

impl<'a> Planner<'a> {
    /// The plan of `sets` (the selection sets of every field written under one
    /// response key) on an object of type `type_name`.
    fn plan(&self, sets: &[&'a SelectionSet], type_name: &str) -> Plan {
        if let Some(types) = self.shape.possible.get(type_name) {
            let by_type = types
                .iter()
                .map(|concrete| (concrete.clone(), self.plan(sets, concrete)))
                .collect();
            return Plan {
                fields: Vec::new(),
                by_type: Some(by_type),
            };
        }
        let mut keys: IndexMap<Name, (Name, Vec<&'a SelectionSet>)> = IndexMap::new();
        for set in sets {
            self.collect(set, type_name, &mut keys);
        }
        let types = self.shape.fields.get(type_name);
        let fields = keys
            .into_iter()
            .map(|(key, (field, children))| {
                let ty = if field.as_str() == "__typename" {
                    Some(Type::new("String!").expect("a type"))
                } else {
                    types.and_then(|t| t.get(field.as_str())).cloned()
                };
                let child = match &ty {
                    Some(ty) if !children.iter().all(|c| c.items.is_empty()) => {
                        Some(self.plan(&children, named(ty)))
                    }
                    _ => None,
                };
                FieldPlan { key, ty, child }
            })
            .collect();
        Plan {
            fields,
            by_type: None,
        }
    }

    fn collect(
        &self,
        set: &'a SelectionSet,
        type_name: &str,
        keys: &mut IndexMap<Name, (Name, Vec<&'a SelectionSet>)>,
    ) {
        for item in &set.items {
            if self.skipped(item.node.directives()) {
                continue;
            }
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if field.response_key().node.as_str() == TYPE_MARKER {
                        continue;
                    }
                    let entry = keys
                        .entry(field.response_key().node.clone())
                        .or_insert_with(|| (field.name.node.clone(), Vec::new()));
                    entry.1.push(&field.selection_set.node);
                }
                Selection::InlineFragment(fragment) => {
                    let applies = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .is_none_or(|c| self.shape.applies(c.node.on.node.as_str(), type_name));
                    if applies {
                        self.collect(&fragment.node.selection_set.node, type_name, keys);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let Some(fragment) =
                        self.document.fragments.get(&spread.node.fragment_name.node)
                    else {
                        continue;
                    };
                    let on = fragment.node.type_condition.node.on.node.as_str();
                    if self.shape.applies(on, type_name) {
                        self.collect(&fragment.node.selection_set.node, type_name, keys);
                    }
                }
            }
        }
    }

    /// `@skip(if: true)` or `@include(if: false)`, read as async-graphql reads
    /// them when it drops skipped fields: a condition that is not a boolean
    /// (a missing variable) counts as `false`.
    fn skipped(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().any(|d| {
            let include = match d.node.name.node.as_str() {
                "skip" => false,
                "include" => true,
                _ => return false,
            };
            let Some(value) = d.node.get_argument("if") else {
                return false;
            };
            let condition = with_variables!(value.node, |name: Name| self
                .variables
                .get(&name)
                .cloned()
                .unwrap_or(Value::Null));
            include != matches!(condition, Value::Boolean(true))
        })
    }
}

fn named(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(inner) => named(inner),
    }
}

/// Completes `map` under `plan`; `false`: the object must become `null` (a
/// non-null field of it is `null`).
fn complete_object(map: &mut IndexMap<Name, Value>, plan: &Plan) -> bool {
    let plan = match &plan.by_type {
        None => plan,
        Some(by_type) => {
            let concrete = match map.get(TYPE_MARKER) {
                Some(Value::String(name)) => by_type.get(name.as_str()),
                _ => None,
            };
            match concrete {
                Some(concrete) => concrete,
                // Not marked (cannot happen for a document that ran through
                // `execute`): left as async-graphql made it.
                None => return true,
            }
        }
    };
    let in_order =
        map.len() == plan.fields.len() && map.keys().zip(&plan.fields).all(|(k, f)| *k == f.key);
    if !in_order {
        let mut ordered = IndexMap::with_capacity(plan.fields.len());
        for field in &plan.fields {
            let value = map.swap_remove(&field.key).unwrap_or(Value::Null);
            ordered.insert(field.key.clone(), value);
        }
        *map = ordered;
    }
    for (value, field) in map.values_mut().zip(&plan.fields) {
        let Some(ty) = &field.ty else { continue };
        if !complete_value(value, ty, field.child.as_ref()) {
            return false;
        }
    }
    true
}

/// Completes `value` of type `ty`; `false`: it is `null` and `ty` is non-null,
/// so the null goes up.
fn complete_value(value: &mut Value, ty: &Type, plan: Option<&Plan>) -> bool {
    let null = match (&ty.base, &mut *value) {
        (_, Value::Null) => true,
        (BaseType::List(inner), Value::List(items)) => !items
            .iter_mut()
            .all(|item| complete_value(item, inner, plan)),
        (BaseType::Named(_), Value::Object(map)) => match plan {
            Some(plan) => !complete_object(map, plan),
            None => false, // a JSON scalar's object
        },
        _ => false,
    };
    if null {
        *value = Value::Null;
    }
    !null || ty.nullable
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDL: &str =
        "type Query { a: Int! b: String c: T d: T! list: [T!]! } type T { x: Int! y: Int }";

    fn completed(query: &str, data: serde_json::Value) -> serde_json::Value {
        let shape = ResponseShape::from_sdl(SDL);
        let document = async_graphql::parser::parse_query(query).unwrap();
        let mut value = Value::from_json(data).unwrap();
        let plan = shape.plan(&document, None, &Variables::default()).unwrap();
        plan.complete(&mut value);
        value.into_json().unwrap()
    }

    #[test]
    fn keys_come_back_in_selection_order_through_fragments() {
        let shape = ResponseShape::from_sdl(SDL);
        let query = "{ a ...F b } fragment F on Query { c { y x } }";
        let document = async_graphql::parser::parse_query(query).unwrap();
        // Keys as async-graphql may insert them: in completion order.
        let mut value = Value::Object(IndexMap::from([
            (Name::new("b"), Value::from("s")),
            (
                Name::new("c"),
                Value::Object(IndexMap::from([
                    (Name::new("x"), Value::from(1)),
                    (Name::new("y"), Value::from(2)),
                ])),
            ),
            (Name::new("a"), Value::from(1)),
        ]));
        let plan = shape.plan(&document, None, &Variables::default()).unwrap();
        plan.complete(&mut value);
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"a":1,"c":{"y":2,"x":1},"b":"s"}"#
        );
    }

    #[test]
    fn a_missing_nullable_field_is_null_and_a_non_null_one_nulls_its_parent() {
        assert_eq!(
            completed("{ a b }", serde_json::json!({"a": 1})),
            serde_json::json!({"a": 1, "b": null})
        );
        // c.x failed: c (nullable) becomes null.
        assert_eq!(
            completed(
                "{ a c { x y } }",
                serde_json::json!({"a": 1, "c": {"y": 2}})
            ),
            serde_json::json!({"a": 1, "c": null})
        );
        // d.x failed and d is non-null: data becomes null.
        assert_eq!(
            completed("{ a d { x } }", serde_json::json!({"a": 1, "d": {}})),
            serde_json::Value::Null
        );
        // A failed root field that is non-null: data is null.
        assert_eq!(
            completed("{ b a }", serde_json::json!({"b": "s"})),
            serde_json::Value::Null
        );
        // An item of [T!]! that failed: the list, then data.
        assert_eq!(
            completed(
                "{ list { x } }",
                serde_json::json!({"list": [{"x": 1}, {}]})
            ),
            serde_json::Value::Null
        );
    }

    #[test]
    fn an_interface_field_is_completed_by_the_plan_of_the_type_it_turned_out_to_be() {
        let sdl = "type Query { node: N } interface N { id: ID! } \
                   type A implements N { id: ID! a: Int! } type B implements N { id: ID! b: Int }";
        let shape = ResponseShape::from_sdl(sdl);
        let query = "{ node { ... on A { a } id ...F } } fragment F on B { b }";
        let mut document = async_graphql::parser::parse_query(query).unwrap();
        assert!(shape.mark_abstract(&mut document));
        let plan = shape.plan(&document, None, &Variables::default()).unwrap();
        let complete = |data: serde_json::Value| {
            let mut value = Value::from_json(data).unwrap();
            plan.complete(&mut value);
            serde_json::to_string(&value).unwrap()
        };
        // Out of order, with the marker: A's keys in order, the marker gone.
        assert_eq!(
            complete(serde_json::json!({"node": {"id": "1", TYPE_MARKER: "A", "a": 1}})),
            r#"{"node":{"a":1,"id":"1"}}"#
        );
        // B: its fragment's field, missing, is null; A's `a` is not expected.
        assert_eq!(
            complete(serde_json::json!({"node": {TYPE_MARKER: "B", "id": "2"}})),
            r#"{"node":{"id":"2","b":null}}"#
        );
        // A's non-null `a` failed: the nullable `node` is null.
        assert_eq!(
            complete(serde_json::json!({"node": {TYPE_MARKER: "A", "id": "1"}})),
            r#"{"node":null}"#
        );
    }

    #[test]
    fn skipped_fields_are_not_expected() {
        assert_eq!(
            completed(
                "{ a b @skip(if: true) c @include(if: false) { x } }",
                serde_json::json!({"a": 1})
            ),
            serde_json::json!({"a": 1})
        );
        // As async-graphql reads them: a missing variable is `false`.
        assert_eq!(
            completed(
                "query($v: Boolean) { a b @include(if: $v) c @skip(if: $v) }",
                serde_json::json!({"a": 1, "c": null})
            ),
            serde_json::json!({"a": 1, "c": null})
        );
    }
}
