//! The fake's files and vector stores: `POST/DELETE /v1/files`, `GET/POST /v1/vector_stores`,
//! file batches (in progress for `Faults::processing_polls` looks, then done; a file whose text
//! holds `UNSUPPORTED` fails as OpenAI fails a file it cannot parse), and search (a chunk per
//! file, scored by the share of the query's words it holds, filtered on attributes with OpenAI's
//! comparison and compound filters). Every route passes the same gate as embeddings: latency,
//! the key, transient failures, cut bodies.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Map, Value, json};

use super::{Counts, Faults, gate};

#[derive(Debug)]
struct Attachment {
    attributes: Map<String, Value>,
    failed: Option<(&'static str, &'static str)>,
}

#[derive(Debug)]
struct Store {
    name: String,
    created_at: i64,
    files: BTreeMap<String, Attachment>,
}

#[derive(Debug)]
struct Batch {
    store: String,
    files: Vec<String>,
    polls_left: u32,
    cancelled: bool,
}

#[derive(Debug, Default)]
pub(super) struct World {
    next: u64,
    /// id → (filename, text)
    files: HashMap<String, (String, String)>,
    stores: BTreeMap<String, Store>,
    batches: HashMap<String, Batch>,
}

impl World {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{:06}", self.next)
    }
}

#[derive(Clone)]
struct Ctx {
    counts: Arc<Counts>,
    faults: Faults,
    world: Arc<Mutex<World>>,
}

fn world(ctx: &Ctx) -> std::sync::MutexGuard<'_, World> {
    ctx.world.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn not_found(what: &str) -> Response {
    let error = json!({"error": {"message": format!("No such {what}"), "type": "invalid_request_error", "code": null}});
    (StatusCode::NOT_FOUND, Json(error)).into_response()
}

fn bad_request(message: &str) -> Response {
    let error = json!({"error": {"message": message, "type": "invalid_request_error", "code": null}});
    (StatusCode::BAD_REQUEST, Json(error)).into_response()
}

/// What the fake holds, as a test inspects it: every file not deleted.
pub(super) fn files(world: &Mutex<World>) -> Vec<super::StoredFile> {
    let w = world.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out: Vec<_> = w
        .files
        .iter()
        .map(|(id, (name, text))| {
            let attributes = w.stores.values().find_map(|s| s.files.get(id)).map(|a| a.attributes.clone());
            super::StoredFile { name: name.clone(), text: text.clone(), attributes }
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.text).cmp(&(&b.name, &b.text)));
    out
}

pub(super) fn routes(counts: Arc<Counts>, faults: Faults, world: Arc<Mutex<World>>) -> axum::Router {
    let ctx = Ctx { counts, faults, world };
    axum::Router::new()
        .route("/v1/files", post(upload))
        .route("/v1/files/{id}", delete(delete_file))
        .route("/v1/vector_stores", get(list_stores).post(create_store))
        .route("/v1/vector_stores/{id}", get(get_store).delete(delete_store))
        .route("/v1/vector_stores/{id}/file_batches", post(create_batch))
        .route("/v1/vector_stores/{id}/file_batches/{batch}", get(get_batch))
        .route("/v1/vector_stores/{id}/file_batches/{batch}/cancel", post(cancel_batch))
        .route("/v1/vector_stores/{id}/file_batches/{batch}/files", get(batch_files))
        .route("/v1/vector_stores/{id}/search", post(search))
        .with_state(ctx)
}

fn store_json(id: &str, s: &Store, files: &HashMap<String, (String, String)>) -> Value {
    let bytes: usize = s.files.keys().filter_map(|f| files.get(f)).map(|(_, t)| t.len()).sum();
    json!({"id": id, "object": "vector_store", "name": s.name, "created_at": s.created_at, "status": "completed",
           "usage_bytes": bytes, "file_counts": {"total": s.files.len()}})
}

async fn upload(State(ctx): State<Ctx>, headers: HeaderMap, mut form: Multipart) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    let (mut file, mut purpose) = (None, None);
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("purpose") => purpose = field.text().await.ok(),
            Some("file") => {
                let name = field.file_name().unwrap_or("upload").to_owned();
                file = field.text().await.ok().map(|t| (name, t));
            }
            _ => {}
        }
    }
    let (Some((name, text)), Some("assistants")) = (file, purpose.as_deref()) else {
        return bad_request("a file and purpose=assistants are required");
    };
    let mut w = world(&ctx);
    let id = w.id("file-");
    let bytes = text.len();
    w.files.insert(id.clone(), (name.clone(), text));
    Json(
        json!({"id": id, "object": "file", "bytes": bytes, "created_at": 0, "filename": name, "purpose": "assistants"}),
    )
    .into_response()
}

