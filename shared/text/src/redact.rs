//! PII and secret redaction, applied before anything is embedded or stored. Each kind is a
//! pattern plus, where the pattern alone would flag innocent numbers, a validator (Luhn for cards,
//! mod-97 for IBANs, the SSA's rules for SSNs, a real parse for IPv6). Overlapping matches are
//! merged into one redaction, so a secret matched partly by one rule and partly by another is
//! never half-shown. Placeholders match no rule, so redacting twice changes nothing.
//!
//! Only counts per kind leave this module; the matched values are never logged.

use std::borrow::Cow;
use std::sync::LazyLock;

use quarry_core::{ByteSpan, ExtractedDocument, Page, PiiKind, RedactionCounts};
use regex_automata::meta::Regex;
use regex_automata::{Input, Span};

struct Rule {
    kind: PiiKind,
    /// Searched only where the gate matched (see [`GATE`]); otherwise over the whole text.
    gated: bool,
    re: &'static Pattern,
    valid: fn(&str, &str, usize) -> bool,
    /// Digit runs the pattern matched greedily may hold a valid match that ends earlier, at a
    /// group separator ("4111 1111 1111 1111 1" holds a card): try those prefixes, longest first.
    shrink: bool,
    /// After a rejected candidate, search again one character later rather than after it: in
    /// "order 123 4111 1111 1111 1111" the first candidate swallows "123" and fails Luhn, and the
    /// card inside it must still be found. Only for patterns of bounded length, so the retries
    /// stay linear.
    retry: bool,
}

// `(?-u:\b)` is an ASCII word boundary: Unicode boundaries would force the slow regex engine on
// every non-ASCII document, and all these shapes are ASCII.
struct Pattern {
    source: &'static str,
    re: LazyLock<Regex>,
}

impl std::ops::Deref for Pattern {
    type Target = Regex;
    fn deref(&self) -> &Regex {
        &self.re
    }
}

macro_rules! re {
    ($name:ident, $pat:expr) => {
        static $name: Pattern = Pattern {
            source: $pat,
            re: LazyLock::new(|| {
                #[allow(clippy::expect_used)]
                Regex::new($pat).expect("redaction patterns are tested constants")
            }),
        };
    };
}

re!(
    EMAIL,
    r"(?i)[a-z0-9](?:[a-z0-9._%+\-]{0,63})@[a-z0-9](?:[a-z0-9\-]{0,62}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,62}[a-z0-9])?)*\.[a-z]{2,24}(?-u:\b)"
);
re!(
    PHONE,
    r"(?:\+[1-9]\d{0,2}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]?\d{1,4}){1,5}|(?:\(\d{3}\) ?|(?-u:\b)\d{3}[ .\-])\d{3}[ .\-]\d{4})(?-u:\b)"
);
re!(SSN, r"(?-u:\b)\d{3}[ \-]\d{2}[ \-]\d{4}(?-u:\b)");
// Cards as they are written: contiguous, 4-4-4-4(-3) or Amex's 4-6-5. A separator after any digit
// would make every run of spaced digits a candidate, and Luhn passes one random candidate in ten.
re!(
    CARD,
    r"(?-u:\b)(?:\d{13,19}|\d{4}[ \-]\d{4}[ \-]\d{4}[ \-]\d{4}(?:[ \-]\d{3})?|\d{4}[ \-]\d{6}[ \-]\d{5})(?-u:\b)"
);
re!(IBAN, r"(?-u:\b)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b)");
re!(IPV4, r"(?-u:\b)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?-u:\b)");
re!(IPV6, r"(?i)(?:[0-9a-f]{1,4}|:)?(?::[0-9a-f]{0,4}){2,7}(?:(?:\d{1,3}\.){3}\d{1,3})?");
re!(AWS_ACCESS, r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA|AIPA|ANPA|ANVA|AGPA)[A-Z0-9]{16}(?-u:\b)");
re!(JWT, r"(?-u:\b)eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*");
re!(
    PRIVATE_KEY,
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=:,\-\s]*)"
);
re!(
    API_KEY,
    r"(?-u:\b)(?:sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|xox[abposr]-[A-Za-z0-9\-]{10,}|AIza[0-9A-Za-z_\-]{35}|glpat-[A-Za-z0-9_\-]{20,}|SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{30,}|npm_[A-Za-z0-9]{36})"
);

