//! Extraction per format on files the tests build (real PDFs via lopdf, real DOCX via zip), and the
//! bad-input set: every kind of broken or hostile file gives its typed error, and nothing panics.

use quarry_core::config::Limits;
use quarry_core::{Classify, ErrorClass, Format};
use quarry_testkit::{PdfPage, docx, docx_with_body, encrypted_pdf, pdf, zip_of};
use quarry_text::{ExtractError, Extractor};

fn ex() -> Extractor {
    Extractor::default()
}

fn lines(v: &[&str]) -> PdfPage {
    PdfPage::Text(v.iter().map(|s| (*s).to_owned()).collect())
}

#[test]
fn plain_text_and_encodings() {
    let d = ex().extract(Some("notes.txt"), b"Hello\r\nworld\x0cnext page\x01!").expect("text");
    assert_eq!(d.format, Format::Text);
    assert_eq!(d.text, "Hello\nworld\n\nnext page!", "CRLF, form feed and control characters are normalised");

    let bom8 = [b"\xef\xbb\xbf".as_slice(), "Grüße".as_bytes()].concat();
    assert_eq!(ex().extract(Some("a.txt"), &bom8).expect("utf-8 bom").text, "Grüße");

    let mut le = vec![0xff, 0xfe];
    le.extend("Grüße, 世界".encode_utf16().flat_map(u16::to_le_bytes));
    assert_eq!(ex().extract(Some("a.txt"), &le).expect("utf-16le").text, "Grüße, 世界");

    let mut be = vec![0xfe, 0xff];
    be.extend("Grüße".encode_utf16().flat_map(u16::to_be_bytes));
    assert_eq!(ex().extract(Some("a.txt"), &be).expect("utf-16be").text, "Grüße");

    let bomless: Vec<u8> = "plain ascii in utf-16".encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_eq!(ex().extract(Some("a.txt"), &bomless).expect("bom-less utf-16").text, "plain ascii in utf-16");
}

#[test]
fn markdown_keeps_text_and_structure() {
    let md = "---\ntitle: meta\n---\n# Quarry Guide\n\nSome *emphasis* and `code`.\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
    let d = ex().extract(Some("guide.md"), md.as_bytes()).expect("markdown");
    assert_eq!(d.format, Format::Markdown);
    assert_eq!(d.title.as_deref(), Some("Quarry Guide"));
    assert!(d.text.contains("Some emphasis and code."), "{:?}", d.text);
    assert!(d.text.contains("one\ntwo"), "{:?}", d.text);
    assert!(!d.text.contains("title: meta"), "front matter is metadata, not text");
    assert!(!d.text.contains('*') && !d.text.contains('`'));
}

#[test]
fn nested_blocks_do_not_glue_words() {
    let md = "- outer item\n  - inner item\n    - innermost item\n- last\n\n> quote\n> > nested quote\n";
    let d = ex().extract(Some("n.md"), md.as_bytes()).expect("markdown");
    for w in ["outer item", "inner item", "innermost item", "last", "quote", "nested quote"] {
        assert!(d.text.split('\n').any(|l| l.trim() == w), "{w:?} should stand on its own line in {:?}", d.text);
    }
    let html = "<html><body><div>alpha<div>beta<p>gamma</p></div>delta</div><ul><li>one<ul><li>two</li></ul></li></ul></body></html>";
    let d = ex().extract(Some("n.html"), html.as_bytes()).expect("html");
    for w in ["alpha", "beta", "gamma", "delta", "one", "two"] {
        assert!(d.text.split_whitespace().any(|t| t == w), "{w:?} glued in {:?}", d.text);
    }
}

#[test]
fn html_visible_text_only() {
    let html = r#"<!DOCTYPE html><html><head><title>The  Title</title><style>body{color:red}</style>
        <script>var secret = "do not index";</script></head>
        <body><nav>Menu</nav><h1>Heading</h1><p>First   para<br>line two</p>
        <div hidden>hidden text</div><noscript>enable js</noscript>
        <p>Second &amp; last <b>bold</b>.</p><img src="x.png" alt="a diagram"><template>tpl</template></body></html>"#;
    let d = ex().extract(Some("page.html"), html.as_bytes()).expect("html");
    assert_eq!(d.format, Format::Html);
    assert_eq!(d.title.as_deref(), Some("The Title"));
    for want in ["Heading", "First para\nline two", "Second & last bold.", "a diagram", "Menu"] {
        assert!(d.text.contains(want), "missing {want:?} in {:?}", d.text);
    }
    for banned in ["do not index", "color:red", "hidden text", "enable js", "tpl", "The Title"] {
        assert!(!d.text.contains(banned), "{banned:?} leaked into {:?}", d.text);
    }
    // Sniffed without an extension.
    assert_eq!(ex().detect(None, html.as_bytes()).expect("sniff"), Format::Html);
}