async fn delete_file(State(ctx): State<Ctx>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    let mut w = world(&ctx);
    if w.files.remove(&id).is_none() {
        return not_found("file");
    }
    for s in w.stores.values_mut() {
        s.files.remove(&id);
    }
    Json(json!({"id": id, "object": "file", "deleted": true})).into_response()
}

async fn list_stores(State(ctx): State<Ctx>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    let w = world(&ctx);
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    let after = q.get("after");
    let all: Vec<(&String, &Store)> = w.stores.iter().filter(|(id, _)| after.is_none_or(|a| *id > a)).collect();
    let page: Vec<Value> = all.iter().take(limit).map(|(id, s)| store_json(id, s, &w.files)).collect();
    let last = page.last().map(|s| s["id"].clone());
    Json(json!({"object": "list", "data": page, "has_more": all.len() > limit, "last_id": last})).into_response()
}

async fn create_store(State(ctx): State<Ctx>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    let mut w = world(&ctx);
    let id = w.id("vs_");
    let created_at = w.next as i64;
    let store = Store { name: body["name"].as_str().unwrap_or("").to_owned(), created_at, files: BTreeMap::new() };
    let out = store_json(&id, &store, &w.files);
    w.stores.insert(id, store);
    Json(out).into_response()
}

async fn get_store(State(ctx): State<Ctx>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    let w = world(&ctx);
    match w.stores.get(&id) {
        Some(s) => Json(store_json(&id, s, &w.files)).into_response(),
        None => not_found("vector store"),
    }
}

async fn delete_store(State(ctx): State<Ctx>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    match world(&ctx).stores.remove(&id) {
        Some(_) => Json(json!({"id": id, "object": "vector_store.deleted", "deleted": true})).into_response(),
        None => not_found("vector store"),
    }
}

fn batch_json(id: &str, b: &Batch) -> Value {
    let status = if b.cancelled {
        "cancelled"
    } else if b.polls_left > 0 {
        "in_progress"
    } else {
        "completed"
    };
    json!({"id": id, "object": "vector_store.files_batch", "vector_store_id": b.store, "status": status,
           "file_counts": {"total": b.files.len()}})
}

async fn create_batch(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path(store): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    let mut w = world(&ctx);
    if !w.stores.contains_key(&store) {
        return not_found("vector store");
    }
    let Some(files) = body["files"].as_array() else { return bad_request("files is required") };
    let mut ids = Vec::new();
    for f in files {
        let (Some(id), attributes) = (f["file_id"].as_str(), f["attributes"].as_object().cloned().unwrap_or_default())
        else {
            return bad_request("every file needs a file_id");
        };
        if attributes.len() > 16 || attributes.keys().any(|k| k.chars().count() > 64) {
            return bad_request("attributes: at most 16 keys of at most 64 characters");
        }
        let Some((_, text)) = w.files.get(id) else { return not_found("file") };
        let failed = text.contains("UNSUPPORTED").then_some(("unsupported_file", "The file type is not supported."));
        if let Some(s) = w.stores.get_mut(&store) {
            s.files.insert(id.to_owned(), Attachment { attributes, failed });
        }
        ids.push(id.to_owned());
    }
    let id = w.id("vsfb_");
    let batch = Batch { store, files: ids, polls_left: ctx.faults.processing_polls, cancelled: false };
    let out = batch_json(&id, &batch);
    w.batches.insert(id, batch);
    Json(out).into_response()
}

async fn get_batch(State(ctx): State<Ctx>, headers: HeaderMap, Path((_, batch)): Path<(String, String)>) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    let mut w = world(&ctx);
    let Some(b) = w.batches.get_mut(&batch) else { return not_found("file batch") };
    let out = batch_json(&batch, b);
    b.polls_left = b.polls_left.saturating_sub(1);
    ([("openai-poll-after-ms", "10")], Json(out)).into_response()
}

