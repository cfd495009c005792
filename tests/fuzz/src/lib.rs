//! A fuzz harness that runs on the stable toolchain (`cargo fuzz` needs nightly, which a new
//! machine may not have): every extractor (through the `Preparer`, as indexing calls it), the
//! filter parser, the cursor decoder, the S3 event decoder and the JSONL reader, fed inputs of
//! three kinds:
//!
//! - **mutated seeds**: the repository's sample files and real event fixtures, with bits flipped,
//!   bytes inserted, ranges deleted, duplicated or truncated, dictionary tokens spliced in;
//! - **built by `arbitrary`** from random bytes: JSON trees over each format's vocabulary
//!   (filters' operators, S3 records' fields, JSONL records), text of markup tokens, and real DOCX
//!   and PDF files around arbitrary paragraphs, so that the parsers behind the container are
//!   reached, which flipped bytes in a zip or a PDF's xref rarely do;
//! - **splices** of two seeds.
//!
//! Each input runs under `catch_unwind`; a panic is a crash, kept with its input. Coverage-guided
//! fuzzing would find deeper paths; this harness finds what a user's odd file or a crafted request
//! finds, on every CI run, without a nightly compiler. `scripts/fuzz.sh` runs it long.

mod inputs;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
pub use inputs::mutate;
use inputs::{EVENT_NAMES, FilterAst, Json, S3Record, TOKENS};
use quarry_api::CursorKey;
use quarry_core::{Config, Filter};
use quarry_testkit::XorShift;
use quarry_text::{Preparer, WordPiece};
use serde_json::Value;

/// What is fuzzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Txt,
    Md,
    Html,
    Pdf,
    Docx,
    Csv,
    Json,
    Filter,
    Cursor,
    S3Event,
    Jsonl,
}

impl Target {
    pub const ALL: [Target; 11] = [
        Target::Txt,
        Target::Md,
        Target::Html,
        Target::Pdf,
        Target::Docx,
        Target::Csv,
        Target::Json,
        Target::Filter,
        Target::Cursor,
        Target::S3Event,
        Target::Jsonl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Txt => "extract-txt",
            Target::Md => "extract-md",
            Target::Html => "extract-html",
            Target::Pdf => "extract-pdf",
            Target::Docx => "extract-docx",
            Target::Csv => "extract-csv",
            Target::Json => "extract-json",
            Target::Filter => "filter",
            Target::Cursor => "cursor",
            Target::S3Event => "s3-event",
            Target::Jsonl => "jsonl",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The file name an extractor target is prepared under (its format comes from it).
    fn file_name(self) -> Option<&'static str> {
        match self {
            Target::Txt => Some("fuzz.txt"),
            Target::Md => Some("fuzz.md"),
            Target::Html => Some("fuzz.html"),
            Target::Pdf => Some("fuzz.pdf"),
            Target::Docx => Some("fuzz.docx"),
            Target::Csv => Some("fuzz.csv"),
            Target::Json => Some("fuzz.json"),
            _ => None,
        }
    }
}

/// One run's figures for a target.
#[derive(Debug, Clone)]
pub struct Stats {
    pub target: Target,
    pub execs: u64,
    /// Inputs the target accepted (parsed, or extracted to chunks): the share that reached past
    /// the first check.
    pub accepted: u64,
    pub elapsed: Duration,
    pub slowest: Duration,
    pub slowest_input: Vec<u8>,
    /// Inputs that panicked, with the panic's message.
    pub crashes: Vec<(Vec<u8>, String)>,
}

/// The harness: the preparer indexing uses, a cursor key, and the seeds.
#[allow(missing_debug_implementations)]
pub struct Harness {
    preparer: Preparer<WordPiece>,
    key: CursorKey,
    /// The fingerprint every fuzzed cursor is opened against (that of the sealed seeds).
    fingerprint: [u8; 16],
    seeds: BTreeMap<Target, Vec<Vec<u8>>>,
}

