//! The raw-text pass: bracket nesting and tokens, before anything parses.

use async_graphql::ServerResult;

use super::*;

/// Walks the raw document as GraphQL's lexer would (strings, block strings and
/// comments are opaque), counting tokens and bracket nesting, and stops at the
/// first limit passed: linear time, no recursion, no allocation.
pub fn scan(query: &str, max_nesting: usize, max_tokens: usize) -> ServerResult<()> {
    let bytes = query.as_bytes();
    let (mut i, mut nesting, mut tokens) = (0, 0usize, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' | 0xEF | 0xBB | 0xBF => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'[' | b'{' | b'(' => {
                nesting += 1;
                if nesting > max_nesting {
                    return Err(limit_error(
                        "nesting",
                        format!("brackets nest deeper than {max_nesting} levels"),
                    ));
                }
                i += 1;
            }
            b']' | b'}' | b')' => {
                nesting = nesting.saturating_sub(1);
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || b"_-+.".contains(&bytes[i]))
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        tokens += 1;
        if tokens > max_tokens {
            return Err(limit_error(
                "tokens",
                format!("the document has more than {max_tokens} tokens"),
            ));
        }
    }
    Ok(())
}
