//! JSON and JSON Lines: one line per scalar, `key.path: value`, after a depth check that needs no
//! parse.

use quarry_core::config::Limits;
use quarry_core::{ExtractedDocument, Format};

use super::ExtractError;

pub(super) fn extract(limits: &Limits, text: &str) -> Result<ExtractedDocument, ExtractError> {
    let limit = limits.json_max_depth;
    if json_depth(text.as_bytes()) > limit as usize {
        return Err(ExtractError::TooDeep { format: Format::Json, limit });
    }
    let mut out = String::new();
    // A stream of values: a .json file holds one, JSON Lines hold one a line.
    for value in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        let value = value.map_err(ExtractError::Json)?;
        render_json(&value, &mut Vec::new(), &mut out);
        out.push('\n');
    }
    Ok(ExtractedDocument::single_page(Format::Json, out, None))
}

/// Deepest nesting of arrays and objects, counted without parsing (strings skipped), so an
/// adversarial file is refused before a recursive parser sees it.
fn json_depth(b: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// One line per scalar, `key.path: value`: readable to people and to the embedding model.
fn render_json<'a>(v: &'a serde_json::Value, path: &mut Vec<&'a str>, out: &mut String) {
    use serde_json::Value;
    let leaf = |path: &[&str], out: &mut String, s: &str| {
        if !path.is_empty() {
            out.push_str(&path.join("."));
            out.push_str(": ");
        }
        out.push_str(s);
        out.push('\n');
    };
    match v {
        Value::Null => {}
        Value::Bool(b) => leaf(path, out, if *b { "true" } else { "false" }),
        Value::Number(n) => leaf(path, out, &n.to_string()),
        Value::String(s) => {
            if !s.trim().is_empty() {
                leaf(path, out, s)
            }
        }
        Value::Array(items) => {
            for item in items {
                render_json(item, path, out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                path.push(k);
                render_json(item, path, out);
                path.pop();
            }
        }
    }
}
