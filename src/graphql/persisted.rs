//! How a request names its operation: the text itself, the sha256 of a text
//! registered before (automatic persisted queries, Apollo's and urql's
//! `extensions.persistedQuery`), or the id of a trusted document (a manifest
//! written at build time by `relay-compiler --persist`, GraphQL Codegen's
//! `persistedDocuments` or Apollo's `generate-persisted-query-manifest`).
//!
//! The wire format is read here rather than by async-graphql's `Request`, which
//! knows neither `documentId`/`doc_id` nor, over GET, `operationName`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use async_graphql::Variables;
use lru::LruCache;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::AppError;

/// How many automatic persisted queries one instance keeps (least recently used
/// go first; a client that misses sends the text again).
pub const APQ_ENTRIES: usize = 10_000;
/// How many bytes of query text they may hold in all: any caller may register
/// texts as large as a request body, and memory must stay bounded.
pub const APQ_MAX_BYTES: usize = 16 * 1024 * 1024;

/// One GraphQL request as a client sends it (a POST body's object, a GET query
/// string, a WebSocket `subscribe` payload).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireRequest {
    /// The operation text (absent when an id or hash stands for it).
    #[serde(default)]
    pub query: Option<String>,
    /// Which operation of the document runs.
    #[serde(default)]
    pub operation_name: Option<String>,
    /// The variables (a JSON object).
    #[serde(default)]
    pub variables: Option<serde_json::Value>,
    /// Protocol extensions (`persistedQuery`).
    #[serde(default)]
    pub extensions: Option<serde_json::Value>,
    /// A trusted document's id (GraphQL-over-HTTP's `documentId`; Relay's `doc_id`).
    #[serde(default, alias = "doc_id")]
    pub document_id: Option<String>,
}

/// A POST body: one request or a batch.
#[derive(Debug)]
pub enum WireBatch {
    /// One request (a JSON object).
    Single(WireRequest),
    /// A batch (a JSON array), run in order.
    Batch(Vec<WireRequest>),
}

impl WireBatch {
    /// Reads a POST body.
    pub fn from_json(body: &[u8]) -> Result<Self, AppError> {
        let bad = |e: serde_json::Error| {
            AppError::bad_input(
                "body",
                format!("the body is not a GraphQL request in JSON: {e}"),
            )
        };
        let value: serde_json::Value = serde_json::from_slice(body).map_err(bad)?;
        if value.is_array() {
            serde_json::from_value(value)
                .map(WireBatch::Batch)
                .map_err(bad)
        } else {
            serde_json::from_value(value)
                .map(WireBatch::Single)
                .map_err(bad)
        }
    }

    /// How many operations it holds.
    pub fn len(&self) -> usize {
        match self {
            WireBatch::Single(_) => 1,
            WireBatch::Batch(list) => list.len(),
        }
    }

    /// Whether it holds none (an empty array).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl WireRequest {
    /// Reads a GET query string (`query`, `operationName`, `variables` and
    /// `extensions` as JSON text, `documentId` or `doc_id`).
    pub fn from_query_string(raw: &str) -> Result<Self, AppError> {
        let mut request = WireRequest::default();
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let json = |field: &str| {
                serde_json::from_str::<serde_json::Value>(&value)
                    .map_err(|_| AppError::bad_input(field, format!("`{field}` must be JSON text")))
            };
            match key.as_ref() {
                "query" => request.query = Some(value.into_owned()),
                "operationName" => request.operation_name = Some(value.into_owned()),
                "variables" => request.variables = Some(json("variables")?),
                "extensions" => request.extensions = Some(json("extensions")?),
                "documentId" | "doc_id" => request.document_id = Some(value.into_owned()),
                _ => {}
            }
        }
        // `operationName=` (empty) is what some clients send for "the only one".
        request.operation_name = request.operation_name.filter(|n| !n.is_empty());
        Ok(request)
    }

    /// The sha256 hash `extensions.persistedQuery` names, when it is there.
    fn persisted_hash(&self) -> Result<Option<String>, AppError> {
        let Some(persisted) = self
            .extensions
            .as_ref()
            .and_then(|e| e.get("persistedQuery"))
        else {
            return Ok(None);
        };
        let field = "extensions.persistedQuery";
        if persisted.get("version").and_then(|v| v.as_u64()) != Some(1) {
            return Err(AppError::bad_input(
                field,
                "only version 1 of persisted queries is supported",
            ));
        }
        match persisted.get("sha256Hash").and_then(|h| h.as_str()) {
            Some(hash) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Some(hash.to_ascii_lowercase()))
            }
            _ => Err(AppError::bad_input(
                field,
                "`sha256Hash` must be the 64 hex digits of the query's sha256",
            )),
        }
    }
}

