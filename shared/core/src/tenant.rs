//! Tenants: whose a document is, decided by where it was put, and whose a request may touch,
//! decided by who sent it.
//!
//! A document's tenant follows from its key alone: `tenants/<id>/…` belongs to `<id>`, anything
//! else to [`DEFAULT`]. Not from object metadata: a writer that IAM confines to `tenants/a/*` could
//! otherwise put a file into tenant b's index by labelling it so. The tenant is stored with every
//! chunk ([`crate::meta::TENANT`]) so that both lists filter on it inside the search, and a
//! request's [`Reach`] comes from its credentials (a keys file's key, a JWT's claim), never from
//! its body.

use crate::domain::{BatchId, DocumentKey};
use crate::filter::{Filter, Op, Scalar};

/// Where tenants' documents are put.
pub const PREFIX: &str = "tenants/";
/// The tenant of every document outside [`PREFIX`].
pub const DEFAULT: &str = "default";
/// Longest tenant id.
pub const MAX_ID: usize = 64;

/// Whether `id` can name a tenant: 1 to 64 ASCII letters, digits, `-` and `_` (it is a path
/// segment, a filter value and part of a batch id).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The tenant a key belongs to: `tenants/<id>/…` gives `<id>`, a key outside `tenants/` gives
/// [`DEFAULT`], and a key under `tenants/` without a valid id gives `""`, no tenant's: only a
/// caller who reaches every tenant sees it.
pub fn of_key(key: &str) -> &str {
    let Some(rest) = key.strip_prefix(PREFIX) else { return DEFAULT };
    match rest.split_once('/') {
        Some((id, _)) if valid_id(id) => id,
        _ => "",
    }
}

impl DocumentKey {
    /// The tenant this document belongs to ([`of_key`]).
    pub fn tenant(&self) -> &str {
        of_key(self.as_str())
    }
}

/// Whether every key that starts with `prefix` belongs to `tenant`.
pub fn prefix_within(prefix: &str, tenant: &str) -> bool {
    if prefix.starts_with(&format!("{PREFIX}{tenant}/")) {
        return true;
    }
    // The default tenant's keys are those outside `tenants/`: a prefix that could reach into it
    // (`""`, `"ten"`) is not within.
    tenant == DEFAULT && !prefix.starts_with(PREFIX) && !PREFIX.starts_with(prefix)
}

/// The tenant shared by every key (and the prefix) a batch was made of; `None` when they belong
/// to several, or to no tenant. A batch of nothing belongs to [`DEFAULT`].
pub fn common<'a>(keys: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut found: Option<&str> = None;
    for key in keys {
        let t = of_key(key);
        match found {
            _ if t.is_empty() => return None,
            Some(f) if f != t => return None,
            _ => found = Some(t),
        }
    }
    Some(found.unwrap_or(DEFAULT))
}

/// A batch id that carries its tenant, so that a tenant reads only its own batches with nothing
/// stored beside it: `b-<hash>` for the default tenant (as batch ids always were), `t-<id>-<hash>`
/// for another, `m-<hash>` for a batch across several (only a caller who reaches every tenant reads
/// it).
pub fn batch_id(tenant: Option<&str>, hash: &str) -> BatchId {
    BatchId::new(match tenant {
        Some(DEFAULT) => format!("b-{hash}"),
        Some(t) => format!("t-{t}-{hash}"),
        None => format!("m-{hash}"),
    })
}

impl BatchId {
    /// The tenant a batch belongs to ([`batch_id`]); `None` for one across tenants.
    pub fn tenant(&self) -> Option<&str> {
        let id = self.as_str();
        if id.starts_with("b-") {
            return Some(DEFAULT);
        }
        let (tenant, _) = id.strip_prefix("t-")?.rsplit_once('-')?;
        valid_id(tenant).then_some(tenant)
    }
}

/// Whose documents a request may touch, from its credentials: every tenant's (an operator: the
/// server's one API key, an IAM principal on AWS, a keys file's key with `"tenant": "*"`, or a
/// server without authentication), or one tenant's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    All,
    Tenant(String),
}

impl Reach {
    /// The tenant, for the audit log: `*` for every tenant.
    pub fn name(&self) -> &str {
        match self {
            Reach::All => "*",
            Reach::Tenant(t) => t,
        }
    }

    /// Whether a document with this key is visible.
    pub fn sees(&self, key: &DocumentKey) -> bool {
        match self {
            Reach::All => true,
            Reach::Tenant(t) => key.tenant() == t,
        }
    }

    /// Whether this batch is visible.
    pub fn sees_batch(&self, batch: &BatchId) -> bool {
        match self {
            Reach::All => true,
            Reach::Tenant(t) => batch.tenant() == Some(t.as_str()),
        }
    }

    /// Whether a batch over `prefix` stays inside this reach.
    pub fn covers_prefix(&self, prefix: &str) -> bool {
        match self {
            Reach::All => true,
            Reach::Tenant(t) => prefix_within(prefix, t),
        }
    }

    /// `filter` narrowed to this reach: the tenant's condition ANDed with whatever the caller
    /// asked, so that no filter, however crafted, reaches past it.
    pub fn narrow(&self, filter: Option<Filter>) -> Option<Filter> {
        let Reach::Tenant(t) = self else { return filter };
        let own = Filter::Field { field: crate::meta::TENANT.to_owned(), op: Op::Eq(Scalar::Str(t.clone())) };
        Some(match filter {
            None => own,
            Some(f) => Filter::And(vec![own, f]),
        })
    }