impl Harness {
    /// Loads the model's tokenizer (the chunker counts with it) and the seeds from `repo`.
    pub fn new(repo: &Path) -> anyhow::Result<Harness> {
        let tokenizer = WordPiece::from_file(&quarry_testkit::model_dir().join("tokenizer.json"))?;
        let preparer = Preparer::new(&Config::default(), tokenizer);
        let key = CursorKey::from_bytes([42; 32]);
        let fingerprint = quarry_api::cursor::fingerprint("fuzz", 10, "");
        let mut seeds: BTreeMap<Target, Vec<Vec<u8>>> = BTreeMap::new();
        let samples = repo.join("samples");
        for entry in std::fs::read_dir(&samples)? {
            let path = entry?.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
            let target =
                Target::ALL.into_iter().find(|t| t.file_name().is_some_and(|n| n.ends_with(&format!(".{ext}"))));
            if let Some(t) = target {
                seeds.entry(t).or_default().push(std::fs::read(&path)?);
            }
        }
        let events = repo.join("tests/fixtures/events/sqs-s3-object-created.json");
        let sqs: Value = serde_json::from_slice(&std::fs::read(events)?)?;
        let bodies = sqs["Records"].as_array().into_iter().flatten().filter_map(|r| r["body"].as_str());
        seeds.entry(Target::S3Event).or_default().extend(bodies.map(|b| b.as_bytes().to_vec()));
        seeds.entry(Target::Filter).or_default().extend([
            br#"{"format": "pdf"}"#.to_vec(),
            br#"{"$and": [{"user.year": {"$gte": 2020}}, {"$or": [{"key": {"$startsWith": "a/"}}, {"title": {"$in": ["x", "y"]}}]}]}"#.to_vec(),
            br#"{"$not": {"user.team": {"$exists": true}}, "user.n": {"$lt": 1.5, "$ne": null}}"#.to_vec(),
        ]);
        let sealed = [0usize, 10, 99, 100_000].map(|offset| key.seal(offset, offset as u64 * 7, &fingerprint));
        seeds.entry(Target::Cursor).or_default().extend(sealed.map(String::into_bytes));
        seeds.entry(Target::Jsonl).or_default().push(
            b"{\"_id\": \"a\", \"text\": \"Calcium keeps bones strong.\", \"metadata\": {\"year\": 2020}}\n\
              {\"_id\": \"b\", \"title\": \"T\", \"text\": \"x\"}\n{\"text\": \"no id\"}\nnot json\n"
                .to_vec(),
        );
        Ok(Harness { preparer, key, fingerprint, seeds })
    }

    /// Runs one input through `target`: whether the target accepted it. Refusals are fine; only a
    /// panic is a failure.
    pub fn exec(&self, target: Target, data: &[u8]) -> bool {
        match target {
            Target::Filter => {
                let Ok(v) = serde_json::from_slice::<Value>(data) else { return false };
                let Ok(f) = Filter::parse(&v) else { return false };
                let meta = quarry_core::meta::ChunkMeta::new(
                    quarry_core::DocumentKey::new("a/b.pdf"),
                    quarry_core::Format::Pdf,
                );
                std::hint::black_box(f.matches(&meta.to_metadata()));
                true
            }
            Target::Cursor => self.key.open(&String::from_utf8_lossy(data), &self.fingerprint).is_ok(),
            Target::S3Event => quarry_lambda::s3_changes(&String::from_utf8_lossy(data)).is_ok_and(|c| !c.is_empty()),
            Target::Jsonl => !quarry_local::JsonlSource::from_bytes(Path::new("fuzz.jsonl"), data).0.is_empty(),
            extractor => self.preparer.prepare(extractor.file_name(), data).is_ok(),
        }
    }

    /// The next input for `target`.
    fn input(&self, target: Target, rng: &mut XorShift) -> Vec<u8> {
        let seeds = self.seeds.get(&target).map_or(&[][..], Vec::as_slice);
        let pick =
            |rng: &mut XorShift| seeds.get(rng.next() as usize % seeds.len().max(1)).cloned().unwrap_or_default();
        match rng.next() % 8 {
            0..=3 if !seeds.is_empty() => mutate(pick(rng), rng),
            4 if !seeds.is_empty() => {
                let (a, b) = (pick(rng), pick(rng));
                let (i, j) = (rng.next() as usize % (a.len() + 1), rng.next() as usize % (b.len() + 1));
                mutate([&a[..i], &b[j..]].concat(), rng)
            }
            _ => self.built(target, rng),
        }
    }

