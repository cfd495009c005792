//! A recorder that keeps the last few minutes of every metric in fixed intervals: the data of
//! `/metrics.json` (series a custom dashboard can plot without a Prometheus server) and of the
//! local alert rules (an error rate, a p95 over the last five minutes).
//!
//! Hand-written over `metrics-util`'s registry and DDSketch summaries because neither exporter
//! keeps history: Prometheus text is cumulative (the server does the windowing), and the
//! debugging recorder drains on read. Counters are cumulative atomics; at each tick their deltas
//! and the histogram values recorded since the last tick close one interval.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use metrics_util::storage::Summary;
use quarry_core::metric;
use serde_json::{Value, json};

/// One closed interval.
#[derive(Debug)]
struct Slot {
    /// When the interval ended, in milliseconds since the epoch.
    end_ms: u64,
    counters: HashMap<Key, u64>,
    gauges: HashMap<Key, f64>,
    histograms: HashMap<Key, Summary>,
}

#[derive(Debug, Default)]
struct History {
    slots: VecDeque<Slot>,
    /// Each counter's value at the last tick, to take deltas from.
    seen: HashMap<Key, u64>,
}

/// The windowed recorder; share it as an `Arc` between the facade (through [`WindowRecorder`])
/// and its readers.
#[derive(Debug)]
pub struct Window {
    registry: Registry<Key, AtomicStorage>,
    history: Mutex<History>,
    interval: Duration,
    keep: usize,
}

/// Labels a reader matches on: every pair must be on the series (others may be too).
pub type Labels<'a> = &'a [(&'a str, &'a str)];

