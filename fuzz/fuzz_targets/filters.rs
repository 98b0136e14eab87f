//! Metadata filters: any JSON value given as a `MetadataFilter` argument is either
//! refused with `BAD_USER_INPUT` or becomes a diesel predicate whose SQL carries the
//! input only as bound parameters.
#![no_main]

use std::sync::LazyLock;

use async_graphql::InputType;
use cortex::db::metadata::PreparedShapes;
use cortex::graphql::filters::MetadataFilter;
use libfuzzer_sys::fuzz_target;

// Shared like a pool's: the first shapes are admitted (prepared), later ones not,
// and the SQL must hold no client string either way.
static SHAPES: LazyLock<PreparedShapes> = LazyLock::new(PreparedShapes::default);

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(value) = async_graphql::Value::from_json(json) else {
        return;
    };
    let Ok(filter) = MetadataFilter::parse(Some(value)) else {
        return;
    };
    match filter.to_db("filter", &SHAPES) {
        Err(e) => assert_eq!(e.code(), "BAD_USER_INPUT"),
        Ok(db_filter) => {
            use diesel::QueryDsl;
            let predicate = cortex::db::workspaces::metadata_predicate(&db_filter);
            let query = cortex::db::schema::workspaces::table
                .filter(predicate)
                .select(cortex::db::schema::workspaces::id);
            let sql = diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string();
            // The statement text itself never holds client strings: only `$n` binds.
            let text = sql.split(" -- binds:").next().unwrap_or("");
            assert!(
                !text.contains('\''),
                "a literal was spliced into SQL: {text}"
            );
        }
    }
});
