//! AWS Lambda's Runtime API on loopback, as `cargo lambda watch` plays it: a function's real
//! binary is started against it, polls for events, answers them, and its stdout (JSON logs and
//! EMF) is captured, as CloudWatch Logs would capture it.

use std::collections::VecDeque;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;

#[derive(Debug, Default)]
struct Shared {
    events: VecDeque<(String, Value)>,
    /// Request id, `response` or `error`, body.
    answers: Vec<(String, String, String)>,
}

/// What a run of invocations left behind.
#[derive(Debug)]
pub struct Run {
    /// Per invocation, in order: whether it succeeded, and the response or error body.
    pub answers: Vec<(String, bool, String)>,
    pub stdout: String,
    pub stderr: String,
}

/// An SQS event of `bodies` as Lambda's poller hands it over, each message sent 1.5 s earlier.
pub fn sqs_event(bodies: &[Value]) -> Value {
    let sent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .saturating_sub(1_500);
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            serde_json::json!({"messageId": format!("m-{i}"), "receiptHandle": "r", "body": body.to_string(),
                   "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": sent.to_string(),
                                  "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": sent.to_string()},
                   "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                   "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:quarry-test-jobs", "awsRegion": "us-east-1"})
        })
        .collect();
    serde_json::json!({"Records": records})
}

/// Starts `bin` with `env` (on top of the Lambda variables the runtime needs), hands it `events`
/// one by one, and stops it once each is answered or `timeout` passes.
pub fn invoke(bin: &str, env: &[(&str, String)], events: Vec<Value>, timeout: Duration) -> Run {
    let shared = Arc::new(Mutex::new(Shared {
        events: events.into_iter().enumerate().map(|(i, e)| (format!("req-{i}"), e)).collect(),
        ..Shared::default()
    }));
    let total = shared.lock().map(|s| s.events.len()).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(answer_ok))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(answer_err))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(Arc::clone(&shared));
    rt.spawn(async move { axum::serve(listener, app).await });

    let mut cmd = Command::new(bin);
    cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "quarry-test")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/quarry-test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the function");
    // Read as it is written: a function that logs more than a pipe holds would otherwise block.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|e| Box::new(e) as Box<dyn Read + Send>));
    let started = Instant::now();
    while shared.lock().map(|s| s.answers.len()).unwrap_or(0) < total && started.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the function exited ({status}) before answering every event");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The flush follows the answer: give it a moment, then take the Runtime API away, as Lambda
    // does when it retires an environment. The runtime's next poll fails and the process exits
    // through its own `main` (so an instrumented build writes its coverage); killed if it has not.
    std::thread::sleep(Duration::from_millis(300));
    rt.shutdown_timeout(Duration::from_secs(1));
    let _ = crate::http::exited_within(&mut child, Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let answers = shared.lock().map(|s| s.answers.clone()).unwrap_or_default();
    assert_eq!(answers.len(), total, "not every event was answered in {timeout:?}; stderr: {stderr}");
    Run {
        answers: answers.into_iter().map(|(id, kind, body)| (id, kind == "response", body)).collect(),
        stdout,
        stderr,
    }
}

async fn next(State(shared): State<Arc<Mutex<Shared>>>) -> (StatusCode, HeaderMap, String) {
    loop {
        let event = shared.lock().ok().and_then(|mut s| s.events.pop_front());
        if let Some((id, event)) = event {
            let mut h = HeaderMap::new();
            let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
                + Duration::from_secs(300);
            let value = |s: String| HeaderValue::from_str(&s).expect("header");
            h.insert("lambda-runtime-aws-request-id", value(id));
            h.insert("lambda-runtime-deadline-ms", value(deadline.as_millis().to_string()));
            h.insert(
                "lambda-runtime-invoked-function-arn",
                value("arn:aws:lambda:us-east-1:123456789012:function:quarry-test".into()),
            );
            h.insert(
                "lambda-runtime-trace-id",
                value("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=1;Sampled=0".into()),
            );
            return (StatusCode::OK, h, event.to_string());
        }
        // Nothing left: hold the poll open, as Lambda does between invocations.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn init_error(State(shared): State<Arc<Mutex<Shared>>>, body: String) -> StatusCode {
    if let Ok(mut s) = shared.lock() {
        // Nothing more will be answered: fail every event, with the reason.
        let pending: Vec<String> = s.events.drain(..).map(|(id, _)| id).collect();
        for id in pending {
            s.answers.push((id, "init_error".into(), body.clone()));
        }
    }
    StatusCode::ACCEPTED
}

async fn answer_ok(State(shared): State<Arc<Mutex<Shared>>>, Path(id): Path<String>, body: String) -> StatusCode {
    if let Ok(mut s) = shared.lock() {
        s.answers.push((id, "response".into(), body));
    }
    StatusCode::ACCEPTED
}

async fn answer_err(State(shared): State<Arc<Mutex<Shared>>>, Path(id): Path<String>, body: String) -> StatusCode {
    if let Ok(mut s) = shared.lock() {
        s.answers.push((id, "error".into(), body));
    }
    StatusCode::ACCEPTED
}

/// Every EMF blob a run printed, each checked against the specification ([`crate::emf::validate`]).
pub fn emf_blobs(run: &Run) -> Vec<Value> {
    let blobs: Vec<Value> = run.stdout.lines().filter_map(crate::emf::is_emf).collect();
    for b in &blobs {
        if let Err(e) = crate::emf::validate(b) {
            panic!("an EMF blob breaks the specification ({e}): {b}");
        }
    }
    blobs
}

/// The blobs' values of metric `name` (a number, or each number of an array), across blobs.
pub fn values(blobs: &[Value], name: &str) -> Vec<f64> {
    blobs
        .iter()
        .filter_map(|b| b.get(name))
        .flat_map(|v| match v {
            Value::Array(a) => a.iter().filter_map(Value::as_f64).collect::<Vec<_>>(),
            v => v.as_f64().into_iter().collect(),
        })
        .collect()
}