#[test]
fn pdf_pages_are_kept() {
    let bytes = pdf(
        &[lines(&["Page one talks about vitamins.", "Second line."]), lines(&["Page two is about protein."])],
        Some("Nutrition Notes"),
    );
    let d = ex().extract(Some("notes.pdf"), &bytes).expect("pdf");
    assert_eq!(d.format, Format::Pdf);
    assert_eq!(d.pages.len(), 2);
    assert_eq!(d.title.as_deref(), Some("Nutrition Notes"));
    let p1 = &d.text[d.pages[0].span.start..d.pages[0].span.end];
    let p2 = &d.text[d.pages[1].span.start..d.pages[1].span.end];
    assert!(p1.contains("Page one talks about vitamins."), "{p1:?}");
    assert!(p2.contains("Page two is about protein."), "{p2:?}");
    assert_eq!(d.pages[1].number, 2);
    // The magic decides, whatever the name says.
    assert_eq!(ex().detect(Some("misnamed.txt"), &bytes).expect("sniff"), Format::Pdf);
}

#[test]
fn docx_paragraphs_and_title() {
    let bytes = docx(&["First paragraph & more.", "Second <paragraph>."], Some("Word Title"));
    let d = ex().extract(Some("report.docx"), &bytes).expect("docx");
    assert_eq!(d.format, Format::Docx);
    assert_eq!(d.text, "First paragraph & more.\n\nSecond <paragraph>.");
    assert_eq!(d.title.as_deref(), Some("Word Title"));
}

#[test]
fn tables_keep_rows_on_lines_and_cells_apart() {
    let xml = br#"<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Intro</w:t></w:r></w:p><w:tbl><w:tr><w:tc><w:p><w:r><w:t>Food</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Protein</w:t></w:r></w:p><w:p><w:r><w:t>per cup</w:t></w:r></w:p></w:tc></w:tr><w:tr><w:tc><w:p><w:r><w:t>Lentils</w:t></w:r></w:p></w:tc><w:tc><w:p><w:hyperlink><w:r><w:t>18 g</w:t></w:r></w:hyperlink></w:p></w:tc></w:tr></w:tbl><w:p><w:r><w:t>Done</w:t></w:r></w:p></w:body></w:document>"#;
    let d = ex().extract(Some("t.docx"), &docx_with_body(xml, None)).expect("docx");
    assert_eq!(d.text, "Intro\n\nFood | Protein per cup\nLentils | 18 g\n\nDone");
    let html = "<table><tr><th>Food</th><th>Protein</th></tr><tr><td>Lentils</td><td>18 g</td></tr></table>";
    let h = ex().extract(Some("t.html"), html.as_bytes()).expect("html");
    assert_eq!(h.text, "Food | Protein\nLentils | 18 g");
    let md = "| Food | Protein |\n|---|---|\n| Lentils | 18 g |\n";
    let m = ex().extract(Some("t.md"), md.as_bytes()).expect("markdown");
    assert_eq!(m.text.trim_end(), "Food | Protein\nLentils | 18 g");
}

#[test]
fn csv_rows_become_labelled_lines() {
    let d = ex().extract(Some("people.csv"), b"name,city,age\nAda,London,36\nAlan,,41\n").expect("csv");
    assert_eq!(d.format, Format::Csv);
    assert_eq!(d.text, "name: Ada; city: London; age: 36\nname: Alan; age: 41\n");
    let t = ex().extract(Some("x.tsv"), b"a\tb\n1\t2\n").expect("tsv");
    assert_eq!(t.text, "a: 1; b: 2\n");
    let semi = ex().extract(Some("x.csv"), b"a;b\n1;2\n").expect("semicolons");
    assert_eq!(semi.text, "a: 1; b: 2\n");
}

