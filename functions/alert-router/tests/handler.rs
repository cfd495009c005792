//! The alert-router handler fed real SNS events of CloudWatch alarm notifications, with its ledger
//! in DynamoDB and email through SESv2 on moto, and local HTTP servers standing in for Slack and
//! PagerDuty: they check each request's wire format, and fail on demand (429 with Retry-After,
//! 503) to show that every notification still arrives once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sns::SnsEvent;
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use quarry_alert_router::Handler;
use quarry_alerts::{AlertRouter, Routes};
use quarry_aws::{Clients, DynamoState, SesMailer, provision};
use serde_json::{Value, json};

/// What a stand-in receiver accepted, and when.
#[derive(Debug, Default)]
struct Seen {
    slack: Vec<(Instant, String)>,
    pagerduty: Vec<Value>,
}

/// Slack and PagerDuty on one loopback port. `fail_every` > 0 fails one request in that many
/// (alternating 429 + `Retry-After: 0` and 503), before looking at it.
struct Receivers {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

async fn receivers(fail_every: u64) -> Receivers {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let calls = Arc::new(AtomicU64::new(0));
    let fail = move |calls: &AtomicU64| -> Option<(StatusCode, HeaderMap)> {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        if fail_every == 0 || !n.is_multiple_of(fail_every) {
            return None;
        }
        let mut h = HeaderMap::new();
        if n.is_multiple_of(2 * fail_every) {
            h.insert("retry-after", "0".parse().expect("header"));
            Some((StatusCode::TOO_MANY_REQUESTS, h))
        } else {
            Some((StatusCode::SERVICE_UNAVAILABLE, h))
        }
    };
    let (s1, c1, f1) = (Arc::clone(&seen), Arc::clone(&calls), fail);
    let (s2, c2) = (Arc::clone(&seen), Arc::clone(&calls));
    let app = axum::Router::new()
        .route(
            "/slack",
            axum::routing::post(move |headers: HeaderMap, body: String| async move {
                if let Some((status, h)) = f1(&c1) {
                    return (status, h, "rate_limited".to_owned());
                }
                assert_eq!(headers["content-type"], "application/json");
                let v: Value = serde_json::from_str(&body).expect("Slack gets JSON");
                let text = v["text"].as_str().expect("a text fallback").to_owned();
                assert_eq!(v["blocks"][0]["text"]["text"], text, "the section repeats the text");
                s1.lock().expect("lock").slack.push((Instant::now(), text));
                (StatusCode::OK, HeaderMap::new(), "ok".to_owned())
            }),
        )
        .route(
            "/v2/enqueue",
            axum::routing::post(move |body: String| async move {
                if let Some((status, h)) = fail(&c2) {
                    return (status, h, Json(json!({"status": "throttled"})));
                }
                let v: Value = serde_json::from_str(&body).expect("PagerDuty gets JSON");
                assert_eq!(v["routing_key"], "R0UTINGKEY0123456789abcdefabcdef");
                assert!(["trigger", "resolve"].contains(&v["event_action"].as_str().unwrap_or("")), "{v}");
                assert!(v["dedup_key"].as_str().is_some_and(|k| !k.is_empty() && k.len() <= 255));
                let p = &v["payload"];
                assert!(p["summary"].as_str().is_some_and(|s| !s.is_empty() && s.chars().count() <= 1024), "{v}");
                assert!(
                    p["source"].as_str().is_some()
                        && ["critical", "error", "warning", "info"].contains(&p["severity"].as_str().unwrap_or(""))
                );
                let key = v["dedup_key"].clone();
                s2.lock().expect("lock").pagerduty.push(v);
                (
                    StatusCode::ACCEPTED,
                    HeaderMap::new(),
                    Json(json!({"status": "success", "message": "Event processed", "dedup_key": key})),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receivers { url, seen }
}

type TheHandler = Handler<DynamoState, SesMailer>;

async fn handler(r: &Receivers, wait: f64, interval: f64) -> TheHandler {
    handler_on_stack(r, wait, interval).await.0
}

/// The handler, with the stack it runs on (the alarm topic, a queue subscribed to it).
async fn handler_on_stack(r: &Receivers, wait: f64, interval: f64) -> (TheHandler, Clients, provision::Created) {
    handler_repeating(r, wait, interval, 14_400.0).await
}

async fn handler_repeating(
    r: &Receivers,
    wait: f64,
    interval: f64,
    repeat: f64,
) -> (TheHandler, Clients, provision::Created) {
    let clients = Clients::emulator(quarry_testkit::moto::endpoint()).await;
    let created =
        provision::create(&clients, &quarry_testkit::moto::unique_name("alerts"), 8).await.expect("provision");
    let routes = Routes::from_json(&format!(
        r#"{{"group_wait_seconds": {wait}, "group_interval_seconds": {interval}, "repeat_interval_seconds": {repeat},
            "attempts": 4, "backoff_ms": 20,
            "receivers": {{"pager": {{"type": "pagerduty", "routing_key": "R0UTINGKEY0123456789abcdefabcdef", "url": "{u}/v2/enqueue"}},
                           "chat": {{"type": "slack", "webhook_url": "{u}/slack"}}}},
            "routes": [{{"alarm": "*-dlq", "severity": "critical", "receivers": ["pager", "chat"]}},
                       {{"receivers": ["chat"]}}]}}"#,
        u = r.url
    ))
    .expect("routes");
    let ledger = DynamoState::new(clients.dynamodb.clone(), &created.resources.table);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let mailer = Some(SesMailer::new(clients.sesv2.clone()));
    (Handler::new(AlertRouter::new(routes, ledger, mailer, http).expect("router")), clients, created)
}

/// CloudWatch's alarm notification, in the SNS envelope Lambda receives.
fn alarm_event(name: &str, state: &str, old: &str, at: &str, message_id: &str) -> SnsEvent {
    let message = json!({
        "AlarmName": name, "AlarmDescription": null, "AWSAccountId": "123456789012",
        "AlarmConfigurationUpdatedTimestamp": "2026-11-28T15:00:00.000+0000",
        "NewStateValue": state, "NewStateReason": format!("Threshold Crossed: 1 datapoint was {state}"),
        "StateChangeTime": at, "Region": "US East (N. Virginia)",
        "AlarmArn": format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"),
        "OldStateValue": old, "OKActions": ["arn:aws:sns:us-east-1:123456789012:quarry-prod-alarms"],
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:quarry-prod-alarms"], "InsufficientDataActions": [],
        "Trigger": {"MetricName": "ApproximateNumberOfMessagesVisible", "Namespace": "AWS/SQS", "StatisticType": "Statistic",
            "Statistic": "MAXIMUM", "Unit": null, "Dimensions": [{"value": "quarry-prod-jobs-dlq", "name": "QueueName"}],
            "Period": 60, "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold", "Threshold": 0.0,
            "TreatMissingData": "notBreaching", "EvaluateLowSampleCountPercentile": ""}
    });
    let event = json!({"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:quarry-prod-alarms:80289ba6-0fd4-4079-afb4-ce8c8260f0ca",
        "Sns": {"Type": "Notification", "MessageId": message_id,
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:quarry-prod-alarms",
            "Subject": format!("{state}: \"{name}\" in US East (N. Virginia)"),
            "Message": message.to_string(), "Timestamp": "2026-11-28T15:39:17.000Z", "SignatureVersion": "1",
            "Signature": "c2lnbmF0dXJl", "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/cert.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", "MessageAttributes": {}}}]});
    serde_json::from_value(event).expect("an SNS event")
}

/// What SNS delivered to the queue subscribed to the topic (its JSON envelope), as the SNS event
/// Lambda hands a subscribed function: the same message in a record.
async fn delivered(clients: &Clients, queue_url: &str, want: usize) -> Vec<SnsEvent> {
    let mut out = Vec::new();
    for _ in 0..20 {
        let got = clients
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in got.messages() {
            let mut sns: Value = serde_json::from_str(m.body().unwrap_or_default()).expect("an SNS envelope");
            assert_eq!(sns["Type"], "Notification");
            let o = sns.as_object_mut().expect("object");
            o.entry("SigningCertURL").or_insert(json!("https://sns.us-east-1.amazonaws.com/cert.pem"));
            o.entry("UnsubscribeURL").or_insert(json!("https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"));
            o.entry("SignatureVersion").or_insert(json!("1"));
            o.entry("Signature").or_insert(json!("c2lnbmF0dXJl"));
            o.entry("MessageAttributes").or_insert(json!({}));
            let event = json!({"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
                "EventSubscriptionArn": format!("{}:sub", sns["TopicArn"].as_str().unwrap_or_default()), "Sns": sns}]});
            out.push(serde_json::from_value(event).expect("an SNS event"));
        }
        if out.len() >= want {
            break;
        }
    }
    out
}

