//! A batch of mixed formats (text, Markdown, HTML, CSV, JSON, DOCX, PDF, and one file in eight
//! broken) for the fault tests, and what they compare: every chunk of an index.

use std::collections::BTreeMap;
use std::path::Path;

use quarry_local::SqliteStore;

/// `n` documents of mixed formats under `dir`, in five folders.
pub fn corpus(dir: &Path, n: usize) {
    let topics = ["vitamin D and bone health", "fiber and cholesterol", "omega-3 from fish", "salt and blood pressure"];
    for i in 0..n {
        let topic = topics[i % topics.len()];
        let para = |p: usize| {
            let study = i * 7 + p;
            format!(
                "Part {p} of document {i} weighs the evidence on {topic}, study {study}. The trial enrolled \
                 {} adults and followed them for {} months. Its authors report the effect with caution, \
                 since the cohort was small and the measures self-reported.",
                40 + study % 300,
                6 + study % 30
            )
        };
        let paras: Vec<String> = (0..(4 + i % 9)).map(para).collect();
        let folder = format!("set-{}", i % 5);
        std::fs::create_dir_all(dir.join(&folder)).expect("mkdir");
        let (name, bytes): (String, Vec<u8>) = match i % 8 {
            0 => (format!("{i}.txt"), paras.join("\n\n").into_bytes()),
            1 => (format!("{i}.md"), format!("# Document {i}\n\n{}", paras.join("\n\n")).into_bytes()),
            2 => {
                let body: String = paras.iter().map(|p| format!("<p>{p}</p>")).collect();
                (
                    format!("{i}.html"),
                    format!("<html><head><title>Doc {i}</title></head><body>{body}</body></html>").into_bytes(),
                )
            }
            3 => {
                let rows: String = paras.iter().enumerate().map(|(r, p)| format!("{r},\"{p}\"\n")).collect();
                (format!("{i}.csv"), format!("row,finding\n{rows}").into_bytes())
            }
            4 => (
                format!("{i}.json"),
                serde_json::json!({"title": format!("Doc {i}"), "parts": paras}).to_string().into_bytes(),
            ),
            5 => {
                (format!("{i}.docx"), quarry_testkit::docx(&paras.iter().map(String::as_str).collect::<Vec<_>>(), None))
            }
            6 => {
                let pages: Vec<quarry_testkit::PdfPage> =
                    paras.chunks(3).map(|c| quarry_testkit::PdfPage::Text(c.to_vec())).collect();
                (format!("{i}.pdf"), quarry_testkit::pdf(&pages, None))
            }
            // One in eight broken: a truncated PDF, a DOCX that is not a zip.
            _ if i % 16 == 7 => (format!("{i}.pdf"), b"%PDF-1.7 cut short".to_vec()),
            _ => (format!("{i}.docx"), b"PK\x03\x04 not really a zip".to_vec()),
        };
        std::fs::write(dir.join(folder).join(name), bytes).expect("write");
    }
}

/// Every chunk of the index in `state` (a `.quarry` folder), by chunk id: (document key, text,
/// vector).
pub fn index(state: &Path) -> BTreeMap<String, (String, String, Vec<f32>)> {
    let store = SqliteStore::open(&state.join("state.db"), 384).expect("open state");
    let records = store.records().expect("records");
    let n = records.len();
    let by_id: BTreeMap<_, _> = records
        .into_iter()
        .map(|r| (r.id.as_str().to_owned(), (r.meta.key.as_str().to_owned(), r.text, r.vector)))
        .collect();
    assert_eq!(by_id.len(), n, "a chunk id twice");
    by_id
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The batch's counts from what `quarry batches` printed, without the batch id (which follows from
/// the files' versions, and so differs between two folders of the same files).
pub fn batch_counts(listed: &str) -> String {
    let line = listed.lines().find(|l| l.contains(" documents: ")).unwrap_or_else(|| panic!("{listed}"));
    let (head, tail) = line.split_once(" documents: ").unwrap_or_default();
    format!("{} documents: {tail}", head.split_whitespace().last().unwrap_or_default())
}