#[test]
fn json_and_json_lines() {
    let d = ex()
        .extract(
            Some("doc.json"),
            br#"{"title":"Quarry","tags":["search","rust"],"meta":{"stars":5,"draft":false,"none":null}}"#,
        )
        .expect("json");
    assert_eq!(d.format, Format::Json);
    assert_eq!(d.text, "title: Quarry\ntags: search\ntags: rust\nmeta.stars: 5\nmeta.draft: false\n\n");
    let l = ex().extract(Some("rows.jsonl"), b"{\"a\":1}\n{\"a\":2}\n").expect("jsonl");
    assert_eq!(l.text, "a: 1\n\na: 2\n\n");
}

#[test]
fn ordinary_html_is_well_under_the_depth_limit() {
    // Unclosed p and li, void elements, self-closed tags, comments and script text do not count.
    let page = format!(
        "<!DOCTYPE html><html><head><meta charset=utf-8><script>{}</script></head><body>{}<ul>{}</ul><!-- <div><div> --></body></html>",
        "if (a < b) { x = '<div>'; }".repeat(200),
        "<p>para<br>line<img src=x.png/>".repeat(2000),
        "<li>item".repeat(2000),
    );
    let d = ex().extract(Some("page.html"), page.as_bytes()).expect("an ordinary page extracts");
    assert!(d.text.contains("para"));
    let deep = format!("<html><body>{}x{}</body></html>", "<div>".repeat(600), "</div>".repeat(600));
    let err = ex().extract(Some("d.html"), deep.as_bytes()).expect_err("600 levels");
    assert_eq!(quarry_core::Classify::code(&err), "too_deeply_nested");
    assert!(err.to_string().contains("limits.html_max_depth"), "{err}");
    let roomy = Extractor::new(Limits { html_max_depth: 1000, ..Limits::default() });
    assert!(roomy.extract(Some("d.html"), deep.as_bytes()).is_ok());
}

#[test]
fn a_ten_megabyte_line_is_text_not_an_error() {
    let line = "word ".repeat(2_000_000);
    let d = ex().extract(Some("one-line.txt"), line.as_bytes()).expect("10 MB line");
    assert_eq!(d.text.len(), 10_000_000);
}

/// What is fed in, to which extractor, under which name, and the error code expected.
type Case<'a> = (&'a str, &'a Extractor, Option<&'a str>, Vec<u8>, &'a str);