fn matches(key: &Key, labels: Labels<'_>) -> bool {
    labels.iter().all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Window {
    /// Keeps `keep` intervals of `interval` each: `window()` long.
    pub fn new(interval: Duration, keep: usize) -> Self {
        Window { registry: Registry::atomic(), history: Mutex::default(), interval, keep: keep.max(1) }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn window(&self) -> Duration {
        self.interval * self.keep as u32
    }

    /// Closes the current interval. A ticker calls it every `interval` ([`Window::spawn_ticker`]);
    /// tests call it directly.
    pub fn tick(&self) {
        let mut h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = self.collect(&mut h, true);
        h.slots.push_back(slot);
        while h.slots.len() > self.keep {
            h.slots.pop_front();
        }
    }

    /// The interval since the last tick: closed (`close`: counters move on, histograms are
    /// drained) or looked at as it stands, for readers that want the last seconds too.
    fn collect(&self, h: &mut History, close: bool) -> Slot {
        let mut slot =
            Slot { end_ms: now_ms(), counters: HashMap::new(), gauges: HashMap::new(), histograms: HashMap::new() };
        let mut current = Vec::new();
        self.registry.visit_counters(|key, c| current.push((key.clone(), c.load(Ordering::Relaxed))));
        for (key, value) in current {
            let before = if close { h.seen.insert(key.clone(), value) } else { h.seen.get(&key).copied() };
            slot.counters.insert(key, value.saturating_sub(before.unwrap_or(0)));
        }
        self.registry.visit_gauges(|key, g| {
            slot.gauges.insert(key.clone(), f64::from_bits(g.load(Ordering::Relaxed)));
        });
        self.registry.visit_histograms(|key, bucket| {
            let mut summary = Summary::with_defaults();
            if close {
                bucket.clear_with(|values| values.iter().for_each(|&v| summary.add(v)));
            } else {
                bucket.data_with(|values| values.iter().for_each(|&v| summary.add(v)));
            }
            slot.histograms.insert(key.clone(), summary);
        });
        slot
    }

    /// The closed intervals of the window and the open one, oldest first: what every reader
    /// reads, so that a value shows up as soon as it is recorded.
    fn with_live<T>(&self, read: impl FnOnce(&History, &[&Slot]) -> T) -> T {
        let mut h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let live = self.collect(&mut h, false);
        // The open interval replaces the oldest closed one: the window stays `keep` long.
        let skip = usize::from(h.slots.len() >= self.keep);
        let slots: Vec<&Slot> = h.slots.iter().skip(skip).chain(std::iter::once(&live)).collect();
        read(&h, &slots)
    }

    /// Ticks every `interval` on the current runtime, for as long as the window lives; `also`
    /// runs after each tick (the Prometheus exporter's upkeep, the alert rules).
    pub fn spawn_ticker(self: &Arc<Self>, also: impl Fn(&Window) + Send + 'static) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let interval = self.interval;
        tokio::spawn(async move {
            let mut clock = tokio::time::interval(interval);
            clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            clock.tick().await;
            loop {
                clock.tick().await;
                let Some(window) = weak.upgrade() else { return };
                window.tick();
                also(&window);
            }
        })
    }

    /// The sum over the window of the counter `name` on every series carrying `labels`.
    pub fn sum(&self, name: &str, labels: Labels<'_>) -> u64 {
        self.with_live(|_, slots| {
            slots
                .iter()
                .flat_map(|s| s.counters.iter())
                .filter(|(k, _)| k.name() == name && matches(k, labels))
                .map(|(_, v)| v)
                .sum()
        })
    }

    /// The histogram `name` over the window, on every series carrying `labels`, merged.
    fn merged(&self, name: &str, labels: Labels<'_>) -> Summary {
        self.with_live(|_, slots| {
            let mut all = Summary::with_defaults();
            let series = slots.iter().flat_map(|s| s.histograms.iter());
            for (_, s) in series.filter(|(k, _)| k.name() == name && matches(k, labels)) {
                // Summaries made with the same parameters always merge.
                let _ = all.merge(s);
            }
            all
        })
    }

    /// The `q` quantile (0 to 1) of the histogram `name` over the window, if it has values.
    pub fn quantile(&self, name: &str, labels: Labels<'_>, q: f64) -> Option<f64> {
        self.merged(name, labels).quantile(q)
    }

    /// How many values the histogram `name` received over the window.
    pub fn count(&self, name: &str, labels: Labels<'_>) -> usize {
        self.merged(name, labels).count()
    }

    /// Every series as JSON: a counter's total, its sum and rate over the window and one value per
    /// interval; a histogram's count and percentiles over the window and per interval.
    pub fn snapshot(&self) -> Value {
        self.with_live(|h, slots| self.render(h, slots))
    }

    fn render(&self, h: &History, slots: &[&Slot]) -> Value {
        let window_s = self.window().as_secs_f64();
        let mut keys: Vec<(Key, &'static str)> = Vec::new();
        for s in slots {
            keys.extend(s.counters.keys().map(|k| (k.clone(), "counter")));
            keys.extend(s.gauges.keys().map(|k| (k.clone(), "gauge")));
            keys.extend(s.histograms.keys().map(|k| (k.clone(), "histogram")));
        }
        keys.sort_by(|a, b| {
            (a.0.name(), a.1, a.0.labels().map(|l| l.value()).collect::<Vec<_>>()).cmp(&(
                b.0.name(),
                b.1,
                b.0.labels().map(|l| l.value()).collect::<Vec<_>>(),
            ))
        });
        keys.dedup();
        let series: Vec<Value> = keys
            .into_iter()
            .map(|(key, kind)| {
                let labels: serde_json::Map<String, Value> =
                    key.labels().map(|l| (l.key().to_owned(), Value::from(l.value()))).collect();
                let unit = metric::find(key.name()).map(|d| d.unit.cloudwatch());
                let mut v = json!({"name": key.name(), "kind": kind, "unit": unit, "labels": labels});
                match kind {
                    "counter" => {
                        let per: Vec<u64> = slots.iter().map(|s| s.counters.get(&key).copied().unwrap_or(0)).collect();
                        let sum: u64 = per.iter().sum();
                        let live = per.last().copied().unwrap_or(0);
                        v["total"] = (h.seen.get(&key).copied().unwrap_or(0) + live).into();
                        v["window"] = sum.into();
                        v["rate_per_second"] = (sum as f64 / window_s).into();
                        v["series"] = per.into();
                    }
                    "gauge" => {
                        let per: Vec<Option<f64>> = slots.iter().map(|s| s.gauges.get(&key).copied()).collect();
                        v["value"] = per.iter().rev().flatten().next().copied().into();
                        v["series"] = per.into();
                    }
                    _ => {
                        let mut all = Summary::with_defaults();
                        let per: Vec<Value> = slots
                            .iter()
                            .map(|s| match s.histograms.get(&key) {
                                Some(x) => {
                                    let _ = all.merge(x);
                                    json!({"count": x.count(), "p50": x.quantile(0.5), "p95": x.quantile(0.95), "p99": x.quantile(0.99)})
                                }
                                None => json!({"count": 0}),
                            })
                            .collect();
                        v["window"] = json!({
                            "count": all.count(), "sum": all.sum(),
                            "p50": all.quantile(0.5), "p95": all.quantile(0.95), "p99": all.quantile(0.99),
                            "max": (!all.is_empty()).then(|| all.max()),
                        });
                        v["series"] = per.into();
                    }
                }
                v
            })
            .collect();
        let ends: Vec<u64> = slots.iter().map(|s| s.end_ms).collect();
        json!({
            "interval_seconds": self.interval.as_secs_f64(),
            "window_seconds": window_s,
            // The last interval is the open one, ending now.
            "interval_ends_ms": ends,
            "metrics": series,
        })
    }
}

/// The facade's side of a [`Window`].
#[derive(Debug, Clone)]
pub struct WindowRecorder(pub Arc<Window>);

impl Recorder for WindowRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0.registry.get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0.registry.get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0.registry.get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_rates_and_percentiles() {
        let window = Arc::new(Window::new(Duration::from_secs(10), 3));
        let recorder = WindowRecorder(Arc::clone(&window));
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("documents", "outcome" => "indexed").increment(5);
            metrics::counter!("documents", "outcome" => "failed").increment(1);
            for ms in 1..=100 {
                metrics::histogram!("search_latency", "mode" => "hybrid").record(f64::from(ms));
            }
        });
        window.tick();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("documents", "outcome" => "indexed").increment(3);
        });
        window.tick();
        assert_eq!(window.sum("documents", &[]), 9);
        assert_eq!(window.sum("documents", &[("outcome", "failed")]), 1);
        assert_eq!(window.count("search_latency", &[("mode", "hybrid")]), 100);
        let p95 = window.quantile("search_latency", &[], 0.95).expect("values");
        assert!((93.0..=97.0).contains(&p95), "p95 {p95}");
        assert_eq!(window.quantile("search_latency", &[("mode", "keyword")], 0.95), None);

        let snap = window.snapshot();
        let indexed = snap["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|s| s["name"] == "documents" && s["labels"]["outcome"] == "indexed"))
            .expect("series")
            .clone();
        assert_eq!(indexed["series"], json!([5, 3, 0]), "two closed intervals and the open one");
        assert_eq!((indexed["total"].as_u64(), indexed["window"].as_u64()), (Some(8), Some(8)));
        assert_eq!(indexed["unit"], "Count");

        // What is recorded shows at once, in the open interval.
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("search_latency", "mode" => "hybrid").record(1.0);
        });
        assert_eq!(window.count("search_latency", &[]), 101);
        // Two more ticks push the first intervals out of a three-interval window.
        window.tick();
        window.tick();
        assert_eq!(window.sum("documents", &[]), 0);
        assert_eq!(window.count("search_latency", &[]), 1, "the value of the third interval is still in");
        let snap = window.snapshot();
        let failed = snap["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|s| s["name"] == "documents" && s["labels"]["outcome"] == "failed"))
            .expect("series")
            .clone();
        assert_eq!(failed["total"], 1, "totals are cumulative: {failed}");
    }
}