/// The six rules without a literal to search for (digits and hex) each cost a full pass of the
/// regex DFA. Their alternation costs one: it finds every place any of them could match, and the
/// rules themselves then run only there. Every rule's match starts inside some gate match (the gate
/// scans leftmost-first, so it cannot step over a position where one of its alternatives matches),
/// and no rule's match is longer than [`GATED_MAX_LEN`].
static GATE: LazyLock<Regex> = LazyLock::new(|| {
    let parts = [&PHONE, &SSN, &CARD, &IBAN, &IPV4, &IPV6].map(|r| format!("(?:{})", r.source));
    #[allow(clippy::expect_used)]
    Regex::new(&parts.join("|")).expect("the gate is an alternation of tested patterns")
});
const GATED_MAX_LEN: usize = 64;

fn any(_: &str, _: &str, _: usize) -> bool {
    true
}

fn digits(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.bytes().filter(u8::is_ascii_digit).map(|b| u32::from(b - b'0'))
}

fn phone(m: &str, _: &str, _: usize) -> bool {
    let n = digits(m).count();
    if m.starts_with('+') { (8..=15).contains(&n) } else { n == 10 }
}

fn ssn(m: &str, _: &str, _: usize) -> bool {
    let d: Vec<u32> = digits(m).collect();
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5..9].iter().fold(0, |a, x| a * 10 + x);
    // Separators must agree: "123-45 6789" is more likely two numbers than one SSN.
    let seps: Vec<u8> = m.bytes().filter(|b| !b.is_ascii_digit()).collect();
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 && seps.windows(2).all(|w| w[0] == w[1])
}

fn luhn(m: &str, _: &str, _: usize) -> bool {
    let seps: Vec<u8> = m.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let d: Vec<u32> = digits(m).collect();
    if !(13..=19).contains(&d.len()) || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| if i % 2 == 1 { if x * 2 > 9 { x * 2 - 9 } else { x * 2 } } else { x })
        .sum();
    sum.is_multiple_of(10)
}

fn iban(m: &str, _: &str, _: usize) -> bool {
    let s: Vec<u8> = m.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    // Move the country code and check digits to the end, letters to numbers, mod 97 == 1.
    let mut rem: u32 = 0;
    for &b in s[4..].iter().chain(&s[..4]) {
        let v = if b.is_ascii_digit() { u32::from(b - b'0') } else { u32::from(b - b'A') + 10 };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

fn ipv4(m: &str, text: &str, at: usize) -> bool {
    // "1.2.3.4.5" is a version or an OID, not an address.
    let before = &text.as_bytes()[..at];
    let after = &text.as_bytes()[at + m.len()..];
    let dotted = |b: &[u8]| b.len() >= 2 && b[0] == b'.' && b[1].is_ascii_digit();
    !(dotted(after)
        || (before.len() >= 2 && before[before.len() - 1] == b'.' && before[before.len() - 2].is_ascii_digit()))
}

fn ipv6(m: &str, text: &str, at: usize) -> bool {
    let word = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b':' || *b == b'_');
    if word(text.as_bytes().get(at.wrapping_sub(1))) || word(text.as_bytes().get(at + m.len())) {
        return false;
    }
    let groups = m.split(':').filter(|g| !g.is_empty()).count();
    // "a::b" in C++ or "12:30:45" parse or nearly parse; real addresses have more to them.
    groups >= 3 && m.parse::<std::net::Ipv6Addr>().is_ok()
}

fn aws_secret(m: &str, _: &str, _: usize) -> bool {
    let b = m.as_bytes();
    b.len() == 40
        && b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter().any(u8::is_ascii_digit)
        && !looks_like_path(m)
}

/// "src/main/java/Example/Service2/Impl" has the shape of a secret key but every segment is a
/// word; random key material is not.
fn looks_like_path(m: &str) -> bool {
    let segments: Vec<&str> = m.split('/').collect();
    segments.len() >= 3
        && segments.iter().filter(|s| !s.is_empty()).all(|s| {
            let word = s.trim_end_matches(|c: char| c.is_ascii_digit());
            let mut chars = word.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_lowercase())
        })
}

/// The length of the match that the rule accepts, if any.
fn accepted(rule: &Rule, m: &str, text: &str, at: usize) -> Option<usize> {
    if (rule.valid)(m, text, at) {
        return Some(m.len());
    }
    if !rule.shrink {
        return None;
    }
    let b = m.as_bytes();
    (1..b.len())
        .rev()
        .filter(|&i| matches!(b[i], b' ' | b'-' | b'.') && b[i - 1].is_ascii_digit())
        .find(|&i| (rule.valid)(&m[..i], text, at))
}