/// Lambda's retries of a failed invocation, as many as it takes (bounded).
async fn until_delivered(h: &TheHandler, event: &SnsEvent) {
    for _ in 0..20 {
        if h.handle(event.clone()).await.is_ok() {
            return;
        }
    }
    panic!("still failing after 20 invocations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flapping_alarm_triggers_and_resolves_one_incident_twice() {
    let r = receivers(0).await;
    let h = handler(&r, 0.2, 1.0).await;
    let name = "quarry-prod-jobs-dlq";
    let flaps = [("ALARM", "OK"), ("OK", "ALARM"), ("ALARM", "OK"), ("OK", "ALARM")];
    for (i, (state, old)) in flaps.iter().enumerate() {
        let at = format!("2026-11-28T15:4{i}:00.000+0000");
        h.handle(alarm_event(name, state, old, &at, &format!("m-{i}"))).await.expect("routed");
    }
    let seen = r.seen.lock().expect("lock");
    let actions: Vec<&str> = seen.pagerduty.iter().map(|v| v["event_action"].as_str().unwrap_or("")).collect();
    assert_eq!(actions, ["trigger", "resolve", "trigger", "resolve"]);
    let keys: std::collections::BTreeSet<&str> =
        seen.pagerduty.iter().filter_map(|v| v["dedup_key"].as_str()).collect();
    assert_eq!(keys.len(), 1, "one dedup_key for the alarm: {keys:?}");
    assert!(seen.pagerduty.iter().all(|v| v["payload"]["severity"] == "critical"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_delivered_three_times_is_sent_once() {
    let r = receivers(0).await;
    let h = Arc::new(handler(&r, 0.5, 1.0).await);
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(alarm_event(
            &format!("quarry-prod-dlq{i}-dlq"),
            "ALARM",
            "OK",
            "2026-11-28T16:00:00.000+0000",
            &format!("m{i}"),
        ));
    }
    // Three deliveries of each: two at once, one after the first has gone out.
    let mut tasks = Vec::new();
    for e in events.iter().chain(&events) {
        let (h, e) = (Arc::clone(&h), e.clone());
        tasks.push(tokio::spawn(async move { h.handle(e).await.expect("routed") }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for e in &events {
        h.handle(e.clone()).await.expect("routed again");
    }
    let seen = r.seen.lock().expect("lock");
    assert_eq!(seen.pagerduty.len(), 5, "{:?}", seen.pagerduty);
    let text: String = seen.slack.iter().map(|(_, t)| t.as_str()).collect();
    for i in 0..5 {
        assert_eq!(text.matches(&format!("`quarry-prod-dlq{i}-dlq`")).count(), 1, "{text}");
    }
}

/// The count of notifications a Slack message carries (`*N notifications*`, or one).
fn carried(text: &str) -> usize {
    text.strip_prefix('*').and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_alarms_in_ten_seconds_make_a_few_paced_slack_messages() {
    let r = receivers(0).await;
    let h = Arc::new(handler(&r, 1.0, 3.0).await);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for second in 0..10u64 {
        for i in 0..100u64 {
            let h = Arc::clone(&h);
            let n = second * 100 + i;
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(second * 1000 + i * 9)).await;
                let e = alarm_event(
                    &format!("quarry-prod-burst-{n}"),
                    "ALARM",
                    "OK",
                    "2026-11-28T17:00:00.000+0000",
                    &format!("b{n}"),
                );
                h.handle(e).await.expect("routed");
            }));
        }
    }
    for t in tasks {
        t.await.expect("task");
    }
    let seen = r.seen.lock().expect("lock");
    let messages = &seen.slack;
    assert!((1..=10).contains(&messages.len()), "{} messages", messages.len());
    assert_eq!(messages.iter().map(|(_, t)| carried(t)).sum::<usize>(), 1000, "every alarm, once");
    for pair in messages.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= Duration::from_millis(990), "at most one message a second");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receivers_failing_half_the_time_still_get_everything_exactly_once() {
    let r = receivers(2).await;
    let h = handler(&r, 0.2, 1.0).await;
    let mut events = Vec::new();
    for i in 0..12 {
        let state = if i % 3 == 2 { "OK" } else { "ALARM" };
        events.push(alarm_event(
            &format!("quarry-prod-q{i}-dlq"),
            state,
            "OK",
            "2026-11-28T18:00:00.000+0000",
            &format!("f{i}"),
        ));
    }
    for e in &events {
        until_delivered(&h, e).await;
    }
    let seen = r.seen.lock().expect("lock");
    assert_eq!(seen.pagerduty.len(), 12, "each event accepted once");
    let mut keys: Vec<&str> = seen.pagerduty.iter().filter_map(|v| v["dedup_key"].as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 12);
    let text: String = seen.slack.iter().map(|(_, t)| t.as_str()).collect();
    for i in 0..12 {
        assert_eq!(text.matches(&format!("`quarry-prod-q{i}-dlq`")).count(), 1, "q{i} once in Slack: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_sesv2() {
    let clients = Clients::emulator(quarry_testkit::moto::endpoint()).await;
    let created = provision::create(&clients, &quarry_testkit::moto::unique_name("mail"), 8).await.expect("provision");
    clients.sesv2.create_email_identity().email_identity("alerts@quarry.example").send().await.expect("verify sender");
    let to = format!("{}@quarry.example", quarry_testkit::moto::unique_name("oncall"));
    let routes = Routes::from_json(&format!(
        r#"{{"group_wait_seconds": 0.2, "group_interval_seconds": 1,
            "receivers": {{"mail": {{"type": "email", "from": "alerts@quarry.example", "to": ["{to}"]}}}},
            "routes": [{{"receivers": ["mail"]}}]}}"#
    ))
    .expect("routes");
    let ledger = DynamoState::new(clients.dynamodb.clone(), created.resources.table);
    let router = AlertRouter::new(routes, ledger, Some(SesMailer::new(clients.sesv2.clone())), reqwest::Client::new())
        .expect("router");
    let h = Handler::new(router);
    h.handle(alarm_event("quarry-prod-search-latency-p95", "ALARM", "OK", "2026-11-28T19:00:00.000+0000", "e1"))
        .await
        .expect("routed");
    let data: Value = reqwest::get(format!("{}/moto-api/data.json", quarry_testkit::moto::endpoint()))
        .await
        .expect("moto data")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).expect("json"))
        .expect("body");
    let sent: Vec<&Value> = data["ses"]["Message"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["destinations"]["ToAddresses"][0] == to.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(sent.len(), 1, "{data}");
    assert_eq!(sent[0]["subject"], "[ALARM] quarry-prod-search-latency-p95");
    assert!(sent[0]["body"].as_str().is_some_and(|b| b.contains("Threshold Crossed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_that_ends_with_failures_reaches_slack_once_through_sns() {
    use quarry_core::ports::BatchTracker;
    use quarry_core::{BatchId, DocumentKey, Failure};

    let r = receivers(0).await;
    let (h, clients, created) = handler_on_stack(&r, 0.2, 1.0).await;
    // A batch whose last two documents two workers finish at the same moment: both see its end.
    let state = quarry_testkit::fakes::MemoryState::default();
    let batch = BatchId::new("b-7f3a");
    let keys: Vec<(DocumentKey, u64)> = ["a.txt", "b.pdf", "c.md"].iter().map(|k| (DocumentKey::new(*k), 10)).collect();
    state.create(&batch, &keys).await.expect("batch");
    let failed = |code: &str| quarry_core::ports::BatchOutcome::Failed {
        failure: Failure { code: code.into(), message: "why".into(), retryable: false },
        bytes: 10,
    };
    state
        .record(&batch, &keys[0].0, &quarry_core::ports::BatchOutcome::Indexed { chunks: 1, bytes: 10 })
        .await
        .expect("r");
    state.record(&batch, &keys[1].0, &failed("encrypted_pdf")).await.expect("r");
    state.record(&batch, &keys[2].0, &failed("unsupported_format")).await.expect("r");
    let sns = quarry_aws::SnsEvents::new(clients.sns.clone(), created.resources.events_topic.clone());
    let (a, b) = tokio::join!(
        quarry_pipeline::report_end(&state, &sns, &batch),
        quarry_pipeline::report_end(&state, &sns, &batch)
    );
    assert!(a.expect("published") && b.expect("published"));

    let events = delivered(&clients, &created.topic_url, 2).await;
    assert_eq!(events.len(), 2, "both workers published");
    for e in &events {
        assert_eq!(e.records[0].sns.message_attributes["quarry_event"].value, "batch_failed");
        until_delivered(&h, e).await;
    }
    // SNS's redelivery of one of them, later.
    until_delivered(&h, &events[0]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = r.seen.lock().expect("lock");
    assert_eq!(seen.slack.len(), 1, "{:?}", seen.slack);
    let text = &seen.slack[0].1;
    assert_eq!(carried(text), 1, "one notification, not one per publication: {text}");
    assert_eq!(text.matches("batch_failed").count(), 1, "{text}");
    assert!(text.contains("2 of 3 documents failed"), "{text}");
    assert!(!text.contains("b.pdf"), "no document keys in alerts: {text}");
    assert!(seen.pagerduty.is_empty(), "the catch-all route is chat only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alarm_still_firing_is_repeated_until_it_resolves() {
    let r = receivers(0).await;
    // A repeat interval that the early steps below stay well inside even on a loaded machine (at
    // 3 s, one CI run on two busy cores took longer than that to route one alarm).
    let (h, _, _) = handler_repeating(&r, 0.2, 1.0, 6.0).await;
    let h = Arc::new(h);
    let tick: quarry_alert_router::Input = serde_json::from_value(json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-28T20:05:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/quarry-prod-remind"], "detail": {}}))
    .expect("a scheduled event");
    assert!(matches!(tick, quarry_alert_router::Input::Scheduled(_)));
    let sns: quarry_alert_router::Input =
        serde_json::from_value(serde_json::to_value(alarm_event("x", "ALARM", "OK", "t", "m")).expect("json"))
            .expect("an SNS event");
    assert!(matches!(sns, quarry_alert_router::Input::Sns(_)));

    let started = Instant::now();
    h.handle(alarm_event("quarry-prod-stuck", "ALARM", "OK", "2026-11-28T20:00:00.000+0000", "s1"))
        .await
        .expect("routed");
    let early_tick = Instant::now();
    h.invoke(tick.clone()).await.expect("tick");
    let text = |seen: &Seen| seen.slack.iter().map(|(_, t)| t.clone()).collect::<String>();
    // Too early for a reminder, if the machine let the steps above finish inside the repeat
    // interval: a CI run on two loaded cores once took longer (the reminder then sent is left out
    // of the count below, which starts after it).
    if started.elapsed() < Duration::from_secs(5) {
        assert!(!text(&r.seen.lock().expect("lock")).contains("still firing"), "too early for a reminder");
    }
    h.handle(alarm_event("quarry-prod-brief", "ALARM", "OK", "2026-11-28T20:00:00.000+0000", "b1"))
        .await
        .expect("routed");
    h.handle(alarm_event("quarry-prod-brief", "OK", "ALARM", "2026-11-28T20:00:30.000+0000", "b2"))
        .await
        .expect("routed");
    let before = r.seen.lock().expect("lock").slack.len();

    // Past two repeat intervals, two ticks at once: the second reminder, once; nothing for the
    // resolved alarm.
    // (Or a repeat interval and a second after the early tick, where that tick came late enough to
    // send a reminder itself.)
    let until = (started + Duration::from_millis(13_000)).max(early_tick + Duration::from_millis(7_000));
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    let (a, b) = tokio::join!(h.invoke(tick.clone()), h.invoke(tick.clone()));
    a.expect("tick");
    b.expect("tick");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = r.seen.lock().expect("lock");
    let reminders: String = seen.slack[before..].iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(reminders.matches("still firing").count(), 1, "{reminders}");
    assert!(reminders.contains("`quarry-prod-stuck`") && !reminders.contains("quarry-prod-brief"), "{reminders}");
}

/// The real bootstrap, as Lambda runs it: its routes (with their secrets), SDK clients and ledger
/// from the environment the template sets, on moto; one alarm through the Runtime API reaches Slack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_routes_an_alarm_from_its_environment() {
    let r = receivers(0).await;
    let endpoint = quarry_testkit::moto::endpoint();
    let name = quarry_testkit::moto::unique_name("alerts-bin");
    let mut env = provision::emulated(endpoint, &name, 8, &[]).await.expect("a deployment on moto");
    env.push((
        "QUARRY_ALERT_ROUTES",
        format!(
            r#"{{"group_wait_seconds": 0, "receivers": {{"chat": {{"type": "slack", "webhook_url": "{}/slack"}}}},
                 "routes": [{{"receivers": ["chat"]}}]}}"#,
            r.url
        ),
    ));
    let alarm = alarm_event("quarry-prod-jobs-dlq", "ALARM", "OK", "2026-11-28T17:00:00.000+0000", "m-bin");
    let event = serde_json::to_value(alarm).expect("JSON");
    let run = tokio::task::spawn_blocking(move || {
        quarry_testkit::runtime::invoke(env!("CARGO_BIN_EXE_alert-router"), &env, vec![event], Duration::from_secs(60))
    })
    .await
    .expect("the function ran");
    assert!(matches!(run.answers.as_slice(), [(_, true, _)]), "{:?}\n{}", run.answers, run.stderr);
    let seen = r.seen.lock().expect("lock");
    let texts: Vec<&str> = seen.slack.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("quarry-prod-jobs-dlq"), "{texts:?}");
}