/// The lowercase hex sha256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    use std::fmt::Write as _;
    Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// The trusted documents (by id and by the sha256 of their text) and the
/// automatic persisted queries this instance has been sent.
pub struct PersistedDocuments {
    trusted: HashMap<String, Arc<str>>,
    automatic: Mutex<Automatic>,
    only_trusted: bool,
}

/// The automatic persisted queries: hash → text, bounded in count and bytes.
struct Automatic {
    texts: LruCache<String, Arc<str>>,
    bytes: usize,
}

impl Automatic {
    fn get(&mut self, hash: &str) -> Option<Arc<str>> {
        self.texts.get(hash).cloned()
    }

    fn put(&mut self, hash: String, text: Arc<str>) {
        self.bytes += text.len();
        if let Some(old) = self.texts.put(hash, text) {
            self.bytes -= old.len();
        }
        while self.bytes > APQ_MAX_BYTES || self.texts.len() > APQ_ENTRIES {
            match self.texts.pop_lru() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }
}

impl Default for PersistedDocuments {
    fn default() -> Self {
        Self::new(HashMap::new(), false)
    }
}

impl PersistedDocuments {
    fn new(trusted: HashMap<String, Arc<str>>, only_trusted: bool) -> Self {
        Self {
            trusted,
            automatic: Mutex::new(Automatic {
                texts: LruCache::unbounded(),
                bytes: 0,
            }),
            only_trusted,
        }
    }

    /// The documents the configuration names (`PERSISTED_DOCUMENTS`,
    /// `PERSISTED_ONLY`): a manifest that cannot be read stops start-up.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        let trusted = match &config.persisted_documents {
            Some(path) => read_manifest(path)?,
            None => HashMap::new(),
        };
        if config.persisted_only && trusted.is_empty() {
            anyhow::bail!(
                "PERSISTED_ONLY=true needs PERSISTED_DOCUMENTS: a manifest with at least one operation"
            );
        }
        Ok(Self::new(trusted, config.persisted_only))
    }

    /// How many trusted documents there are (each counted once).
    pub fn trusted_len(&self) -> usize {
        let mut texts: Vec<&str> = self.trusted.values().map(|t| t.as_ref()).collect();
        texts.sort_unstable();
        texts.dedup();
        texts.len()
    }

    /// The request async-graphql runs: its text found from the id or hash it
    /// names, checked against the hash it carries, and registered when it is an
    /// automatic persisted query sent with its text.
    pub fn resolve(&self, wire: WireRequest) -> Result<async_graphql::Request, AppError> {
        let hash = wire.persisted_hash()?;
        let query = match (&wire.document_id, &hash, wire.query.as_deref()) {
            (Some(id), _, _) => {
                let id = id.strip_prefix("sha256:").unwrap_or(id);
                self.trusted.get(id).cloned().ok_or_else(|| {
                    AppError::PersistedQueryNotInList(format!(
                        "no trusted document has the id `{id}`"
                    ))
                })?
            }
            (None, Some(hash), None) => {
                if let Some(text) = self.trusted.get(hash) {
                    text.clone()
                } else if self.only_trusted {
                    return Err(not_in_list(hash));
                } else {
                    self.automatic
                        .lock()
                        .expect("persisted query lock")
                        .get(hash)
                        .ok_or(AppError::PersistedQueryNotFound)?
                }
            }
            (None, Some(hash), Some(text)) => {
                if sha256_hex(text) != *hash {
                    return Err(AppError::bad_input(
                        "extensions.persistedQuery",
                        "`sha256Hash` is not the sha256 of the query",
                    ));
                }
                if let Some(trusted) = self.trusted.get(hash) {
                    trusted.clone()
                } else if self.only_trusted {
                    return Err(not_in_list(hash));
                } else {
                    let text: Arc<str> = text.into();
                    self.automatic
                        .lock()
                        .expect("persisted query lock")
                        .put(hash.clone(), text.clone());
                    text
                }
            }
            (None, None, Some(text)) => {
                if self.only_trusted {
                    return Err(AppError::PersistedQueryIdRequired(
                        "this server runs registered operations only (PERSISTED_ONLY): send `documentId` or `extensions.persistedQuery` instead of the text".into(),
                    ));
                }
                text.into()
            }
            (None, None, None) => {
                return Err(AppError::bad_input(
                    "query",
                    "a request needs `query`, `documentId` or `extensions.persistedQuery`",
                ))
            }
        };
        let variables = match wire.variables {
            None | Some(serde_json::Value::Null) => Variables::default(),
            Some(value @ serde_json::Value::Object(_)) => Variables::from_json(value),
            Some(_) => {
                return Err(AppError::bad_input(
                    "variables",
                    "`variables` must be a JSON object",
                ))
            }
        };
        let mut request = async_graphql::Request::new(query.as_ref()).variables(variables);
        if let Some(name) = wire.operation_name {
            request = request.operation_name(name);
        }
        if let Some(serde_json::Value::Object(extensions)) = wire.extensions {
            for (key, value) in extensions {
                if let Ok(value) = async_graphql::Value::from_json(value) {
                    request.extensions.insert(key, value);
                }
            }
        }
        Ok(request)
    }
}