static RULES: [Rule; 11] = [
    Rule { kind: PiiKind::PrivateKey, gated: false, re: &PRIVATE_KEY, valid: any, shrink: false, retry: false },
    Rule { kind: PiiKind::Jwt, gated: false, re: &JWT, valid: any, shrink: false, retry: false },
    Rule { kind: PiiKind::AwsAccessKey, gated: false, re: &AWS_ACCESS, valid: any, shrink: false, retry: false },
    Rule { kind: PiiKind::ApiKey, gated: false, re: &API_KEY, valid: any, shrink: false, retry: false },
    Rule { kind: PiiKind::Email, gated: false, re: &EMAIL, valid: any, shrink: false, retry: false },
    Rule { kind: PiiKind::Iban, gated: true, re: &IBAN, valid: iban, shrink: false, retry: true },
    Rule { kind: PiiKind::Card, gated: true, re: &CARD, valid: luhn, shrink: true, retry: true },
    Rule { kind: PiiKind::Ssn, gated: true, re: &SSN, valid: ssn, shrink: false, retry: true },
    Rule { kind: PiiKind::Ipv6, gated: true, re: &IPV6, valid: ipv6, shrink: false, retry: true },
    Rule { kind: PiiKind::Ipv4, gated: true, re: &IPV4, valid: ipv4, shrink: false, retry: true },
    Rule { kind: PiiKind::Phone, gated: true, re: &PHONE, valid: phone, shrink: true, retry: true },
];

/// Redacts the kinds it was built with.
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Indexes into `RULES`, in priority order.
    enabled: Vec<usize>,
    secret_keys: bool,
}

/// Where the gate matched, merged when they touch.
fn gate_windows(text: &str) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for m in GATE.find_iter(text) {
        match out.last_mut() {
            Some(last) if m.start() <= last.end => last.end = last.end.max(m.end()),
            _ => out.push(m.span()),
        }
    }
    out
}

/// Runs one rule over matches starting in `from..until`, searching no further than `limit`.
/// Search spans keep the whole text as context, so `\b` sees the real neighbours.
fn scan(
    rule: &Rule,
    prio: usize,
    text: &str,
    from: usize,
    until: usize,
    limit: usize,
    hits: &mut Vec<(usize, usize, usize)>,
) {
    let mut at = from;
    while at < until {
        let Some(m) = rule.re.search(&Input::new(text).span(at..limit)) else { break };
        if m.start() >= until {
            break;
        }
        let found = &text[m.start()..m.end()];
        if let Some(len) = accepted(rule, found, text, m.start()) {
            hits.push((m.start(), m.start() + len, prio));
            at = m.start() + len;
        } else if rule.retry {
            at = m.start() + found.chars().next().map_or(1, char::len_utf8);
        } else {
            at = m.end().max(m.start() + 1);
        }
    }
}

const fn b64_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'/' || b == b'+';
        c += 1;
    }
    t
}
static B64: [bool; 256] = b64_table();

/// AWS secret keys: exactly 40 characters of base64 between non-base64 characters. A byte scan
/// rather than a regex, because it can skip: when byte `i + 39` is not base64, no 40-character
/// run can start anywhere in `i..=i + 39`, so ordinary prose is read one byte in forty.
fn aws_secrets(text: &str, hits: &mut Vec<(usize, usize, usize)>) {
    const LEN: usize = 40;
    let prio = RULES.len();
    let b = text.as_bytes();
    let n = b.len();
    // Invariant: i == 0 or b[i - 1] is not base64.
    let mut i = 0;
    while i + LEN <= n {
        if !B64[usize::from(b[i + LEN - 1])] {
            i += LEN;
            continue;
        }
        let mut start = i + LEN - 1;
        while start > i && B64[usize::from(b[start - 1])] {
            start -= 1;
        }
        let mut end = i + LEN;
        while end < n && B64[usize::from(b[end])] {
            end += 1;
        }
        if end - start == LEN && aws_secret(&text[start..end], text, start) {
            hits.push((start, end, prio));
        }
        i = end + 1;
    }
}

/// Redacted text and how many of each kind were replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted<'a> {
    pub text: Cow<'a, str>,
    pub counts: RedactionCounts,
}

impl Redactor {
    pub fn new(kinds: &[PiiKind]) -> Self {
        let enabled = (0..RULES.len()).filter(|&i| kinds.contains(&RULES[i].kind)).collect();
        Redactor { enabled, secret_keys: kinds.contains(&PiiKind::AwsSecretKey) }
    }