    /// Where a file added over the API with this name is put.
    pub fn upload_key(&self, name: &str) -> DocumentKey {
        match self {
            Reach::Tenant(t) if t != DEFAULT => DocumentKey::new(format!("{PREFIX}{t}/{name}")),
            _ => DocumentKey::new(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_belongs_to_the_tenant_its_path_names() {
        assert_eq!(of_key("tenants/acme/report.pdf"), "acme");
        assert_eq!(of_key("tenants/acme/deep/er/report.pdf"), "acme");
        assert_eq!(of_key("report.pdf"), DEFAULT);
        assert_eq!(of_key("docs/tenants/acme/x.txt"), DEFAULT, "only at the root");
        for unowned in ["tenants/", "tenants/x.txt", "tenants//x.txt", "tenants/a b/x.txt", "tenants/ü/x.txt"] {
            assert_eq!(of_key(unowned), "", "{unowned}");
        }
        assert_eq!(of_key(&format!("tenants/{}/x", "a".repeat(65))), "");
    }

    #[test]
    fn prefixes_stay_within_a_tenant_or_do_not() {
        assert!(prefix_within("tenants/acme/", "acme"));
        assert!(prefix_within("tenants/acme/2024/", "acme"));
        assert!(!prefix_within("tenants/acme", "acme"), "would reach tenants/acme-2/");
        assert!(!prefix_within("tenants/", "acme"));
        assert!(!prefix_within("", "acme"));
        assert!(prefix_within("docs/", DEFAULT));
        assert!(prefix_within("tenants/default/", DEFAULT));
        for reaching in ["", "t", "tenants", "tenants/", "tenants/acme/"] {
            assert!(!prefix_within(reaching, DEFAULT), "{reaching:?}");
        }
    }

    #[test]
    fn batch_ids_carry_their_tenant() {
        let one = common(["tenants/a/x.txt", "tenants/a/y.txt"]);
        assert_eq!(one, Some("a"));
        assert_eq!(common(["tenants/a/x.txt", "y.txt"]), None);
        assert_eq!(common(["tenants/a/x.txt", "tenants/bad id/y.txt"]), None);
        assert_eq!(common([]), Some(DEFAULT));
        for (tenant, id) in [(Some("a"), "t-a-0123"), (Some("my-org"), "t-my-org-0123"), (Some(DEFAULT), "b-0123")] {
            let b = batch_id(tenant, "0123");
            assert_eq!(b.as_str(), id);
            assert_eq!(b.tenant(), tenant);
        }
        assert_eq!(batch_id(None, "0123").tenant(), None);
        assert_eq!(BatchId::new("t-a b-0123").tenant(), None);
        let a = Reach::Tenant("a".into());
        assert!(a.sees_batch(&batch_id(Some("a"), "1")));
        assert!(!a.sees_batch(&batch_id(Some("my-a"), "1")));
        assert!(!a.sees_batch(&batch_id(None, "1")));
        assert!(Reach::All.sees_batch(&batch_id(None, "1")));
    }

    #[test]
    fn a_tenant_sees_its_own_documents_and_prefixes_only() {
        let key = |k: &str| DocumentKey::new(k);
        let a = Reach::Tenant("a".into());
        assert!(a.sees(&key("tenants/a/x.txt")));
        assert!(!a.sees(&key("tenants/ab/x.txt")), "a tenant whose name starts with another's");
        assert!(!a.sees(&key("x.txt")), "the default tenant's");
        assert!(!a.sees(&key("tenants/x.txt")), "no tenant's");
        let default = Reach::Tenant(DEFAULT.into());
        assert!(default.sees(&key("x.txt")) && !default.sees(&key("tenants/a/x.txt")));
        assert!(Reach::All.sees(&key("tenants/a/x.txt")) && Reach::All.sees(&key("x.txt")));
        assert!(a.covers_prefix("tenants/a/") && !a.covers_prefix("tenants/a") && !a.covers_prefix(""));
        assert!(Reach::All.covers_prefix(""));
        assert_eq!((a.name(), Reach::All.name()), ("a", "*"));
    }

    #[test]
    fn a_tenant_filter_cannot_be_widened() {
        let a = Reach::Tenant("a".into());
        let asked = Filter::parse(&serde_json::json!({"$or": [{"tenant": "b"}, {"format": "pdf"}]})).expect("parses");
        let f = a.narrow(Some(asked)).expect("a filter");
        let meta = |t: &str, format: &str| {
            [("tenant", t), ("format", format)].into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect()
        };
        assert!(!f.matches(&meta("b", "pdf")), "b's document through a crafted $or");
        assert!(f.matches(&meta("a", "pdf")));
        assert!(!f.matches(&meta("a", "txt")));
        assert!(a.narrow(None).is_some_and(|f| f.matches(&meta("a", "txt")) && !f.matches(&meta("b", "txt"))));
        assert_eq!(Reach::All.narrow(None), None);
        assert_eq!(a.upload_key("x.txt").as_str(), "tenants/a/x.txt");
        assert_eq!(Reach::Tenant(DEFAULT.into()).upload_key("x.txt").as_str(), "x.txt");
    }
}
