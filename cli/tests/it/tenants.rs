//! Tenants on `quarry serve`: two tenants' documents (`tenants/acme/`, `tenants/globex/`) and the
//! default tenant's in one folder, and a keys file with a key for each and an operator's. Through
//! every route, with crafted filters, ids, cursors and batch ids, a tenant's key never sees,
//! counts, changes or deletes another tenant's documents or batches; the operator sees them all.

use crate::common;
use std::time::{Duration, Instant};

use quarry_core::{DocumentId, DocumentKey};
use quarry_testkit::http::{Reply, Server};
use serde_json::{Value, json};

const ACME: &str = "acme's key, 16+ characters";
const GLOBEX: &str = "globex's key, 16+ characters";
const PLAIN: &str = "a default-tenant key, 16+ chars";
const OPS: &str = "the operator's key, 16+ chars";

const FILES: [(&str, &str); 5] = [
    ("tenants/acme/plan.txt", "Acme launch plan: the rocket sled ships in March from the desert site."),
    ("tenants/acme/notes.md", "# Sled notes\n\nThe rocket sled brakes need new pads before launch."),
    ("tenants/globex/plan.txt", "Globex launch plan: the rocket sled ships in April from the coast."),
    ("tenants/globex/secret.txt", "Globex rocket sled budget: forty million for the launch."),
    ("manual.txt", "The rocket sled manual: launch checklist for every crew."),
];

struct Tenants {
    server: Server,
}

impl Tenants {
    fn call(&self, key: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        let bearer = format!("Bearer {key}");
        let body = body.map(|b| b.to_string());
        self.server.exchange(method, path, body.as_deref(), &[("Authorization", bearer.as_str())])
    }