    /// An input built by `arbitrary` from random bytes, in the target's own shape.
    fn built(&self, target: Target, rng: &mut XorShift) -> Vec<u8> {
        let len = 16 + rng.next() as usize % 2048;
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let mut u = Unstructured::new(&raw);
        let json = || Json::arbitrary(&mut Unstructured::new(&raw)).map(|j| j.value()).unwrap_or(Value::Null);
        match target {
            Target::Filter if !rng.next().is_multiple_of(4) => {
                FilterAst::arbitrary(&mut u).map(|f| f.value()).unwrap_or(Value::Null).to_string().into_bytes()
            }
            Target::S3Event if !rng.next().is_multiple_of(4) => {
                let records: Vec<S3Record> = Arbitrary::arbitrary(&mut u).unwrap_or_default();
                let records: Vec<Value> = records
                    .into_iter()
                    .map(|r| {
                        // Keys arrive URL-encoded: '+' for a space, %XX for the rest.
                        let key: String = r.key.chars().map(|c| if c == ' ' { '+' } else { c }).collect();
                        serde_json::json!({"eventName": EVENT_NAMES[usize::from(r.event) % EVENT_NAMES.len()],
                            "s3": {"bucket": {"name": r.bucket}, "object": {"key": key, "size": r.size, "eTag": r.etag}}})
                    })
                    .collect();
                serde_json::json!({ "Records": records }).to_string().into_bytes()
            }
            Target::Filter | Target::S3Event | Target::Json => json().to_string().into_bytes(),
            Target::Jsonl => {
                let lines: Vec<(Json, String)> = Arbitrary::arbitrary(&mut u).unwrap_or_default();
                let mut out = Vec::new();
                for (meta, text) in lines {
                    let line = serde_json::json!({"_id": text.chars().take(8).collect::<String>(), "text": text, "metadata": meta.value()});
                    out.extend(line.to_string().into_bytes());
                    out.push(b'\n');
                }
                out
            }
            Target::Cursor if rng.next().is_multiple_of(2) => {
                // Sealed by this key, with any offset and snapshot: what a client sends back.
                let (offset, snapshot): (usize, u64) = Arbitrary::arbitrary(&mut u).unwrap_or_default();
                self.key.seal(offset, snapshot, &self.fingerprint).into_bytes()
            }
            Target::Cursor => {
                let s: String = Arbitrary::arbitrary(&mut u).unwrap_or_default();
                s.into_bytes()
            }
            Target::Docx => {
                let paragraphs: Vec<String> = Arbitrary::arbitrary(&mut u).unwrap_or_default();
                let refs: Vec<&str> = paragraphs.iter().map(String::as_str).collect();
                let title: Option<String> = Arbitrary::arbitrary(&mut u).unwrap_or_default();
                quarry_testkit::docx(&refs, title.as_deref())
            }
            Target::Pdf => {
                let pages: Vec<Option<Vec<String>>> = Arbitrary::arbitrary(&mut u).unwrap_or_default();
                let pages: Vec<quarry_testkit::PdfPage> = pages
                    .into_iter()
                    .map(|p| p.map_or(quarry_testkit::PdfPage::Image, quarry_testkit::PdfPage::Text))
                    .collect();
                quarry_testkit::pdf(&pages, None)
            }
            Target::Txt | Target::Md | Target::Html | Target::Csv => {
                let parts: Vec<(u8, String)> = Arbitrary::arbitrary(&mut u).unwrap_or_default();
                let mut out = Vec::new();
                for (t, s) in parts {
                    out.extend_from_slice(TOKENS[usize::from(t) % TOKENS.len()]);
                    out.extend_from_slice(s.as_bytes());
                }
                out
            }
        }
    }

    /// `runs` inputs through `target` from `seed`; every panic kept with its input.
    pub fn run(&self, target: Target, runs: u64, seed: u64) -> Stats {
        let mut rng = XorShift::new(seed.max(1));
        let mut stats = Stats {
            target,
            execs: 0,
            accepted: 0,
            elapsed: Duration::ZERO,
            slowest: Duration::ZERO,
            slowest_input: Vec::new(),
            crashes: Vec::new(),
        };
        let started = Instant::now();
        let watch = Watchdog::start(target);
        for _ in 0..runs {
            let data = self.input(target, &mut rng);
            watch.began(&data);
            let t = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| self.exec(target, &data)));
            let took = t.elapsed();
            watch.ended();
            stats.execs += 1;
            stats.accepted += u64::from(matches!(outcome, Ok(true)));
            if took > stats.slowest {
                stats.slowest = took;
                stats.slowest_input.clone_from(&data);
            }
            if let Err(panic) = outcome {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                stats.crashes.push((data, message));
            }
        }
        stats.elapsed = started.elapsed();
        stats
    }
}

/// Writes an input that has run for over [`HANG`] to `target/fuzz-crashes/<target>-hang` (and
/// says so on stderr) while it still runs, so that a hang is kept even if the run is killed.
/// The input running now, and since when.
type Running = std::sync::Arc<std::sync::Mutex<Option<(Instant, Vec<u8>)>>>;

struct Watchdog {
    current: Running,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

const HANG: Duration = Duration::from_secs(10);

impl Watchdog {
    fn start(target: Target) -> Watchdog {
        let current: Running = std::sync::Arc::default();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (slot, done) = (current.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reported = false;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let hung = slot
                    .lock()
                    .ok()
                    .and_then(|c| c.as_ref().filter(|(t, _)| t.elapsed() > HANG).map(|(_, d)| d.clone()));
                match hung {
                    Some(data) if !reported => {
                        let dir = std::path::PathBuf::from("target/fuzz-crashes");
                        let path = dir.join(format!("{}-hang", target.name()));
                        let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &data));
                        #[allow(clippy::print_stderr)]
                        {
                            eprintln!(
                                "{}: an input has run for over {HANG:?}: {} ({saved:?})",
                                target.name(),
                                path.display()
                            );
                        }
                        reported = true;
                    }
                    None => reported = false,
                    Some(_) => {}
                }
            }
        });
        Watchdog { current, stop }
    }

    fn began(&self, data: &[u8]) {
        if let Ok(mut c) = self.current.lock() {
            *c = Some((Instant::now(), data.to_vec()));
        }
    }

    fn ended(&self) {
        if let Ok(mut c) = self.current.lock() {
            *c = None;
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The peak resident memory of this process so far, in bytes (Linux), for the run's report.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}
