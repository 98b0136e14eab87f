//! The fast path for listed messages and conversations (`graphql::plain`) runs
//! where it may, and steps aside when an async-graphql extension is installed.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo,
};
use async_graphql::{ServerResult, Value};
use common::Api;
use cortex::graphql::complete::ResponseShape;
use cortex::graphql::context::RequestContext;
use cortex::graphql::documents::DocumentCache;
use cortex::graphql::http::SharedContext;
use cortex::graphql::{build_schema, build_schema_with_extension, CortexSchema, SchemaOptions};
use serde_json::json;

const SEND: &str = "mutation($c: ID!, $t: String!) { sendMessage(input: {conversationId: $c, content: $t}) { id } }";

/// Counts the `content` fields async-graphql resolved (through the extension chain).
#[derive(Clone, Default)]
struct CountContent(Arc<AtomicUsize>);

impl ExtensionFactory for CountContent {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for CountContent {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.field_name() == "content" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        next.run(ctx, info).await
    }
}

/// Runs `query` as alice through `schema`, as the HTTP handler does, and returns
/// the response and how many objects the fast path answered.
async fn run(api: &Api, schema: &CortexSchema, query: &str) -> (serde_json::Value, u64) {
    let db = api.db.pool().await;
    let header = format!("Bearer {}", api.token("alice"));
    let caller = api.auth.authenticate(&db, Some(&header)).await.unwrap();
    let ctx = Arc::new(RequestContext::new(db, caller));
    let limits = cortex::graphql::limits::QueryLimits::default();
    let (documents, shape) = (
        DocumentCache::new(8),
        ResponseShape::from_sdl(&schema.sdl()),
    );
    let request = async_graphql::Request::new(query).data(SharedContext(ctx.clone()));
    let (response, _) = ctx
        .run(cortex::graphql::execute(
            schema, &limits, &documents, &shape, request,
        ))
        .await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    (response.data.into_json().unwrap(), ctx.fast_path_objects())
}

#[tokio::test]
async fn listed_messages_and_conversations_take_the_fast_path_unless_an_extension_is_installed() {
    let api = Api::new().await;
    let ws = api
        .ok(
            "alice",
            "mutation { createWorkspace(input: {name: \"w\"}) { id } }",
            json!({}),
        )
        .await["createWorkspace"]["id"]
        .clone();
    let conv = api
        .ok(
            "alice",
            "mutation($w: ID!) { createConversation(input: {workspaceId: $w, topic: \"t\"}) { id } }",
            json!({"w": ws}),
        )
        .await["createConversation"]["id"]
        .clone();
    for n in 0..3 {
        api.ok("alice", SEND, json!({"c": conv, "t": format!("m{n}")}))
            .await;
    }
    let nodes = "{ workspaces { nodes { conversations { nodes { messages { nodes { id content sender { name } } } } } } } }";
    let edges = "{ workspaces { nodes { conversations { nodes { messages { edges { node { content } } } } } } } }";
    let not_plain = "{ workspaces { nodes { conversations { nodes { messages { nodes { content conversation { topic } } } } } } } }";

    let plain_schema = build_schema(SchemaOptions::default());
    let (data, fast) = run(&api, &plain_schema, nodes).await;
    let messages =
        &data["workspaces"]["nodes"][0]["conversations"]["nodes"][0]["messages"]["nodes"];
    assert_eq!(messages.as_array().unwrap().len(), 3);
    assert_eq!(fast, 3, "every listed message answered by the fast path");
    assert_eq!(
        run(&api, &plain_schema, edges).await.1,
        3,
        "and through edges"
    );
    assert_eq!(
        run(&api, &plain_schema, not_plain).await.1,
        0,
        "a field that loads"
    );
    let conversations =
        "{ workspaces { nodes { conversations { nodes { id topic metadata } } } } }";
    assert_eq!(
        run(&api, &plain_schema, conversations).await.1,
        1,
        "listed conversations too"
    );

    let seen = CountContent::default();
    let hooked = build_schema_with_extension(SchemaOptions::default(), seen.clone());
    let (hooked_data, fast) = run(&api, &hooked, nodes).await;
    assert_eq!(fast, 0, "the extension sees every field");
    assert_eq!(seen.0.load(Ordering::Relaxed), 3);
    assert_eq!(hooked_data, data, "the same answer either way");
}