/// Every bad input, its expected error code, and that it is classified as the input's fault.
#[test]
fn bad_inputs_give_typed_errors() {
    let good_pdf = pdf(&[lines(&["Some text on a page."])], None);
    let mut corrupt_pdf = good_pdf.clone();
    // Keep the header, scramble the body: the cross-reference table and objects are gone.
    for b in corrupt_pdf.iter_mut().skip(9) {
        *b = b'#';
    }
    let truncated_pdf = good_pdf[..good_pdf.len() / 3].to_vec();
    let good_docx = docx(&["Hello"], None);
    let truncated_docx = good_docx[..good_docx.len() / 2].to_vec();
    // 5 MB of markup that deflates ~1000:1.
    let bomb = docx_with_body(&vec![b' '; 5_000_000], None);
    let deep_json = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    // Tree building is quadratic in depth: this 1.1 MB page took 14 s before the depth check.
    let deep_html = format!("<html><body>{}deep{}</body></html>", "<div>".repeat(100_000), "</div>".repeat(100_000));
    let mut over_pages = Vec::new();
    for i in 0..5 {
        over_pages.push(lines(&[&format!("page {i}")]));
    }
    let many_pages = pdf(&over_pages, None);
    let d = ex();
    let small = Extractor::new(Limits { max_file_bytes: 1000, max_chars: 50, ..Limits::default() });
    let three_pages = Extractor::new(Limits { max_pdf_pages: 3, ..Limits::default() });

    let cases: Vec<Case<'_>> = vec![
        ("zero bytes", &d, Some("empty.txt"), vec![], "empty_file"),
        ("over the size limit", &small, Some("big.txt"), vec![b'a'; 1001], "file_too_large"),
        ("binary garbage", &d, Some("blob.txt"), (0..=255u8).cycle().take(4096).collect(), "binary_content"),
        (
            "binary garbage without a name",
            &d,
            None,
            vec![0x00, 0x13, 0x37, 0x00, 0xff, 0x10, 0x00, 0x00, 0x01],
            "binary_content",
        ),
        ("invalid UTF-8", &d, Some("latin1.txt"), b"caf\xe9 au lait".to_vec(), "undecodable_text"),
        (
            "UTF-16 with a lone surrogate",
            &d,
            Some("u16.txt"),
            vec![0xff, 0xfe, 0x41, 0x00, 0x00, 0xd8, 0x41, 0x00],
            "undecodable_text",
        ),
        ("UTF-16 with an odd byte count", &d, Some("u16.txt"), vec![0xff, 0xfe, 0x41, 0x00, 0x42], "undecodable_text"),
        ("UTF-32", &d, Some("u32.txt"), vec![0xff, 0xfe, 0x00, 0x00, 0x41, 0, 0, 0], "undecodable_text"),
        ("corrupt PDF", &d, Some("c.pdf"), corrupt_pdf, "corrupt_pdf"),
        ("truncated PDF", &d, Some("t.pdf"), truncated_pdf, "corrupt_pdf"),
        ("a .pdf that is not a PDF", &d, Some("fake.pdf"), b"just text".to_vec(), "corrupt_pdf"),
        ("encrypted PDF", &d, Some("e.pdf"), encrypted_pdf(&["secret plans"]), "encrypted_pdf"),
        (
            "scanned PDF with no text layer",
            &d,
            Some("scan.pdf"),
            pdf(&[PdfPage::Image, PdfPage::Image], None),
            "scanned_pdf",
        ),
        ("PDF over the page limit", &three_pages, Some("long.pdf"), many_pages, "too_many_pages"),
        ("truncated DOCX", &d, Some("t.docx"), truncated_docx, "corrupt_docx"),
        ("zip-bomb DOCX", &d, Some("bomb.docx"), bomb, "zip_bomb"),
        ("a .docx that is not a ZIP", &d, Some("fake.docx"), b"plain words".to_vec(), "corrupt_docx"),
        ("a ZIP that is not Word", &d, Some("archive.docx"), zip_of(&[("readme.txt", b"hi")]), "unsupported_type"),
        (
            "DOCX with broken XML",
            &d,
            Some("x.docx"),
            docx_with_body(b"<w:document><w:body><w:p><w:t>oops</w:p>", None),
            "corrupt_docx",
        ),
        (
            "password-protected Office file",
            &d,
            Some("locked.docx"),
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1rest".to_vec(),
            "unsupported_type",
        ),
        ("PNG image", &d, Some("photo.png"), b"\x89PNG\r\n\x1a\n....".to_vec(), "unsupported_type"),
        ("unsupported extension", &d, Some("sheet.xlsx"), b"whatever".to_vec(), "unsupported_type"),
        ("deeply nested JSON", &d, Some("deep.json"), deep_json.into_bytes(), "too_deeply_nested"),
        ("deeply nested HTML", &d, Some("deep.html"), deep_html.into_bytes(), "too_deeply_nested"),
        ("invalid JSON", &d, Some("bad.json"), br#"{"a": [1, 2,}"#.to_vec(), "invalid_json"),
        (
            "HTML with only scripts",
            &d,
            Some("s.html"),
            b"<html><script>alert(1)</script><style>p{}</style></html>".to_vec(),
            "no_text",
        ),
        ("whitespace only", &d, Some("blank.md"), b" \n\t\n ".to_vec(), "no_text"),
        ("over the character limit", &small, Some("chatty.txt"), vec![b'a'; 60], "too_much_text"),
        ("CSV with a broken quote", &d, Some("q.csv"), b"a,b\n\"1,2\n".to_vec(), "invalid_csv"),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for (what, extractor, name, bytes, code) in &cases {
        let err = match extractor.extract(*name, bytes) {
            Ok(doc) => panic!("{what}: expected {code}, got a document of {} chars", doc.text.len()),
            Err(e) => e,
        };
        assert_eq!(err.code(), *code, "{what}: {err}");
        assert_eq!(err.class(), ErrorClass::BadInput, "{what}");
        assert!(!err.to_string().is_empty());
        kinds.insert(err.code());
    }
    assert!(cases.len() >= 25 && kinds.len() >= 15, "{} cases over {} error kinds", cases.len(), kinds.len());
}

#[test]
fn errors_keep_their_source_chain() {
    let err = ex().extract(Some("t.docx"), &docx(&["x"], None)[..40]).expect_err("truncated");
    assert!(matches!(err, ExtractError::CorruptDocx { .. }));
    assert!(std::error::Error::source(&err).is_some(), "the zip error is kept as the source");
    let f = quarry_core::Failure::from_error(&err);
    assert_eq!(f.code, "corrupt_docx");
    assert!(!f.retryable);
    assert!(f.message.contains(": "), "message carries the chain: {}", f.message);
}

#[test]
fn random_bytes_never_panic() {
    // A cheap fuzz over every entry point: names pick the parser, bytes are junk or mutated files.
    let seeds = [pdf(&[lines(&["fuzz me"])], None), docx(&["fuzz me"], None), b"{\"a\":[1,2]}".to_vec()];
    let mut rng = quarry_testkit::XorShift::new(0x9e37_79b9_7f4a_7c15);
    let mut next = || rng.next();
    for round in 0..300 {
        let seed = &seeds[round % seeds.len()];
        let mut bytes = seed.clone();
        for _ in 0..(1 + next() % 16) {
            let i = (next() as usize) % bytes.len();
            bytes[i] = next() as u8;
        }
        if round % 5 == 0 {
            bytes.truncate((next() as usize) % bytes.len());
        }
        for name in ["x.pdf", "x.docx", "x.json", "x.csv", "x.html", "x.md", "x"] {
            let _ = ex().extract(Some(name), &bytes);
        }
    }
}

#[test]
fn declared_content_type_decides_after_magic_and_extension() {
    type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a [u8], Format);
    let cases: &[Case] = &[
        // A key without an extension: the declared type decides, where sniffing would say text.
        (Some("notes"), Some("text/markdown; charset=utf-8"), b"# Title\n\nbody", Format::Markdown),
        (Some("MED-10"), Some("text/plain"), b"{ not json, a title in braces }", Format::Text),
        (Some("MED-10"), Some("TEXT/HTML"), b"<p>hi</p>", Format::Html),
        // A generic type names nothing: sniffing goes on.
        (Some("page"), Some("application/octet-stream"), b"<!doctype html><p>x</p>", Format::Html),
        // The extension outranks the declared type, and magic outranks both.
        (Some("a.csv"), Some("text/plain"), b"a,b\n1,2\n", Format::Csv),
        (Some("a.txt"), Some("text/plain"), b"%PDF-1.4 ...", Format::Pdf),
    ];
    for (name, ct, bytes, want) in cases {
        assert_eq!(ex().detect_as(*name, *ct, bytes).expect("detect"), *want, "{name:?} {ct:?}");
    }
}