async fn cancel_batch(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path((_, batch)): Path<(String, String)>,
) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    let mut w = world(&ctx);
    let Some(b) = w.batches.get_mut(&batch) else { return not_found("file batch") };
    // As OpenAI's does: processing stops, and the files stay attached until someone deletes them.
    b.cancelled = true;
    Json(batch_json(&batch, b)).into_response()
}

async fn batch_files(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path((store, batch)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    let w = world(&ctx);
    let (Some(b), Some(s)) = (w.batches.get(&batch), w.stores.get(&store)) else { return not_found("file batch") };
    let wanted = q.get("filter").map(String::as_str);
    let data: Vec<Value> = b
        .files
        .iter()
        .filter_map(|f| {
            let (status, error) = match (b.cancelled, s.files.get(f).and_then(|a| a.failed)) {
                (true, _) => ("cancelled", Value::Null),
                (false, Some((code, message))) => ("failed", json!({"code": code, "message": message})),
                (false, None) => ("completed", Value::Null),
            };
            (wanted.is_none_or(|w| w == status))
                .then(|| json!({"id": f, "object": "vector_store.file", "status": status, "last_error": error}))
        })
        .collect();
    let last = data.last().map(|f| f["id"].clone());
    Json(json!({"object": "list", "data": data, "has_more": false, "last_id": last})).into_response()
}

/// OpenAI's comparison and compound filters over a file's attributes.
fn matches(filter: &Value, attributes: &Map<String, Value>) -> Result<bool, String> {
    let kind = filter["type"].as_str().ok_or("a filter needs a type")?;
    if let Some(parts) = filter["filters"].as_array() {
        let results = parts.iter().map(|p| matches(p, attributes)).collect::<Result<Vec<_>, _>>()?;
        return match kind {
            "and" => Ok(results.iter().all(|r| *r)),
            "or" => Ok(results.iter().any(|r| *r)),
            _ => Err(format!("unknown compound filter type {kind}")),
        };
    }
    let key = filter["key"].as_str().ok_or("a comparison needs a key")?;
    let (have, want) = (attributes.get(key), &filter["value"]);
    let num = |v: Option<&Value>| v.and_then(Value::as_f64);
    Ok(match kind {
        "eq" => have == Some(want),
        "ne" => have != Some(want),
        "gt" | "gte" | "lt" | "lte" => match (num(have), want.as_f64()) {
            (Some(h), Some(w)) => match kind {
                "gt" => h > w,
                "gte" => h >= w,
                "lt" => h < w,
                _ => h <= w,
            },
            _ => false,
        },
        "in" | "nin" => {
            let list = want.as_array().ok_or("in and nin take a list")?;
            let found = have.is_some_and(|h| list.contains(h));
            if kind == "in" { found } else { !found }
        }
        other => return Err(format!("unknown comparison filter type {other}")),
    })
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

async fn search(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path(store): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = gate(&ctx.counts, &ctx.faults, &headers).await {
        return r;
    }
    let w = world(&ctx);
    let Some(s) = w.stores.get(&store) else { return not_found("vector store") };
    let Some(query) = body["query"].as_str() else { return bad_request("query is required") };
    let max = body["max_num_results"].as_u64().unwrap_or(10);
    if !(1..=50).contains(&max) {
        return bad_request("max_num_results must be between 1 and 50");
    }
    let asked = words(query);
    let mut hits = Vec::new();
    for (id, a) in s.files.iter().filter(|(_, a)| a.failed.is_none()) {
        if let Some(f) = body.get("filters") {
            match matches(f, &a.attributes) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => return bad_request(&e),
            }
        }
        let Some((name, text)) = w.files.get(id) else { continue };
        let have = words(text);
        let score = asked.iter().filter(|q| have.contains(q)).count() as f64 / asked.len().max(1) as f64;
        if score > 0.0 {
            hits.push(json!({"file_id": id, "filename": name, "score": score, "attributes": a.attributes,
                             "content": [{"type": "text", "text": text}]}));
        }
    }
    hits.sort_by(|a, b| b["score"].as_f64().partial_cmp(&a["score"].as_f64()).unwrap_or(std::cmp::Ordering::Equal));
    hits.truncate(max as usize);
    Json(json!({"object": "vector_store.search_results.page", "search_query": [query], "data": hits,
                "has_more": false, "next_page": null}))
    .into_response()
}
