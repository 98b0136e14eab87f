//! Bearer tokens: HS256 JWTs whose `sub` is the caller's `user_id`.
//!
//! The first request of a new `sub` creates its `users` row; inactive users are
//! refused. Known callers are cached for a few seconds so that authentication does
//! not cost every request a statement (a deactivation takes effect within
//! [`CALLER_CACHE_TTL`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::db::users::{self, NewUser, User};
use crate::db::Database;
use crate::error::{AppError, AppResult};

/// How long a verified caller is remembered.
pub const CALLER_CACHE_TTL: Duration = Duration::from_secs(10);
/// Default lifetime of a minted token (`cortex token --ttl`).
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 24 * 3600;

/// The claims Cortex reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The caller's `user_id`.
    pub sub: String,
    /// Display name (used when the user row is created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// E-mail (used when the user row is created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

/// The authenticated caller every loader and repository call is scoped to
/// (through [`crate::db::scope::Scope`]). Only this module makes one: from a
/// verified token of an active user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    user_id: String,
    /// The token's expiry, seconds since the epoch (a subscription ends then).
    expires_at: i64,
}

impl Caller {
    /// `users.user_id` (the token's `sub`).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// When the caller's token expires, seconds since the epoch.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// A caller without a token, for the fuzz targets (which run without a
    /// database); not in any build without the `fuzzing` feature.
    #[cfg(feature = "fuzzing")]
    pub fn for_fuzzing(user_id: &str) -> Self {
        Self {
            user_id: user_id.to_string(),
            expires_at: i64::MAX,
        }
    }
}

/// Signs and verifies tokens, and resolves them to callers.
#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    cache: Arc<Mutex<HashMap<String, (Instant, bool)>>>,
}

impl Authenticator {
    /// An authenticator over an HS256 secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Mints a token for `user_id` valid for `ttl_secs`.
    pub fn mint(
        &self,
        user_id: &str,
        name: Option<&str>,
        email: Option<&str>,
        ttl_secs: i64,
    ) -> String {
        let claims = Claims {
            sub: user_id.to_string(),
            name: name.map(str::to_string),
            email: email.map(str::to_string),
            exp: chrono::Utc::now().timestamp() + ttl_secs,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Verifies signature, algorithm (HS256 only, never `none`) and expiry.
    pub fn verify(&self, token: &str) -> AppResult<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidSignature => "the token's signature is invalid",
                    ErrorKind::InvalidAlgorithm => "the token must be signed with HS256",
                    _ => "the token is malformed",
                };
                AppError::Unauthenticated(why.into())
            })
    }

    /// Resolves an `Authorization` header value to a caller, creating the user on
    /// first sight. `None` header → `Ok(None)` (public operations such as introspection).
    pub async fn authenticate(
        &self,
        db: &Database,
        header: Option<&str>,
    ) -> AppResult<Option<Caller>> {
        let Some(header) = header else {
            return Ok(None);
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                AppError::Unauthenticated(
                    "the Authorization header must be `Bearer <token>`".into(),
                )
            })?
            .trim();
        let claims = self.verify(token)?;
        if claims.sub.is_empty() || claims.sub.len() > 255 {
            return Err(AppError::Unauthenticated(
                "the token's subject is invalid".into(),
            ));
        }
        let cached = self
            .cache
            .lock()
            .expect("cache lock")
            .get(&claims.sub)
            .copied();
        let active = match cached {
            Some((at, active)) if at.elapsed() < CALLER_CACHE_TTL => active,
            _ => {
                let user = self.load_or_create(db, &claims).await?;
                let mut cache = self.cache.lock().expect("cache lock");
                if cache.len() > 100_000 {
                    cache.clear();
                }
                cache.insert(claims.sub.clone(), (Instant::now(), user.is_active));
                user.is_active
            }
        };
        if !active {
            return Err(AppError::Unauthenticated("this user is deactivated".into()));
        }
        Ok(Some(Caller {
            user_id: claims.sub,
            expires_at: claims.exp,
        }))
    }

    async fn load_or_create(&self, db: &Database, claims: &Claims) -> AppResult<User> {
        let name: String = claims
            .name
            .clone()
            .unwrap_or_else(|| claims.sub.clone())
            .chars()
            .take(100)
            .collect();
        let new = NewUser {
            user_id: claims.sub.clone(),
            name,
            email: claims.email.clone().filter(|e| e.len() <= 255),
            metadata: serde_json::json!({}),
        };
        let create = async |new: &NewUser| {
            db.run(
                None,
                async |conn| Ok(users::get_or_create(conn, new).await?),
            )
            .await
        };
        // Two units: the failed insert ends its transaction (PgBouncer-safe mode).
        match create(&new).await {
            // Another user already has this e-mail (the one unique key besides
            // `user_id`, which the insert resolves): create the row without it.
            Err(AppError::Conflict(_)) => create(&NewUser { email: None, ..new }).await,
            result => result,
        }
    }

    /// Forgets cached callers (after an administrative change such as deactivation).
    pub fn forget(&self, user_id: &str) {
        self.cache.lock().expect("cache lock").remove(user_id);
    }
}

/// The secret for tokens: `JWT_SECRET`, or on the embedded default a random one kept
/// in `<data dir>/jwt_secret` (mode 0600) so tokens survive restarts.
pub fn load_or_create_local_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("jwt_secret");
    if let Ok(secret) = std::fs::read(&path) {
        if secret.len() >= 32 {
            return Ok(secret);
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let secret: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..64)
            .map(|_| format!("{:x}", rng.random_range(0..16u8)))
            .collect()
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    Ok(secret.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_carry_their_claims() {
        let auth = Authenticator::new(b"secret-secret-secret-secret-32by");
        let token = auth.mint("alice", Some("Alice"), None, 60);
        let claims = auth.verify(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.name.as_deref()),
            ("alice", Some("Alice"))
        );
    }

    #[test]
    fn expired_forged_and_unsigned_tokens_are_refused() {
        let auth = Authenticator::new(b"secret-secret-secret-secret-32by");
        let expired = auth.mint("alice", None, None, -3600);
        assert!(auth
            .verify(&expired)
            .unwrap_err()
            .to_string()
            .contains("expired"));
        let other = Authenticator::new(b"another-secret-another-secret-32");
        assert_eq!(
            auth.verify(&other.mint("alice", None, None, 60))
                .unwrap_err()
                .code(),
            "UNAUTHENTICATED"
        );
        // alg: none
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(format!(
                r#"{{"sub":"alice","exp":{}}}"#,
                chrono::Utc::now().timestamp() + 60
            ))
        );
        assert_eq!(auth.verify(&none).unwrap_err().code(), "UNAUTHENTICATED");
        assert_eq!(
            auth.verify("garbage").unwrap_err().code(),
            "UNAUTHENTICATED"
        );
    }
}
