//! The GraphQL API: schema, types, loaders, filters and the HTTP endpoint.

pub mod batcher;
pub mod budget;
pub mod complete;
pub mod connection;
pub mod context;
pub mod conversation;
pub mod documents;
pub mod filters;
pub mod http;
pub mod input;
pub mod limits;
pub mod loaders;
pub mod message;
pub mod mutation;
pub mod node;
pub mod paging;
pub mod persisted;
pub mod plain;
pub mod playground;
pub mod query;
pub mod subscription;
pub mod user;
pub mod workspace;
pub mod ws;

use async_graphql::{SDLExportOptions, Schema};

/// The Cortex schema.
pub type CortexSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

/// How the schema answers: its limits, and what production mode turns off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaOptions {
    /// The query limits.
    pub limits: limits::QueryLimits,
    /// Answer `__schema`/`__type` (off in production unless `INTROSPECTION=true`).
    pub introspection: bool,
    /// "Did you mean …" in validation errors (off in production: it leaks the schema).
    pub suggestions: bool,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        Self {
            limits: limits::QueryLimits::default(),
            introspection: true,
            suggestions: true,
        }
    }
}

impl SchemaOptions {
    /// The options the configuration asks for.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            // Carries `introspection` too: the configuration sets both together.
            limits: config.limits,
            introspection: config.introspection,
            suggestions: !config.production,
        }
    }
}

type CortexSchemaBuilder = async_graphql::SchemaBuilder<
    query::QueryRoot,
    mutation::MutationRoot,
    subscription::SubscriptionRoot,
>;

fn schema_builder(options: SchemaOptions) -> CortexSchemaBuilder {
    // The other limits are checked by `execute`, before the schema sees the request.
    let mut builder = Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
    .limit_complexity(options.limits.max_complexity);
    if !options.introspection {
        builder = builder.disable_introspection();
    }
    if !options.suggestions {
        builder = builder.disable_suggestions();
    }
    builder
}

/// Builds the schema.
pub fn build_schema(options: SchemaOptions) -> CortexSchema {
    schema_builder(options).finish()
}

/// Builds the schema with an async-graphql extension installed (tracing, APM,
/// analysis). An extension hooks every field, so the fast path
/// ([`plain`]) is off: every object goes through async-graphql's resolution.
pub fn build_schema_with_extension(
    options: SchemaOptions,
    extension: impl async_graphql::extensions::ExtensionFactory,
) -> CortexSchema {
    schema_builder(options)
        .extension(extension)
        .data(plain::FastPath(false))
        .finish()
}

/// Runs one operation: the query limits first (before any resolver or SQL runs),
/// unless the same text passed them before (`documents`), then the schema, then
/// completes the result as the spec defines it (`shape`, see [`complete`]). Also
/// returns the operation's name: the request's `operationName`, or the name of the
/// document's only operation.
pub async fn execute(
    schema: &CortexSchema,
    limits: &limits::QueryLimits,
    documents: &documents::DocumentCache,
    shape: &complete::ResponseShape,
    mut request: async_graphql::Request,
) -> (async_graphql::Response, Option<String>) {
    let mut operation_document = None;
    let parsed_now = match documents.get(&request.query) {
        // Seen before, and it passed the limits then (they do not change while we run).
        Some(document) => {
            request.set_parsed_query(document.as_ref().clone());
            operation_document = Some(document);
            None
        }
        None => {
            if let Err(error) = limits.check_request(&mut request) {
                let name = request.operation_name.clone();
                return (async_graphql::Response::from_errors(vec![error]), name);
            }
            let query = request.query.clone();
            // Already parsed by the limit check; a text that does not parse is not kept.
            let mut document = request.parsed_query().ok().cloned();
            if let Some(document) = &mut document {
                if shape.mark_abstract(document) {
                    request.set_parsed_query(document.clone());
                }
            }
            document.map(|document| {
                let document = std::sync::Arc::new(document);
                operation_document = Some(document.clone());
                (query, document)
            })
        }
    };
    let literals_checked = parsed_now.is_none();
    let variables = std::mem::take(&mut request.variables);
    let checked = match request.parsed_query() {
        Ok(document) => input::reject_nul(document, &variables, literals_checked),
        Err(_) => Ok(()), // execution reports the syntax error
    };
    request.variables = variables;
    if let Err(error) = checked {
        let name = request.operation_name.clone();
        return (async_graphql::Response::from_errors(vec![error]), name);
    }
    let name = request.operation_name.clone().or_else(|| {
        let document = request.parsed_query().ok()?;
        match &document.operations {
            async_graphql::parser::types::DocumentOperations::Single(_) => None,
            async_graphql::parser::types::DocumentOperations::Multiple(ops) if ops.len() == 1 => {
                ops.keys().next().map(|n| n.to_string())
            }
            _ => None,
        }
    });
    let plan = operation_document
        .as_ref()
        .and_then(|document| shape.plan(document, name.as_deref(), &request.variables));
    let mut response = schema.execute(request).await;
    // Only a result that ran has fields to complete (request errors have no path).
    if let Some(plan) = plan {
        if response.errors.iter().all(|e| !e.path.is_empty()) {
            plan.complete(&mut response.data);
        }
    }
    if let Some((query, document)) = parsed_now {
        // Kept only once it also validated against the schema: a valid document's
        // errors come from resolvers and carry a path. Texts full of unknown fields,
        // which pass the limits, never fill the cache.
        if response.errors.iter().all(|e| !e.path.is_empty()) {
            documents.insert(query, document);
        }
    }
    (response, name)
}

/// `$value` (the parser's value type, which async-graphql does not export under a
/// name) as a constant, each variable replaced by `$lookup(name)`.
macro_rules! with_variables {
    ($value:expr, $lookup:expr) => {
        $value
            .clone()
            .into_const_with(|name| Ok::<_, std::convert::Infallible>($lookup(name)))
            .unwrap_or_else(|never| match never {})
    };
}
pub(crate) use with_variables;

/// The schema's SDL, sorted so that it is stable (what `schema.graphql` holds).
pub fn sdl() -> String {
    build_schema(SchemaOptions::default())
        .sdl_with_options(SDLExportOptions::new().sorted_fields().sorted_enum_items())
}
