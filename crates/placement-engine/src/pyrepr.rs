//! Python `repr()` of strings and lists of strings, as upstream's messages
//! embed them.

/// `repr(s)` for a Python str.
pub(crate) fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `repr(list_of_str)`.
pub(crate) fn py_list(items: &[&str]) -> String {
    let v: Vec<String> = items.iter().map(|s| py_str(s)).collect();
    format!("[{}]", v.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprs() {
        assert_eq!(py_str("abc"), "'abc'");
        assert_eq!(py_str("a'b"), "\"a'b\"");
        assert_eq!(py_str("a'b\""), "'a\\'b\"'");
        assert_eq!(py_list(&["", "_A"]), "['', '_A']");
    }
}