/// Found by the fuzz harness (`tests/fuzz`): a page whose `Parent` is itself. pdf-extract follows
/// the chain to inherit resources and never returned; the page tree is now checked first. Run on
/// a thread so that a regression fails the test rather than hanging it.
#[test]
fn a_page_tree_with_a_parent_loop_is_refused_not_followed_forever() {
    let good = pdf(&[lines(&["First page."]), lines(&["Second page."])], None);
    // Offsets in bytes: the file is not UTF-8 throughout.
    let find = |from: usize, what: &[u8]| good[from..].windows(what.len()).position(|w| w == what).map(|i| from + i);
    let marker = b" 0 obj\n<</Type/Page/Parent ";
    let first = find(0, marker).expect("a first page");
    let page = find(first + 1, marker).expect("a second page");
    let digits = good[..page].iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let number = &good[page - digits..page];
    let parent_at = page + marker.len();
    let parent_len = good[parent_at..].iter().position(|&b| b == b' ').expect("a reference");
    assert_eq!(number.len(), parent_len, "the same length, so the xref offsets hold");
    let mut looped = good.clone();
    looped.splice(parent_at..parent_at + parent_len, number.iter().copied());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(ex().extract(Some("loop.pdf"), &looped).map(|_| ()).map_err(|e| e.code()));
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("extraction returns");
    assert_eq!(got, Err("corrupt_pdf"));
    assert!(ex().extract(Some("good.pdf"), &good).is_ok(), "the unedited file still extracts");
}