fn not_in_list(hash: &str) -> AppError {
    AppError::PersistedQueryNotInList(format!(
        "no trusted document has the sha256 `{hash}` (PERSISTED_ONLY)"
    ))
}

/// The manifest's operations by id and by the sha256 of their text: Apollo's
/// `{"format": "apollo-persisted-query-manifest", "operations": [{id, body}]}` or
/// a flat `{id: text}` map (Relay, GraphQL Codegen).
fn read_manifest(path: &Path) -> anyhow::Result<HashMap<String, Arc<str>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading PERSISTED_DOCUMENTS {}", path.display()))?;
    parse_manifest(&text).with_context(|| format!("PERSISTED_DOCUMENTS {}", path.display()))
}

fn parse_manifest(text: &str) -> anyhow::Result<HashMap<String, Arc<str>>> {
    #[derive(Deserialize)]
    struct Operation {
        id: String,
        body: String,
    }
    let value: serde_json::Value =
        serde_json::from_str(text).context("the manifest is not JSON")?;
    let pairs: Vec<(String, String)> = match value.get("operations") {
        Some(operations) => {
            let operations: Vec<Operation> = serde_json::from_value(operations.clone())
                .context("`operations` must be a list of {id, body}")?;
            operations.into_iter().map(|o| (o.id, o.body)).collect()
        }
        None => {
            let map: HashMap<String, String> = serde_json::from_value(value).context(
                "the manifest must be Apollo's persisted-query manifest or an {id: text} map",
            )?;
            map.into_iter().collect()
        }
    };
    let mut documents = HashMap::new();
    for (id, body) in pairs {
        async_graphql::parser::parse_query(&body)
            .with_context(|| format!("the operation `{id}` does not parse"))?;
        let body: Arc<str> = body.into();
        documents.insert(sha256_hex(&body), body.clone());
        documents.insert(id.strip_prefix("sha256:").unwrap_or(&id).to_string(), body);
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = "{ me { id } }";

    fn wire(json: serde_json::Value) -> WireRequest {
        serde_json::from_value(json).unwrap()
    }

    fn apq(hash: &str, query: Option<&str>) -> WireRequest {
        wire(serde_json::json!({
            "query": query,
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash}},
        }))
    }

    #[test]
    fn sha256_is_lowercase_hex_of_the_text() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn an_automatic_persisted_query_is_not_found_then_registered_with_its_text() {
        let documents = PersistedDocuments::default();
        let hash = sha256_hex(QUERY);
        let missing = documents.resolve(apq(&hash, None)).unwrap_err();
        assert_eq!(missing.code(), "PERSISTED_QUERY_NOT_FOUND");
        let registered = documents.resolve(apq(&hash, Some(QUERY))).unwrap();
        assert_eq!(registered.query, QUERY);
        assert_eq!(documents.resolve(apq(&hash, None)).unwrap().query, QUERY);
        // A text that is not what the hash says is refused, and not registered.
        let other = sha256_hex("{ other }");
        let wrong = documents.resolve(apq(&other, Some(QUERY))).unwrap_err();
        assert_eq!(wrong.code(), "BAD_USER_INPUT");
        assert_eq!(
            documents.resolve(apq(&other, None)).unwrap_err().code(),
            "PERSISTED_QUERY_NOT_FOUND"
        );
        let bad = documents.resolve(apq("12ab", None)).unwrap_err();
        assert_eq!(bad.code(), "BAD_USER_INPUT");
    }

    #[test]
    fn automatic_persisted_queries_are_bounded_in_bytes() {
        let documents = PersistedDocuments::default();
        let big = format!("{{ me {{ id }} }}{}", " ".repeat(1024 * 1024));
        for i in 0..20 {
            let text = format!("{big}# {i}");
            documents
                .resolve(apq(&sha256_hex(&text), Some(&text)))
                .unwrap();
        }
        let automatic = documents.automatic.lock().unwrap();
        assert!(automatic.bytes <= APQ_MAX_BYTES, "{}", automatic.bytes);
        assert!(automatic.texts.len() < 20);
    }

    #[test]
    fn persisted_only_without_a_manifest_is_a_configuration_error() {
        let config = crate::config::Config::from_lookup(|name| {
            (name == "PERSISTED_ONLY").then(|| "true".to_string())
        })
        .unwrap();
        let error = PersistedDocuments::from_config(&config).err().unwrap();
        assert!(error.to_string().contains("PERSISTED_DOCUMENTS"), "{error}");
    }

    #[test]
    fn both_manifest_formats_are_read_by_id_and_by_hash() {
        let apollo = serde_json::json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{"id": "abc", "name": "Me", "type": "query", "body": QUERY}],
        });
        let relay = serde_json::json!({"sha256:abc": QUERY});
        for manifest in [apollo, relay] {
            let trusted = parse_manifest(&manifest.to_string()).unwrap();
            let documents = PersistedDocuments::new(trusted, true);
            assert_eq!(documents.trusted_len(), 1);
            for id in ["abc", "sha256:abc"] {
                let by_id = documents.resolve(wire(serde_json::json!({"documentId": id})));
                assert_eq!(by_id.unwrap().query, QUERY);
            }
            let by_doc_id = documents.resolve(wire(serde_json::json!({"doc_id": "abc"})));
            assert_eq!(by_doc_id.unwrap().query, QUERY);
            let by_hash = documents.resolve(apq(&sha256_hex(QUERY), None));
            assert_eq!(by_hash.unwrap().query, QUERY);
        }
        assert!(parse_manifest(r#"{"x": "{ not closed"}"#).is_err());
        assert!(parse_manifest(r#"{"operations": [{"id": 1}]}"#).is_err());
    }

    #[test]
    fn only_trusted_documents_run_in_persisted_only_mode() {
        let trusted = parse_manifest(&serde_json::json!({"me": QUERY}).to_string()).unwrap();
        let documents = PersistedDocuments::new(trusted, true);
        let text = wire(serde_json::json!({"query": QUERY}));
        assert_eq!(
            documents.resolve(text).unwrap_err().code(),
            "PERSISTED_QUERY_ID_REQUIRED"
        );
        let unknown = wire(serde_json::json!({"documentId": "other"}));
        assert_eq!(
            documents.resolve(unknown).unwrap_err().code(),
            "PERSISTED_QUERY_NOT_IN_LIST"
        );
        // An automatic persisted query is not registered in this mode.
        let other = "{ __typename }";
        let register = documents.resolve(apq(&sha256_hex(other), Some(other)));
        assert_eq!(register.unwrap_err().code(), "PERSISTED_QUERY_NOT_IN_LIST");
        assert!(documents.resolve(apq(&sha256_hex(QUERY), None)).is_ok());
    }

    #[test]
    fn a_get_query_string_reads_operation_name_and_json_parameters() {
        let raw = "query=query%20A%20%7B%20me%20%7B%20id%20%7D%20%7D&operationName=A&variables=%7B%22x%22%3A1%7D";
        let request = WireRequest::from_query_string(raw).unwrap();
        assert_eq!(request.operation_name.as_deref(), Some("A"));
        assert_eq!(request.variables, Some(serde_json::json!({"x": 1})));
        let bad = WireRequest::from_query_string("query=%7B%7D&variables=%7B").unwrap_err();
        assert_eq!(bad.code(), "BAD_USER_INPUT");
    }
}
