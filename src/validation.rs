//! Field-level validation results shared by every REST resource: each rule that fails names the
//! field (as a JSON path such as `assistant_tts_config.voice_id`) and the rule, so a 400 tells the
//! caller exactly what to fix. All violations are collected, not just the first.

use serde::Serialize;
use utoipa::ToSchema;

/// One broken rule on one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the offending field.
    pub field: String,
    /// The rule it broke, in words.
    pub message: String,
}

/// Collects broken rules while a request is checked.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many rules were broken so far; compare before and after a sub-check.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok(())` when nothing was broken, otherwise every violation found.
    pub fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }

    /// Checks a required, non-blank text field.
    pub fn required_text(&mut self, field: &str, value: Option<&str>) {
        match value {
            None => self.add(field, "is required"),
            Some(v) if v.trim().is_empty() => self.add(field, "must not be empty"),
            Some(_) => {}
        }
    }

    /// Checks a text length in characters (not bytes: names are often not ASCII).
    pub fn char_length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let n = value.chars().count();
        if n < min || n > max {
            if min == 0 {
                self.add(field, format!("must be at most {max} characters (got {n})"));
            } else {
                self.add(field, format!("must be {min}-{max} characters (got {n})"));
            }
        }
    }

    /// Checks an absolute http(s) URL.
    pub fn http_url(&mut self, field: &str, value: &str) {
        if let Err(why) = check_http_url(value) {
            self.add(field, why);
        }
    }

    /// Checks an E.164 phone number (`+14155550100`).
    pub fn e164(&mut self, field: &str, value: &str) {
        if !is_e164(value) {
            self.add(
                field,
                "must be an E.164 phone number: + and 8-15 digits, the first not 0",
            );
        }
    }
}

/// Whether `text` holds a control character other than tab, line feed and carriage return (which
/// prompts legitimately contain). NUL is the one that matters most: PostgreSQL's `text` refuses
/// it, so without this check the same request would be stored on SQLite and fail on PostgreSQL.
pub fn has_control_characters(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// An E.164 phone number as telephony providers take it: `+`, then 8-15 digits (country code
/// first, so never a leading 0), nothing else. No spaces or dashes: inbound calls are routed by
/// exact match on the number, so one spelling per number is what keeps routing unambiguous.
pub fn is_e164(value: &str) -> bool {
    let Some(digits) = value.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// An absolute `http` or `https` URL with a host, or why not. The text itself is checked, not
/// only what the URL parser makes of it: the parser forgives `http:///x` and `http:x` (reading
/// `x` as the host) and silently drops tabs and newlines, and a URL that means something other
/// than what it says is how requests get steered where they should not go.
pub fn check_http_url(value: &str) -> Result<url::Url, String> {
    const RULE: &str = "must be an absolute http(s) URL with a host";
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{RULE}, without spaces or control characters"));
    }
    let lower = value.get(..8).unwrap_or(value).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &value[8..]
    } else if lower.starts_with("http://") {
        &value[7..]
    } else {
        return Err(RULE.to_owned());
    };
    if rest.is_empty() || rest.starts_with(['/', '\\', '?', '#', '@', ':']) {
        return Err(RULE.to_owned());
    }
    let parsed = url::Url::parse(value).map_err(|e| format!("{RULE} ({e})"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(RULE.to_owned());
    }
    Ok(parsed)
}

/// A well-formed BCP-47 language tag (RFC 5646 syntax: language, optional script, region and
/// variants), e.g. `hi-IN`, `en`, `zh-Hant-TW`. The language must be an ISO 639 code (2-3
/// letters): RFC 5646 also reserves 5-8 letter subtags, but none is registered, and accepting them
/// would let `hindi` through. Private-use and grandfathered tags are refused: no speech provider
/// understands them.
pub fn is_bcp47(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let Some(language) = parts.next() else {
        return false;
    };
    let alpha = |s: &str| s.bytes().all(|b| b.is_ascii_alphabetic());
    let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !(matches!(language.len(), 2..=3) && alpha(language)) {
        return false;
    }
    // Order: script (4 alpha), region (2 alpha or 3 digits), variants (5-8 alnum or digit+3).
    let mut stage = 0;
    for part in parts {
        let is_script = part.len() == 4 && alpha(part);
        let is_region = (part.len() == 2 && alpha(part))
            || (part.len() == 3 && part.bytes().all(|b| b.is_ascii_digit()));
        let is_variant = (5..=8).contains(&part.len()) && alnum(part)
            || (part.len() == 4 && part.as_bytes()[0].is_ascii_digit() && alnum(part));
        stage = if stage < 1 && is_script {
            1
        } else if stage < 2 && is_region {
            2
        } else if is_variant {
            3
        } else {
            return false;
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcp47_accepts_real_tags() {
        for tag in [
            "bn-IN",
            "hi-IN",
            "en",
            "en-US",
            "zh-Hant-TW",
            "es-419",
            "sl-rozaj",
            "kok-IN",
        ] {
            assert!(is_bcp47(tag), "{tag}");
        }
    }

    #[test]
    fn bcp47_refuses_malformed_tags() {
        for tag in [
            "",
            "e",
            "english-IN",
            "hi_IN",
            "hi-",
            "-IN",
            "hi-IN-IN",
            "1n-IN",
            "hi IN",
        ] {
            assert!(!is_bcp47(tag), "{tag}");
        }
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(check_http_url("https://api.example.com/call-ended").is_ok());
        assert!(check_http_url("http://127.0.0.1:9000/x").is_ok());
        assert!(check_http_url("ftp://example.com").is_err());
        assert!(check_http_url("/relative").is_err());
        assert!(check_http_url("example.com/x").is_err());
        for bad in [
            "http:///x",
            "http:x",
            "http:/x",
            "https:\\\\x",
            "http://",
            "http://@x",
            "http://:80/",
            "http://exa\nmple.com/",
            "http://example.com/a b",
            "http://example.com/\0",
        ] {
            assert!(check_http_url(bad).is_err(), "{bad:?}");
        }
        assert!(check_http_url("HTTPS://Example.com").is_ok());
    }

    #[test]
    fn control_characters_are_found_but_line_breaks_are_text() {
        assert!(!has_control_characters("Line one\n\tLine two\r\n"));
        for bad in ["a\0b", "\u{7}", "x\u{1b}[31m", "\u{7f}", "\u{85}"] {
            assert!(has_control_characters(bad), "{bad:?}");
        }
    }

    #[test]
    fn e164_numbers() {
        for ok in [
            "+14155550100",
            "+919876543210",
            "+12345678",
            "+123456789012345",
        ] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "",
            "+",
            "14155550100",
            "+04155550100",
            "+1234567",
            "+1234567890123456",
            "+1 415 555 0100",
            "+1-415-555-0100",
            "+1415555010a",
            "++14155550100",
            "+１４１５５５５０１００",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn lengths_count_characters() {
        let mut v = Violations::new();
        v.char_length("name", "নমস্কার", 1, 7);
        assert!(v.is_empty());
        v.char_length("name", "", 1, 100);
        assert_eq!(
            v.into_result().unwrap_err()[0].message,
            "must be 1-100 characters (got 0)"
        );
    }
}
