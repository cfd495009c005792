//! A receiver that will not take a message: each way a webhook fails, over a real socket, and
//! what the router is told (refused for good, or still failing after every attempt, retryable),
//! so that a page is put back for the next try rather than lost or retried forever.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quarry_alerts::receivers::post;
use quarry_alerts::{DeliveryError, Retry};
use quarry_core::{Classify, ErrorClass};
use serde_json::json;

/// A webhook on loopback answering every request with `status` and `headers`: its URL, and the
/// count of requests it has read.
fn webhook(status: &'static str, headers: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            counted.fetch_add(1, Ordering::SeqCst);
            let reply = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, seen)
}

fn retry(attempts: u32) -> Retry {
    Retry { attempts, backoff: Duration::from_millis(10) }
}

async fn send(url: &str, attempts: u32) -> Result<(), DeliveryError> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    // Bounded: a receiver must never hold the router for longer than its attempts take.
    tokio::time::timeout(Duration::from_secs(30), post(&http, "slack", url, &json!({"text": "x"}), retry(attempts)))
        .await
        .expect("the attempts end")
}

#[tokio::test]
async fn a_receiver_that_refuses_is_refused_for_good_after_one_request() {
    let (url, seen) = webhook("400 Bad Request", "");
    let e = send(&url, 4).await.expect_err("refused");
    assert!(matches!(e, DeliveryError::Refused { receiver: "slack", status: 400 }), "{e:?}");
    assert_eq!((e.class(), e.code()), (ErrorClass::Permanent, "receiver_refused"));
    assert_eq!(seen.load(Ordering::SeqCst), 1, "a refusal is not retried");
}

#[tokio::test]
async fn a_receiver_failing_every_attempt_is_retryable_with_its_last_status() {
    let (url, seen) = webhook("503 Service Unavailable", "");
    let e = send(&url, 3).await.expect_err("exhausted");
    assert!(matches!(e, DeliveryError::Exhausted { attempts: 3, status: Some(503), .. }), "{e:?}");
    assert_eq!((e.class(), e.code()), (ErrorClass::Retryable, "receiver_unavailable"));
    assert_eq!(seen.load(Ordering::SeqCst), 3, "every attempt made");
    assert!(e.to_string().contains("after 3 attempts"), "{e}");
}

#[tokio::test]
async fn a_retry_after_past_the_longest_wait_hands_the_message_back_at_once() {
    let (url, seen) = webhook("429 Too Many Requests", "Retry-After: 3600\r\n");
    let e = send(&url, 4).await.expect_err("handed back");
    assert!(matches!(e, DeliveryError::Exhausted { status: Some(429), .. }), "{e:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "no hour-long wait inside an invocation");
}

#[tokio::test]
async fn an_unreachable_receiver_keeps_the_connection_error_as_its_source() {
    let url = {
        let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/hook", closed.local_addr().expect("addr"))
    };
    let e = send(&url, 2).await.expect_err("unreachable");
    assert!(matches!(e, DeliveryError::Exhausted { status: None, source: Some(_), .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert!(std::error::Error::source(&e).is_some(), "the chain is kept");
}

#[tokio::test]
async fn a_retry_after_within_reach_is_waited_then_the_message_goes() {
    // Fails once with `Retry-After: 0`, then takes it.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let reply = if i == 0 {
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    send(&url, 3).await.expect("delivered on the second attempt");
}
