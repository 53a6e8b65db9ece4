//! The small text encodings every layer needs, in one place: hexadecimal (checksums, key
//! hashes) and URL percent-encoding (paths, query values, credentials in URLs).

use std::fmt::Write as _;

/// Uppercase hexadecimal, as a tarball's CHECKSUM and hex.pm's pages write checksums.
pub fn hex_upper(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
    out
}

/// Lowercase hexadecimal.
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The value of one hexadecimal digit, either case.
pub fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Bytes from hexadecimal text of either case; `None` for an odd length or a non-digit.
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

/// `%XX` escapes decoded; `None` for a malformed escape (a `%` not followed by two hex digits).
/// For request paths and API path segments, where a malformed escape is a bad request.
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex_digit(*bytes.get(i + 1)?)?;
            let lo = hex_digit(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// `%XX` escapes decoded, a malformed one kept as it is (as browsers treat a search box's text
/// and URLs their user info).
pub fn percent_decode_lenient(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex_digit(hi).zip(hex_digit(lo)),
            _ => None,
        };
        match escaped {
            Some((hi, lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// `text` as one URL path segment (or query value): everything but unreserved characters
/// percent-encoded.
pub fn percent_encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `text` as a JSON string literal, quotes included (for the one-line JSON records of the
/// access log and the audit trail).
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn hex_both_ways() {
        assert_eq!(hex_upper(&[0x0a, 0xff]), "0AFF");
        assert_eq!(hex_lower(&[0x0a, 0xff]), "0aff");
        assert_eq!(parse_hex("0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(parse_hex("0aF"), None);
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(""), Some(vec![]));
    }

    #[test]
    fn strict_and_lenient_percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%41").as_deref(), Some(&b"a/bA"[..]));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_decode_lenient("a%41%zz%"), b"aA%zz%");
        assert_eq!(percent_decode_lenient("p%40ss"), b"p@ss");
        assert_eq!(percent_encode_segment("a b/<c>"), "a%20b%2F%3Cc%3E");
    }
}
