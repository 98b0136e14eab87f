//! The raw request path: a POST body → JSON → persisted-query resolution → the raw-text limits → parse → the
//! document limits → validation → execution, against a database that cannot be
//! reached (so resolvers fail fast with `UNAVAILABLE`). Nothing may panic, and
//! every error must carry a code after the one mapping clients see.
#![no_main]

use std::sync::{Arc, LazyLock};

use cortex::auth::Caller;
use cortex::error::response::normalize_error;
use cortex::graphql::complete::ResponseShape;
use cortex::graphql::context::RequestContext;
use cortex::graphql::documents::DocumentCache;
use cortex::graphql::http::SharedContext;
use cortex::graphql::persisted::{PersistedDocuments, WireBatch};
use cortex::graphql::{build_schema, CortexSchema, SchemaOptions};
use libfuzzer_sys::fuzz_target;

static SCHEMA: LazyLock<CortexSchema> = LazyLock::new(|| build_schema(SchemaOptions::default()));
// Shared across inputs like the server's: a repeated text takes the cached path.
static DOCUMENTS: LazyLock<DocumentCache> = LazyLock::new(DocumentCache::default);
// Shared too: a text registered by one input is found by a later one's hash.
static PERSISTED: LazyLock<PersistedDocuments> = LazyLock::new(PersistedDocuments::default);
static SHAPE: LazyLock<ResponseShape> = LazyLock::new(|| ResponseShape::from_sdl(&SCHEMA.sdl()));
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});
static CONTEXT: LazyLock<Arc<RequestContext>> = LazyLock::new(|| {
    RUNTIME.block_on(async {
        let pool = cortex::config::PoolConfig {
            size: 1,
            timeout: std::time::Duration::from_millis(50),
            recycle: std::time::Duration::from_secs(60),
            echo: false,
            statement_timeout: std::time::Duration::from_secs(1),
            slow: None,
            prepared_statements: true,
        };
        let db = cortex::db::Database::connect(
            "postgresql://fuzz@localhost/none?host=/nonexistent",
            &pool,
        )
        .await
        .unwrap();
        let caller = Caller::for_fuzzing("fuzz");
        Arc::new(RequestContext::new(db, Some(caller)))
    })
});

fuzz_target!(|body: &[u8]| {
    let Ok(batch) = WireBatch::from_json(body) else {
        return;
    };
    let requests = match batch {
        WireBatch::Single(request) => vec![request],
        WireBatch::Batch(requests) => requests,
    };
    for wire in requests.into_iter().take(10) {
        let Ok(request) = PERSISTED.resolve(wire) else {
            continue;
        };
        let request = request.data(SharedContext(CONTEXT.clone()));
        let limits = cortex::graphql::limits::QueryLimits::default();
        let (response, _) = RUNTIME.block_on(CONTEXT.run(cortex::graphql::execute(
            &SCHEMA, &limits, &DOCUMENTS, &SHAPE, request,
        )));
        for error in response.errors.into_iter().map(normalize_error) {
            let code = error
                .extensions
                .as_ref()
                .and_then(|e| e.get("code").cloned());
            assert!(code.is_some(), "an error without a code: {error:?}");
            assert!(
                !error.message.contains("SELECT"),
                "SQL leaked: {}",
                error.message
            );
        }
    }
});
