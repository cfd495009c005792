//! Test helpers shared by every crate's tests: where the installed model is, and builders that
//! write real PDF and DOCX files (with lopdf and zip), so format tests run on the same bytes a
//! user's tools would produce rather than on hand-edited fixtures.
//!
//! A missing model is a failure, never a skip: the panic says which command installs it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::io::Write;
use std::path::PathBuf;

pub mod contract;
pub mod emf;
pub mod fakes;
pub mod http;
pub mod keywords;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod moto;
#[cfg(feature = "openai")]
pub mod openai;
pub mod pii;
#[cfg(feature = "lambda")]
pub mod runtime;

/// A seeded xorshift64 generator: repeatable test data and benchmarks without a dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// `seed` must not be 0 (xorshift stays at 0 forever).
    pub fn new(seed: u64) -> Self {
        assert!(seed != 0, "xorshift needs a non-zero seed");
        XorShift(seed)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    /// Standard normal (Box-Muller).
    pub fn gauss(&mut self) -> f32 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64 + 1e-12;
        let v = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// A program the setup script installed for the tests (`scripts/setup.sh --test-tools`): `name`
/// in the tools folder `tools` (`aws-tools`, `api-tools`) under the user's cache. Missing, the test
/// fails with the command that installs it: a missing tool is never a skip.
pub fn test_tool(tools: &str, name: &str) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    let path = cache.join("quarry").join(tools).join("bin").join(name);
    assert!(path.is_file(), "{} is missing: run `scripts/setup.sh --test-tools` first", path.display());
    path
}

/// The model folder the setup script fills, honouring `QUARRY_MODEL_DIR`.
pub fn model_dir() -> PathBuf {
    let dir = quarry_core::config::Model {
        dir: std::env::var_os("QUARRY_MODEL_DIR").map(PathBuf::from),
        ..Default::default()
    }
    .resolved_dir();
    assert!(
        dir.join("tokenizer.json").is_file() && dir.join("model.safetensors").is_file(),
        "the embedding model is not installed in {}: run `{}` first",
        dir.display(),
        quarry_core::config::Model::SETUP_COMMAND
    );
    dir
}

/// How a test PDF's pages are drawn.
#[derive(Debug, Clone)]
pub enum PdfPage {
    /// Lines of text in Helvetica.
    Text(Vec<String>),
    /// A filled rectangle and no text: what a scanned page looks like to a text extractor.
    Image,
}

fn escape_pdf(s: &str) -> Vec<u8> {
    // Helvetica with the standard encoding covers ASCII; tests keep to it.
    s.bytes().filter(u8::is_ascii).collect()
}

fn pdf_document(pages: &[PdfPage], title: Option<&str>) -> lopdf::Document {
    use lopdf::content::{Content, Operation};
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids = Vec::new();
    for page in pages {
        let ops = match page {
            PdfPage::Text(lines) => {
                let mut ops = vec![
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 11.into()]),
                    Operation::new("TL", vec![14.into()]),
                    Operation::new("Td", vec![50.into(), 780.into()]),
                ];
                for line in lines {
                    ops.push(Operation::new("Tj", vec![Object::string_literal(escape_pdf(line))]));
                    ops.push(Operation::new("T*", vec![]));
                }
                ops.push(Operation::new("ET", vec![]));
                ops
            }
            PdfPage::Image => vec![
                Operation::new("rg", vec![0.5.into(), 0.5.into(), 0.5.into()]),
                Operation::new("re", vec![50.into(), 50.into(), 400.into(), 600.into()]),
                Operation::new("f", vec![]),
            ],
        };
        let content = Content { operations: ops };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    let pages_dict = dictionary! {
        "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources_id,
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
    };
    doc.objects.insert(pages_id, Object::Dictionary(pages_dict));
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    if let Some(t) = title {
        let info = doc.add_object(dictionary! { "Title" => Object::string_literal(escape_pdf(t)) });
        doc.trailer.set("Info", info);
    }
    doc
}

/// A real PDF with a text layer, one entry per page.
pub fn pdf(pages: &[PdfPage], title: Option<&str>) -> Vec<u8> {
    let mut doc = pdf_document(pages, title);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// A PDF that needs the user password `user` to open (RC4, 128-bit).
pub fn encrypted_pdf(lines: &[&str]) -> Vec<u8> {
    let mut doc = pdf_document(&[PdfPage::Text(lines.iter().map(|s| (*s).to_owned()).collect())], None);
    // The file identifier salts the encryption key; PDF writers always set one.
    let id = lopdf::Object::String(b"quarry-test-file-id".to_vec(), lopdf::StringFormat::Literal);
    doc.trailer.set("ID", vec![id.clone(), id]);
    let version = lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner",
        user_password: "user",
        key_length: 128,
        permissions: lopdf::Permissions::all(),
    };
    let state = lopdf::EncryptionState::try_from(version).unwrap();
    doc.encrypt(&state).unwrap();
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The XML of a Word body with one `w:p` per paragraph.
pub fn docx_document_xml(paragraphs: &[&str]) -> String {
    let mut body = String::new();
    for p in paragraphs {
        body.push_str("<w:p><w:r><w:t xml:space=\"preserve\">");
        body.push_str(&xml_escape(p));
        body.push_str("</w:t></w:r></w:p>");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>{body}</w:body></w:document>"
    )
}

/// A minimal but complete DOCX (content types, relationships, body, core properties) whose
/// `word/document.xml` is `document_xml`.
pub fn docx_with_body(document_xml: &[u8], title: Option<&str>) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let mut put = |name: &str, data: &[u8]| {
            zip.start_file(name, opts).unwrap();
            zip.write_all(data).unwrap();
        };
        put(
            "[Content_Types].xml",
            br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#,
        );
        put(
            "_rels/.rels",
            br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#,
        );
        put("word/document.xml", document_xml);
        if let Some(t) = title {
            let core = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><dc:title>{}</dc:title></cp:coreProperties>",
                xml_escape(t)
            );
            put("docProps/core.xml", core.as_bytes());
        }
        zip.finish().unwrap();
    }
    buf.into_inner()
}

/// A DOCX with the given paragraphs.
pub fn docx(paragraphs: &[&str], title: Option<&str>) -> Vec<u8> {
    docx_with_body(docx_document_xml(paragraphs).as_bytes(), title)
}

/// A ZIP holding arbitrary parts (for "ZIP but not Word" cases).
pub fn zip_of(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        for (name, data) in parts {
            zip.start_file(*name, opts).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }
    buf.into_inner()
}

/// A real AWS event from `tests/fixtures/events` with its `${NAME}` placeholders filled in.
pub fn event_fixture(name: &str, vars: &[(&str, &str)]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/events").join(name);
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (k, v) in vars {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    text
}
