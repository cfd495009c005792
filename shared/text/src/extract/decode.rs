//! Bytes to text: UTF-8 and UTF-16 decoding that never guesses, and the clean-up every format's
//! text gets.

use std::borrow::Cow;

use super::ExtractError;

/// Decodes text: UTF-8 (with or without BOM) and UTF-16 (with BOM, or without one when the NUL
/// pattern is unmistakable). Anything else is an error that says where decoding failed, never
/// a lossy guess.
pub fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, ExtractError> {
    let utf16 = |body: &[u8], le: bool, what: &str| -> Result<Cow<'static, str>, ExtractError> {
        if !body.len().is_multiple_of(2) {
            return Err(ExtractError::Encoding { detail: format!("{what} text has an odd number of bytes") });
        }
        let units = body
            .chunks_exact(2)
            .map(|c| if le { u16::from_le_bytes([c[0], c[1]]) } else { u16::from_be_bytes([c[0], c[1]]) });
        let mut s = String::with_capacity(body.len() / 2);
        for (i, r) in char::decode_utf16(units).enumerate() {
            match r {
                Ok(c) => s.push(c),
                Err(_) => {
                    return Err(ExtractError::Encoding {
                        detail: format!("{what} has an unpaired surrogate at byte {}", i * 2),
                    });
                }
            }
        }
        Ok(Cow::Owned(clean(&s).into_owned()))
    };
    if bytes.starts_with(b"\xff\xfe\x00\x00") || bytes.starts_with(b"\x00\x00\xfe\xff") {
        return Err(ExtractError::Encoding { detail: "UTF-32 is not supported; save the file as UTF-8".into() });
    }
    if let Some(body) = bytes.strip_prefix(b"\xff\xfe") {
        return utf16(body, true, "UTF-16LE");
    }
    if let Some(body) = bytes.strip_prefix(b"\xfe\xff") {
        return utf16(body, false, "UTF-16BE");
    }
    let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if let Some(le) = bom_less_utf16(body) {
        return utf16(body, le, if le { "UTF-16LE" } else { "UTF-16BE" });
    }
    if let Some(offset) = memchr::memchr(0, &body[..body.len().min(8192)]) {
        return Err(ExtractError::Binary { offset });
    }
    match std::str::from_utf8(body) {
        Ok(s) => Ok(clean(s)),
        Err(e) => {
            let at = e.valid_up_to();
            Err(ExtractError::Encoding {
                detail: format!(
                    "invalid UTF-8 at byte {at} (0x{:02x}); save the file as UTF-8 (it may be Latin-1 or Windows-1252)",
                    body[at]
                ),
            })
        }
    }
}

/// UTF-16 text of mostly ASCII has a NUL in every other byte: LE puts it second, BE first.
fn bom_less_utf16(b: &[u8]) -> Option<bool> {
    let n = b.len().min(4096) & !1;
    if n < 8 {
        return None;
    }
    let (mut even, mut odd) = (0, 0);
    for pair in b[..n].chunks_exact(2) {
        even += usize::from(pair[0] == 0);
        odd += usize::from(pair[1] == 0);
    }
    let pairs = n / 2;
    if odd * 10 >= pairs * 9 && even == 0 {
        Some(true)
    } else if even * 10 >= pairs * 9 && odd == 0 {
        Some(false)
    } else {
        None
    }
}

/// Normalises line ends to `\n`, turns form feeds into paragraph breaks and drops other control
/// characters, which carry no meaning for search and confuse tokenizers. Borrows when there is
/// nothing to change, as in most files.
pub fn clean(s: &str) -> Cow<'_, str> {
    let needs = s.bytes().any(|b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f)
        || s.contains(|c: char| ('\u{80}'..='\u{9f}').contains(&c));
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\x0c' => out.push_str("\n\n"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}
