//! Parsed documents of operations seen before. Frontend apps send the same few
//! operation texts over and over with new variables; parsing one (pest) and
//! measuring it against the query limits was a quarter of the server's CPU for a
//! point read (`bench/RESULTS.md`). A document is kept only after it passed every
//! limit and validated against the schema, so a hit skips parsing and the limits;
//! validation still runs on every request.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

/// How many documents are kept (least recently used go first).
pub const DOCUMENT_CACHE_ENTRIES: usize = 1_000;
/// Longer operation texts are not kept, which bounds the cache to a few megabytes.
pub const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;

/// Operation text → its parsed document, for documents that passed the limits.
pub struct DocumentCache {
    entries: Mutex<LruCache<String, Arc<ExecutableDocument>>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self::new(DOCUMENT_CACHE_ENTRIES)
    }
}

impl DocumentCache {
    /// A cache of at most `entries` documents (at least one).
    pub fn new(entries: usize) -> Self {
        let entries = NonZeroUsize::new(entries).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(entries)),
        }
    }

    /// The document of `query`, when it was parsed and passed the limits before.
    pub fn get(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.entries
            .lock()
            .expect("document cache lock")
            .get(query)
            .cloned()
    }

    /// Keeps the document of `query`, unless the text is too long to be worth it.
    pub fn insert(&self, query: String, document: Arc<ExecutableDocument>) {
        if query.len() <= MAX_CACHED_QUERY_BYTES {
            self.entries
                .lock()
                .expect("document cache lock")
                .put(query, document);
        }
    }

    /// How many documents are kept.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("document cache lock").len()
    }

    /// Whether no document is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Arc<ExecutableDocument> {
        Arc::new(async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn keeps_the_most_recently_used_documents_up_to_its_size() {
        let cache = DocumentCache::new(2);
        for q in ["{ a }", "{ b }"] {
            cache.insert(q.to_string(), parse(q));
        }
        assert!(cache.get("{ a }").is_some()); // `{ a }` is now the most recent
        cache.insert("{ c }".to_string(), parse("{ c }"));
        assert!(cache.get("{ b }").is_none(), "the least recently used goes");
        assert!(cache.get("{ a }").is_some() && cache.get("{ c }").is_some());
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn only_documents_that_pass_the_limits_and_validate_are_kept() {
        use crate::graphql::{build_schema, execute, limits::QueryLimits, SchemaOptions};
        let schema = build_schema(SchemaOptions::default());
        let (limits, cache) = (QueryLimits::default(), DocumentCache::new(10));
        let shape = crate::graphql::complete::ResponseShape::from_sdl(&schema.sdl());
        for query in [
            "{ nope }",                                                  // unknown field
            "{ __typename",                                              // does not parse
            "{ a: __typename b: __typename c: __typename d: __typename e: __typename f: __typename g: __typename h: __typename i: __typename j: __typename k: __typename l: __typename m: __typename n: __typename o: __typename p: __typename }", // 16 aliases
        ] {
            let (response, _) = execute(&schema, &limits, &cache, &shape, query.into()).await;
            assert!(!response.errors.is_empty(), "{query}");
        }
        assert!(cache.is_empty());
        let (response, _) =
            execute(&schema, &limits, &cache, &shape, "{ __typename }".into()).await;
        assert!(response.errors.is_empty());
        assert!(cache.get("{ __typename }").is_some());
    }

    #[test]
    fn long_operation_texts_are_not_kept() {
        let cache = DocumentCache::new(10);
        let long = format!("{{ a {} }}", " ".repeat(MAX_CACHED_QUERY_BYTES));
        cache.insert(long.clone(), parse(&long));
        assert!(cache.is_empty());
    }
}