    pub fn all() -> Self {
        Self::new(&PiiKind::ALL)
    }

    pub fn redact<'a>(&self, text: &'a str) -> Redacted<'a> {
        let mut hits: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, priority)
        let gated_enabled = self.enabled.iter().any(|&i| RULES[i].gated);
        let windows: Vec<Span> = if gated_enabled { gate_windows(text) } else { Vec::new() };
        for &i in &self.enabled {
            let rule = &RULES[i];
            if rule.gated {
                for w in &windows {
                    scan(rule, i, text, w.start, w.end, (w.end + GATED_MAX_LEN).min(text.len()), &mut hits);
                }
            } else {
                scan(rule, i, text, 0, text.len(), text.len(), &mut hits);
            }
        }
        if self.secret_keys {
            aws_secrets(text, &mut hits);
        }
        let mut counts = RedactionCounts::new();
        if hits.is_empty() {
            return Redacted { text: Cow::Borrowed(text), counts };
        }
        hits.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut k = 0;
        while k < hits.len() {
            let (start, mut end, mut prio) = hits[k];
            k += 1;
            // Merge everything that overlaps; the highest-priority kind names the merged span.
            while k < hits.len() && hits[k].0 < end {
                end = end.max(hits[k].1);
                prio = prio.min(hits[k].2);
                k += 1;
            }
            let kind = RULES.get(prio).map_or(PiiKind::AwsSecretKey, |r| r.kind);
            out.push_str(&text[last..start]);
            out.push_str(kind.placeholder());
            *counts.entry(kind).or_insert(0) += 1;
            last = end;
        }
        out.push_str(&text[last..]);
        Redacted { text: Cow::Owned(out), counts }
    }

    /// Redacts each page of a document, keeping the page structure aligned with the new text.
    pub fn redact_document(&self, doc: &ExtractedDocument) -> (ExtractedDocument, RedactionCounts) {
        let mut counts = RedactionCounts::new();
        let mut text = String::with_capacity(doc.text.len());
        let mut pages = Vec::with_capacity(doc.pages.len());
        let mut last = 0;
        for page in &doc.pages {
            // Separators between pages are ours ("\n\n"); copy them as they are.
            text.push_str(&doc.text[last..page.span.start]);
            let r = self.redact(&doc.text[page.span.start..page.span.end]);
            for (k, n) in r.counts {
                *counts.entry(k).or_insert(0) += n;
            }
            let start = text.len();
            text.push_str(&r.text);
            pages.push(Page { number: page.number, span: ByteSpan { start, end: text.len() } });
            last = page.span.end;
        }
        text.push_str(&doc.text[last..]);
        let title = doc.title.as_deref().map(|t| self.redact(t).text.into_owned());
        (ExtractedDocument { format: doc.format, text, pages, title }, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        Redactor::all().redact(s).text.into_owned()
    }

    #[test]
    fn each_kind_is_redacted() {
        let cases = [
            ("mail jane.doe+tag@example.co.uk now", "mail [EMAIL] now"),
            ("call +44 20 7946 0958 today", "call [PHONE] today"),
            ("call (415) 555-2671 today", "call [PHONE] today"),
            ("call 415-555-2671.", "call [PHONE]."),
            ("ssn 123-45-6789 ok", "ssn [SSN] ok"),
            ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
            ("card 5500-0000-0000-0004 ok", "card [CARD] ok"),
            ("iban GB82 WEST 1234 5698 7654 32 ok", "iban [IBAN] ok"),
            ("iban DE89370400440532013000 ok", "iban [IBAN] ok"),
            ("host 192.168.10.254 up", "host [IPV4] up"),
            ("host 2001:db8:85a3::8a2e:370:7334 up", "host [IPV6] up"),
            ("host fe80::1ff:fe23:4567:890a up", "host [IPV6] up"),
            ("key AKIAIOSFODNN7EXAMPLE ok", "key [AWS_ACCESS_KEY] ok"),
            ("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ok", "secret [AWS_SECRET_KEY] ok"),
            (
                "tok eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
                "tok [JWT] ok",
            ),
            ("k sk-proj-abcdefghijklmnopqrstuvwx ok", "k [API_KEY] ok"),
            ("k ghp_abcdefghijklmnopqrstuvwxyz0123456789 ok", "k [API_KEY] ok"),
            ("k xoxb-1234567890-abcdefghij ok", "k [API_KEY] ok"),
            ("k AIzaSyA1234567890abcdefghijklmnopqrstuv ok", "k [API_KEY] ok"),
        ];
        for (input, want) in cases {
            assert_eq!(r(input), want, "input: {input}");
        }
        let pem = "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc+/=\n-----END RSA PRIVATE KEY-----\nb";
        assert_eq!(r(pem), "a\n[PRIVATE_KEY]\nb");
        let truncated = "a\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nMIIEpAIBAAKCAQEA";
        assert_eq!(r(truncated), "a\n[PRIVATE_KEY]");
    }

    #[test]
    fn innocent_numbers_survive() {
        for s in [
            "On 2024-01-15 we shipped 3.2.1 to 1,000 users.",
            "Invoice 4111 1111 1111 1112 failed Luhn.",
            "Area 666-12-3456 is never issued.",
            "std::vector<int> v; a::b::c",
            "At 12:30:45 the build finished.",
            "version 1.2.3.4.5 of the OID",
            "git sha 9fceb02d0ae598e95dc970b74767f19372d61af8 is lowercase hex",
            "the path /usr/local/share/doc/packages/quarry/README/Text1/xyz",
            "see src/main/java/Example/Service2/Impl/Core",
            "ISBN 978-3-16-148410-0 and 10 items",
        ] {
            assert_eq!(r(s), s, "should not be redacted");
        }
    }

    #[test]
    fn spaced_digits_are_not_cards() {
        let dump =
            "3 1 4 1 5 9 2 6 5 3 5 8 9 7 9 3 2 3 8 4 6 2 6 4 3 3 8 3 2 7 9 5 0 2 8 8 4 1 9 7 1 6 9 3 9 9 3 7 5 1";
        assert_eq!(r(dump), dump);
        assert_eq!(r("amex 3782 822463 10005 ok"), "amex [CARD] ok");
        assert_eq!(r("card 4111-1111 1111-1111 mixed"), "card 4111-1111 1111-1111 mixed");
    }

    #[test]
    fn a_rejected_candidate_does_not_hide_a_real_one() {
        assert_eq!(r("order 123 4111 1111 1111 1111 paid"), "order 123 [CARD] paid");
        assert_eq!(r("ids 000-12-3456 123-45-6789"), "ids 000-12-3456 [SSN]");
    }

    #[test]
    fn secret_keys_are_found_at_every_offset() {
        let key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        for pad in 0..45 {
            let text = format!("{} {key} {}", "x".repeat(pad), "y".repeat(pad % 7));
            assert!(!r(&text).contains(key), "pad {pad}");
            assert!(r(&format!("{}{key}", "z".repeat(pad))).contains(key) || pad == 0, "a 41+ run is no key");
        }
    }

    #[test]
    fn counts_and_idempotence() {
        let red = Redactor::all();
        let out = red.redact("a@b.io and c@d.io and 192.168.0.1");
        assert_eq!(out.counts.get(&PiiKind::Email), Some(&2));
        assert_eq!(out.counts.get(&PiiKind::Ipv4), Some(&1));
        let again = red.redact(&out.text);
        assert_eq!(again.text, out.text);
        assert!(again.counts.is_empty());
    }

    #[test]
    fn kinds_can_be_switched_off() {
        let red = Redactor::new(&[PiiKind::Email]);
        assert_eq!(red.redact("x@y.com 192.168.0.1").text, "[EMAIL] 192.168.0.1");
        let none = Redactor::new(&[]);
        assert!(matches!(none.redact("x@y.com").text, Cow::Borrowed(_)));
    }

    #[test]
    fn document_pages_stay_aligned() {
        let text = "page one mail a@b.io\n\npage two 10.0.0.1 end".to_owned();
        let doc = ExtractedDocument {
            format: quarry_core::Format::Pdf,
            pages: vec![
                Page { number: 1, span: ByteSpan { start: 0, end: 20 } },
                Page { number: 2, span: ByteSpan { start: 22, end: text.len() } },
            ],
            text,
            title: None,
        };
        let (out, counts) = Redactor::all().redact_document(&doc);
        assert_eq!(out.text, "page one mail [EMAIL]\n\npage two [IPV4] end");
        assert_eq!(&out.text[out.pages[0].span.start..out.pages[0].span.end], "page one mail [EMAIL]");
        assert_eq!(&out.text[out.pages[1].span.start..out.pages[1].span.end], "page two [IPV4] end");
        assert_eq!(counts.len(), 2);
    }
}
