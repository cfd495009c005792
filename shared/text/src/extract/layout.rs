//! The text layout every format's output shares: table cells and rows as text, and tidy breaks.

/// Ends a table cell: ` | ` before the next one.
pub(super) fn end_cell(out: &mut String) {
    out.truncate(out.trim_end_matches([' ', '\t']).len());
    out.push_str(" | ");
}

/// Ends a table row on its own line, without the separator its last cell left.
pub(super) fn end_row(out: &mut String) {
    out.truncate(out.trim_end_matches([' ', '|']).len());
    out.push('\n');
}

/// Collapses the runs of blank lines and trailing spaces that block elements leave behind.
pub(super) fn tidy_breaks(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut newlines = 0;
    for line in s.split('\n') {
        let l = line.trim();
        if l.is_empty() {
            newlines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if newlines >= 2 { "\n\n" } else { "\n" });
        }
        out.push_str(l);
        newlines = 1;
    }
    out
}
