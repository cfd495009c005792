//! API keys from a keys file (`server.keys_file`): several at once, each with an id, a tenant (the
//! one whose documents it reaches: `default` unless set, `*` for every tenant), its scopes and an
//! optional rate, stored as SHA-256 hashes (the file holds no key). The file is
//! read again when it changes, so that a key is added or revoked without a restart: a rotation is
//! a new key added, clients moved, the old one removed.
//!
//! ```json
//! {"keys": [{"id": "acme-page", "sha256": "<hex of sha256(key)>", "tenant": "acme",
//!            "scopes": ["search", "read"], "requests_per_second": 20},
//!           {"id": "ops", "sha256": "...", "tenant": "*", "scopes": ["search", "read", "write", "admin"]}]}
//! ```

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use quarry_core::tenant::{self, Reach};
use serde::Deserialize;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /v1/search`.
    Search,
    /// Every `GET` under `/v1`: documents' states, batches, fields, the cache's statistics.
    Read,
    /// Deletes, batches, retries, uploads.
    Write,
    /// Clearing the embedding cache.
    Admin,
}

impl Scope {
    /// The scope a request needs.
    pub fn of(method: &axum::http::Method, path: &str) -> Scope {
        match (method.as_str(), path) {
            ("POST", "/v1/search") => Scope::Search,
            ("POST", "/v1/cache/clear") => Scope::Admin,
            ("GET" | "HEAD", _) => Scope::Read,
            _ => Scope::Write,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Search => "search",
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    keys: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    sha256: String,
    #[serde(default = "default_tenant")]
    tenant: String,
    scopes: Vec<Scope>,
    #[serde(default)]
    requests_per_second: Option<NonZeroU32>,
}

fn default_tenant() -> String {
    tenant::DEFAULT.to_owned()
}

/// One key, as a request presents it.
#[derive(Debug)]
pub struct Key {
    pub id: String,
    pub reach: Reach,
    pub scopes: Vec<Scope>,
    rate: Option<NonZeroU32>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the keys file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the keys file {} is not valid", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the keys file {}: key {id:?} {reason}", path.display())]
    Entry { path: PathBuf, id: String, reason: &'static str },
}

/// How often a changed file is looked for.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The keys of a keys file, kept current with it.
pub struct Keys {
    path: PathBuf,
    state: Mutex<Loaded>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("path", &self.path).finish_non_exhaustive()
    }
}

struct Loaded {
    modified: Option<SystemTime>,
    checked: Instant,
    keys: ByHash,
    /// By key id, kept through reloads so that a rewrite does not reset anyone's budget.
    limiters: HashMap<String, (NonZeroU32, Arc<DefaultDirectRateLimiter>)>,
}

/// Why a request's key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No key, or one the file does not hold.
    Unknown,
    /// The key `id` lacks the scope.
    Scope { id: String },
    /// The key `id` is over its rate: retry after `wait`.
    Limited { id: String, wait: Duration },
}

impl Keys {
    /// Reads the file: an unreadable or invalid one is an error at start-up.
    pub fn load(path: &Path) -> Result<Keys, KeysError> {
        let (modified, keys) = read(path)?;
        Ok(Keys {
            path: path.to_owned(),
            state: Mutex::new(Loaded { modified, checked: Instant::now(), keys, limiters: HashMap::new() }),
        })
    }

    /// The key `presented` is, if it may make this request now.
    pub fn admit(&self, presented: &str, scope: Scope) -> Result<Arc<Key>, Denied> {
        let hash = crate::audit::sha256_hex(presented);
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.refresh(&mut state);
        let key = state.keys.get(&hash).cloned().ok_or(Denied::Unknown)?;
        if !key.scopes.contains(&scope) {
            return Err(Denied::Scope { id: key.id.clone() });
        }
        if let Some(rate) = key.rate {
            let limiter = match state.limiters.get(&key.id) {
                Some((r, l)) if *r == rate => Arc::clone(l),
                _ => {
                    let l = Arc::new(RateLimiter::direct(Quota::per_second(rate)));
                    state.limiters.insert(key.id.clone(), (rate, Arc::clone(&l)));
                    l
                }
            };
            if let Err(not_until) = limiter.check() {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(Denied::Limited { id: key.id.clone(), wait });
            }
        }
        Ok(key)
    }

    /// Reads the file again if it changed since it was read (looked at most every second). A
    /// file that became invalid keeps the keys read before, and says so: a half-written edit
    /// must not lock everyone out.
    fn refresh(&self, state: &mut Loaded) {
        if state.checked.elapsed() < CHECK_EVERY {
            return;
        }
        state.checked = Instant::now();
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified == state.modified {
            return;
        }
        match read(&self.path) {
            Ok((modified, keys)) => {
                tracing::info!(keys = keys.len(), "the keys file changed: keys reloaded");
                state.modified = modified;
                state.keys = keys;
            }
            Err(e) => {
                tracing::warn!(error = %quarry_core::error::chain(&e), "the keys file changed but cannot be used: the keys read before stay");
            }
        }
    }
}

/// Keys by the hex SHA-256 of the key.
type ByHash = HashMap<String, Arc<Key>>;

fn read(path: &Path) -> Result<(Option<SystemTime>, ByHash), KeysError> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read { path: path.to_owned(), source })?;
    let file: File =
        serde_json::from_str(&text).map_err(|source| KeysError::Parse { path: path.to_owned(), source })?;
    let mut keys = HashMap::new();
    for e in file.keys {
        let bad = |reason| KeysError::Entry { path: path.to_owned(), id: e.id.clone(), reason };
        let hash = e.sha256.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("has a sha256 that is not 64 hex digits"));
        }
        if e.scopes.is_empty() {
            return Err(bad("has no scopes"));
        }
        if keys.values().any(|k: &Arc<Key>| k.id == e.id) {
            return Err(bad("is named twice"));
        }
        let reach = match e.tenant.as_str() {
            "*" => Reach::All,
            t if tenant::valid_id(t) => Reach::Tenant(e.tenant.clone()),
            _ => return Err(bad("has a tenant that is not 1 to 64 letters, digits, - or _ (nor * for every tenant)")),
        };
        let key = Key { id: e.id.clone(), reach, scopes: e.scopes, rate: e.requests_per_second };
        if keys.insert(hash, Arc::new(key)).is_some() {
            return Err(bad("has the same key as another"));
        }
    }
    Ok((modified, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tenant: Option<&str>) -> PathBuf {
        let mut entry = serde_json::json!({"id": "k", "sha256": "ab".repeat(32), "scopes": ["search"]});
        if let Some(t) = tenant {
            entry["tenant"] = serde_json::json!(t);
        }
        let path = std::env::temp_dir().join(format!(
            "quarry-keys-unit-{}-{}.json",
            std::process::id(),
            tenant.unwrap_or("none").len()
        ));
        std::fs::write(&path, serde_json::json!({"keys": [entry]}).to_string()).expect("write");
        path
    }

    #[test]
    fn a_keys_tenant_is_its_own_every_tenant_or_refused() {
        for (tenant, reach) in [
            (None, Some(Reach::Tenant(tenant::DEFAULT.into()))),
            (Some("acme"), Some(Reach::Tenant("acme".into()))),
            (Some("*"), Some(Reach::All)),
            (Some("a b"), None),
            (Some(""), None),
        ] {
            let path = file(tenant);
            match (read(&path), reach) {
                (Ok((_, keys)), Some(reach)) => {
                    assert_eq!(keys.values().next().map(|k| k.reach.clone()), Some(reach), "{tenant:?}");
                }
                (Err(KeysError::Entry { reason, .. }), None) => assert!(reason.contains("tenant"), "{reason}"),
                (got, want) => panic!("{tenant:?}: {:?} where {want:?} was expected", got.map(|(_, k)| k.len())),
            }
            let _ = std::fs::remove_file(path);
        }
    }
}