    /// Every result's key, for `key`'s search.
    fn keys(&self, key: &str, search: Value) -> Vec<String> {
        let r = self.call(key, "POST", "/v1/search", Some(search.clone()));
        assert_eq!(r.status, 200, "{search}: {:?}", r.body);
        r.body["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|h| h["metadata"]["key"].as_str().expect("key").to_owned())
            .collect()
    }
}

fn id_of(key: &str) -> String {
    DocumentId::for_key(&DocumentKey::new(key)).as_str().to_owned()
}

fn code(r: &Reply) -> (u16, &str) {
    (r.status, r.body["error"]["code"].as_str().unwrap_or(""))
}

#[test]
fn a_tenant_never_reaches_another_tenants_documents_through_any_route() {
    let dir = common::scratch("tenants", "folder");
    for (key, text) in FILES {
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    let keys = common::scratch("tenants", "keys").join("keys.json");
    let all = ["search", "read", "write", "admin"];
    let entry = |id: &str, key: &str, tenant: Option<&str>| {
        let mut e = json!({"id": id, "sha256": common::sha256(key), "scopes": all});
        if let Some(t) = tenant {
            e["tenant"] = json!(t);
        }
        e
    };
    let file = json!({"keys": [
        entry("acme", ACME, Some("acme")),
        entry("globex", GLOBEX, Some("globex")),
        entry("plain", PLAIN, None),
        entry("ops", OPS, Some("*")),
    ]});
    std::fs::write(&keys, file.to_string()).expect("write keys");
    let t = Tenants {
        server: Server::start(
            env!("CARGO_BIN_EXE_quarry"),
            &["--watch", dir.to_str().expect("utf-8"), "--bind", "127.0.0.1:0", "--poll", "0.2"],
            &[("QUARRY_KEYS_FILE", keys.to_str().expect("utf-8"))],
        ),
    };
    let started = Instant::now();
    let everything = json!({"query": "rocket sled launch", "mode": "keyword", "top_k": 20});
    while t.call(OPS, "POST", "/v1/search", Some(everything.clone())).body["results"].as_array().map_or(0, Vec::len)
        < FILES.len()
    {
        assert!(started.elapsed() < Duration::from_secs(120), "never indexed");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Search, in every mode: each tenant its own, the default tenant the rest, the operator all.
    for mode in ["semantic", "keyword", "hybrid"] {
        let q = json!({"query": "rocket sled launch plan", "mode": mode, "top_k": 20});
        let own = |key: &str, prefix: &str, n: usize| {
            let got = t.keys(key, q.clone());
            assert_eq!(got.len(), n, "{mode} {prefix}: {got:?}");
            assert!(got.iter().all(|k| k.starts_with(prefix)), "{mode} {prefix}: {got:?}");
        };
        own(ACME, "tenants/acme/", 2);
        own(GLOBEX, "tenants/globex/", 2);
        own(PLAIN, "manual", 1);
        own(OPS, "", FILES.len());
    }

    // Crafted filters only narrow what the tenant already reaches.
    let q = |filter: Value| json!({"query": "rocket sled launch", "mode": "hybrid", "top_k": 20, "filter": filter});
    for filter in [
        json!({"tenant": "globex"}),
        json!({"key": "tenants/globex/secret.txt"}),
        json!({"key": {"$startsWith": "tenants/globex/"}}),
        json!({"tenant": {"$ne": "acme"}}),
        json!({"$or": [{"tenant": "globex"}, {"key": {"$exists": true}}], "format": {"$exists": true}}),
    ] {
        let got = t.keys(ACME, q(filter.clone()));
        assert!(got.iter().all(|k| k.starts_with("tenants/acme/")), "{filter}: {got:?}");
    }
    assert!(t.keys(ACME, q(json!({"tenant": "globex"}))).is_empty());
    assert_eq!(t.keys(OPS, q(json!({"tenant": "globex"}))).len(), 2, "the operator filters by tenant");

    // A cursor opens for its own tenant alone: the snapshot behind it is acme's ranking.
    let first = t.call(ACME, "POST", "/v1/search", Some(json!({"query": "rocket sled launch", "top_k": 1})));
    let cursor = first.body["next_cursor"].as_str().expect("a next page").to_owned();
    let stolen = t.call(
        GLOBEX,
        "POST",
        "/v1/search",
        Some(json!({"query": "rocket sled launch", "top_k": 1, "cursor": cursor})),
    );
    assert_eq!(code(&stolen), (400, "invalid_cursor"), "{:?}", stolen.body);
    let next = t.keys(ACME, json!({"query": "rocket sled launch", "top_k": 1, "cursor": cursor}));
    assert!(next.iter().all(|k| k.starts_with("tenants/acme/")) && next.len() == 1, "{next:?}");

    // Documents: another tenant's is not there, to read or to delete; its own is.
    let theirs = format!("/v1/documents/{}", id_of("tenants/globex/secret.txt"));
    assert_eq!(code(&t.call(ACME, "GET", &theirs, None)), (404, "document_not_found"));
    assert_eq!(code(&t.call(ACME, "DELETE", &theirs, None)), (404, "document_not_found"));
    assert_eq!(code(&t.call(PLAIN, "DELETE", &theirs, None)), (404, "document_not_found"));
    assert_eq!(t.call(GLOBEX, "GET", &theirs, None).status, 200, "still there for its tenant");
    let ours = format!("/v1/documents/{}", id_of("tenants/acme/notes.md"));
    assert_eq!(t.call(ACME, "GET", &ours, None).status, 200);
    assert_eq!(code(&t.call(GLOBEX, "GET", &ours, None)), (404, "document_not_found"));

    // Batches: only over the tenant's own keys; another tenant's batch is not there.
    for body in [
        json!({"prefix": "tenants/globex/"}),
        json!({"prefix": ""}),
        json!({"prefix": "tenants/"}),
        json!({"prefix": "tenants/acme"}),
        json!({"keys": ["tenants/acme/plan.txt", "tenants/globex/plan.txt"]}),
        json!({"prefix": "tenants/acme/", "keys": ["manual.txt"]}),
    ] {
        let r = t.call(ACME, "POST", "/v1/batches", Some(body.clone()));
        assert_eq!(code(&r), (403, "outside_tenant"), "{body}: {:?}", r.body);
    }
    assert_eq!(code(&t.call(PLAIN, "POST", "/v1/batches", Some(json!({"prefix": ""})))), (403, "outside_tenant"));
    let started = t.call(ACME, "POST", "/v1/batches", Some(json!({"prefix": "tenants/acme/"})));
    assert_eq!(started.status, 202, "{:?}", started.body);
    let batch = started.body["batch"].as_str().expect("batch id").to_owned();
    assert!(batch.starts_with("t-acme-"), "{batch}");
    let path = format!("/v1/batches/{batch}");
    assert_eq!(t.call(ACME, "GET", &path, None).status, 200);
    assert_eq!(t.call(OPS, "GET", &path, None).status, 200);
    assert_eq!(code(&t.call(GLOBEX, "GET", &path, None)), (404, "not_found"));
    assert_eq!(code(&t.call(PLAIN, "GET", &path, None)), (404, "not_found"));
    let retry = t.call(GLOBEX, "POST", &format!("{path}/retry"), Some(json!({})));
    assert_eq!(code(&retry), (404, "not_found"), "{:?}", retry.body);
    let listed = |key: &str| -> Vec<String> {
        let r = t.call(key, "GET", "/v1/batches?limit=100", None);
        r.body["batches"]
            .as_array()
            .expect("batches")
            .iter()
            .map(|b| b["batch_id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert!(listed(ACME).contains(&batch) && listed(OPS).contains(&batch));
    assert!(!listed(GLOBEX).contains(&batch) && !listed(PLAIN).contains(&batch));
    assert!(listed(GLOBEX).iter().all(|b| b.starts_with("t-globex-")), "{:?}", listed(GLOBEX));

    // Fields count the tenant's own documents alone.
    let formats = |key: &str| -> u64 {
        let r = t.call(key, "GET", "/v1/fields", None);
        let fields = r.body["fields"].as_array().expect("fields").clone();
        assert!(fields.iter().all(|f| f["name"] != "tenant"), "{fields:?}");
        fields.iter().find(|f| f["name"] == "format").map_or(0, |f| f["documents"].as_u64().expect("count"))
    };
    assert_eq!((formats(ACME), formats(GLOBEX), formats(PLAIN), formats(OPS)), (2, 2, 1, FILES.len() as u64));

    // A file added over the API lands in the tenant's folder, and only the tenant finds it.
    let put = t.server.exchange(
        "PUT",
        "/v1/files/memo.txt",
        Some("Acme memo: the rocket sled launch moves to May."),
        &[("Authorization", &format!("Bearer {ACME}")), ("Content-Type", "text/plain")],
    );
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(put.body["key"], json!("tenants/acme/memo.txt"));
    assert!(dir.join("tenants/acme/memo.txt").is_file());
    let memo = json!({"query": "memo May", "mode": "keyword", "top_k": 20});
    let started = Instant::now();
    while !t.keys(ACME, memo.clone()).contains(&"tenants/acme/memo.txt".to_owned()) {
        assert!(started.elapsed() < Duration::from_secs(60), "the upload was never indexed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!t.keys(GLOBEX, memo.clone()).iter().any(|k| k.contains("memo")));

    // The embedding cache is every tenant's: an operator's alone.
    assert_eq!(code(&t.call(ACME, "GET", "/v1/cache", None)), (403, "every_tenant_only"));
    assert_eq!(code(&t.call(ACME, "POST", "/v1/cache/clear", Some(json!({})))), (403, "every_tenant_only"));
    assert_eq!(t.call(OPS, "GET", "/v1/cache", None).status, 200);

    // The audit log says whose each request was.
    let audit: String = std::fs::read_dir(dir.join(".quarry/audit"))
        .expect("an audit log")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    let entries: Vec<Value> = audit.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let tenant_of = |who: &str| entries.iter().filter(|e| e["who"] == who).map(|e| e["tenant"].clone()).next();
    assert_eq!(tenant_of("key:acme"), Some(json!("acme")));
    assert_eq!(tenant_of("key:ops"), Some(json!("*")));
    assert_eq!(tenant_of("key:plain"), Some(json!("default")));
}
