//! `{{key}}` / `{{key|default}}` placeholders in an assistant's prompt and start instruction,
//! filled per call from the outbound request's metadata (and from built-ins such as the call id).
//!
//! Rules: spaces inside the braces are tolerated; values are inserted as they are (a value that
//! itself contains `{{x}}` is not expanded again); `{{customer.name}}` reaches into nested
//! metadata; non-string values are rendered as JSON text; a key with no value (absent or null)
//! and no default renders empty and is reported as missing; anything that is not a well-formed
//! placeholder is left exactly as typed.

use std::collections::BTreeMap;

use serde_json::Value;

/// The values a template can use: the call's metadata, then the built-ins.
pub struct TemplateVars<'a> {
    metadata: Option<&'a Value>,
    builtins: BTreeMap<&'static str, String>,
}

/// A rendered text and the keys that had neither a value nor a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub missing: Vec<String>,
}

/// Facts about the call available to every template without metadata.
#[derive(Debug, Clone, Default)]
pub struct CallFacts {
    pub call_id: String,
    pub to_number: String,
    pub from_number: String,
    /// The instant the texts are rendered (normally "now").
    pub now: Option<time::OffsetDateTime>,
}

impl<'a> TemplateVars<'a> {
    /// Metadata (a JSON object; anything else is ignored) and the built-ins of `facts`:
    /// `call_id`, `to_number`, `from_number`, `current_date` (YYYY-MM-DD, UTC), `current_time`
    /// (HH:MM, UTC) and `current_datetime` (RFC 3339, UTC). Metadata keys win over built-ins.
    pub fn new(metadata: Option<&'a Value>, facts: &CallFacts) -> Self {
        let now = facts
            .now
            .unwrap_or_else(time::OffsetDateTime::now_utc)
            .to_offset(time::UtcOffset::UTC);
        let mut builtins = BTreeMap::new();
        builtins.insert("call_id", facts.call_id.clone());
        builtins.insert("to_number", facts.to_number.clone());
        builtins.insert("from_number", facts.from_number.clone());
        builtins.insert(
            "current_date",
            format!(
                "{:04}-{:02}-{:02}",
                now.year(),
                u8::from(now.month()),
                now.day()
            ),
        );
        builtins.insert(
            "current_time",
            format!("{:02}:{:02}", now.hour(), now.minute()),
        );
        builtins.insert(
            "current_datetime",
            now.replace_nanosecond(0)
                .unwrap_or(now)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        );
        Self {
            metadata: metadata.filter(|m| m.is_object()),
            builtins,
        }
    }

    /// The value of a (possibly dotted) key, as text; `None` when absent or null.
    fn lookup(&self, key: &str) -> Option<String> {
        if let Some(metadata) = self.metadata {
            // A literal key containing dots wins over a nested path.
            let found = metadata.get(key).or_else(|| {
                key.split('.')
                    .try_fold(metadata, |node, part| node.get(part))
            });
            match found {
                Some(Value::Null) | None => {}
                Some(Value::String(s)) => return Some(s.clone()),
                Some(other) => return Some(other.to_string()),
            }
        }
        self.builtins.get(key).cloned()
    }
}

/// Fills every placeholder of `template`.
pub fn render(template: &str, vars: &TemplateVars<'_>) -> Rendered {
    let mut text = String::with_capacity(template.len());
    let mut missing: Vec<String> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        text.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match parse_placeholder(after) {
            Some((key, default, consumed)) => {
                match vars.lookup(key) {
                    Some(value) => text.push_str(&value),
                    None => match default {
                        Some(default) => text.push_str(default),
                        None => {
                            if !missing.iter().any(|m| m == key) {
                                missing.push(key.to_owned());
                            }
                        }
                    },
                }
                rest = &after[consumed..];
            }
            None => {
                // Not a placeholder: keep one brace as typed and look again from the next one,
                // so `{{{name}}}` still finds `{{name}}`.
                text.push('{');
                rest = &rest[open + 1..];
            }
        }
    }
    text.push_str(rest);
    Rendered { text, missing }
}

/// Parses `key}}` or `key|default}}` at the start of `s` (just after `{{`). Answers the trimmed
/// key, the trimmed default, and how many bytes were consumed including the closing braces.
fn parse_placeholder(s: &str) -> Option<(&str, Option<&str>, usize)> {
    let close = s.find("}}")?;
    let inner = &s[..close];
    if inner.contains('{') || inner.contains('}') || inner.contains('\n') {
        return None;
    }
    let (key, default) = match inner.split_once('|') {
        Some((key, default)) => (key.trim(), Some(default.trim())),
        None => (inner.trim(), None),
    };
    let valid_key = !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    valid_key.then_some((key, default, close + 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> CallFacts {
        CallFacts {
            call_id: "call-123".into(),
            to_number: "+15550200000".into(),
            from_number: "+15550100000".into(),
            now: Some(time::macros::datetime!(2026-11-22 09:05:07 UTC)),
        }
    }

    fn r(template: &str, metadata: Value) -> Rendered {
        render(template, &TemplateVars::new(Some(&metadata), &facts()))
    }

    #[test]
    fn fills_keys_and_defaults() {
        let m = json!({"name": "John Doe", "company": "Acme Corp", "agent_name": "Sarah"});
        let out = r(
            "Hi {{name}}, this is {{agent_name}} from {{company}}.",
            m.clone(),
        );
        assert_eq!(out.text, "Hi John Doe, this is Sarah from Acme Corp.");
        assert!(out.missing.is_empty());
        let out = r("Hello {{name|there}}, welcome to {{shop|our service}}!", m);
        assert_eq!(out.text, "Hello John Doe, welcome to our service!");
        assert!(out.missing.is_empty(), "a default is not missing");
    }

    #[test]
    fn tolerates_spaces_inside_braces() {
        let m = json!({"name": "Asha"});
        assert_eq!(
            r("{{ name }}|{{  name|x }}|{{ nick | dear friend }}", m).text,
            "Asha|Asha|dear friend"
        );
    }

    #[test]
    fn values_are_not_expanded_again() {
        let m = json!({"name": "{{secret}}", "secret": "leak"});
        assert_eq!(r("Hi {{name}}", m).text, "Hi {{secret}}");
    }

    #[test]
    fn nested_and_non_string_values() {
        let m = json!({
            "customer": {"name": "Ravi", "tier": {"level": 3}},
            "balance": 12.5, "vip": true, "tags": ["a", "b"], "none": null, "dotted.key": "lit"
        });
        let out = r(
            "{{customer.name}} {{customer.tier.level}} {{balance}} {{vip}} {{tags}} {{dotted.key}} {{customer}}",
            m,
        );
        assert_eq!(
            out.text,
            r#"Ravi 3 12.5 true ["a","b"] lit {"name":"Ravi","tier":{"level":3}}"#
        );
    }

    #[test]
    fn missing_keys_render_empty_and_are_listed_once() {
        let m = json!({"none": null});
        let out = r("A{{x}}B{{none}}C{{x}}D{{y.z}}", m);
        assert_eq!(out.text, "ABCD");
        assert_eq!(out.missing, ["x", "none", "y.z"]);
    }

    #[test]
    fn malformed_braces_are_left_as_typed() {
        let m = json!({"name": "N"});
        for (input, output) in [
            ("{{name", "{{name"),
            ("name}}", "name}}"),
            ("{{}}", "{{}}"),
            ("{{ }}", "{{ }}"),
            ("{name}", "{name}"),
            ("{{na me}}", "{{na me}}"),
            ("{{{name}}}", "{N}"),
            ("{{a{{name}}", "{{aN"),
            ("{{.x}}", "{{.x}}"),
            ("{{|d}}", "{{|d}}"),
            ("}}{{", "}}{{"),
        ] {
            assert_eq!(r(input, m.clone()).text, output, "{input}");
        }
    }

    #[test]
    fn unicode_everywhere() {
        let m = json!({"नाम": "सीता", "name": "Zoë 👋", "city": "München"});
        let out = r(
            "नमस्ते {{नाम}}! Hi {{name}} from {{ city }} — {{country|Deutschland}} ✓",
            m,
        );
        assert_eq!(
            out.text,
            "नमस्ते सीता! Hi Zoë 👋 from München — Deutschland ✓"
        );
    }

    #[test]
    fn builtins_without_metadata_and_metadata_wins() {
        let vars = TemplateVars::new(None, &facts());
        let out = render(
            "{{call_id}} {{to_number}} {{from_number}} {{current_date}} {{current_time}} {{current_datetime}}",
            &vars,
        );
        assert_eq!(
            out.text,
            "call-123 +15550200000 +15550100000 2026-11-22 09:05 2026-11-22T09:05:07Z"
        );
        let out = r("{{call_id}}", json!({"call_id": "mine"}));
        assert_eq!(out.text, "mine");
    }

    #[test]
    fn non_object_metadata_is_ignored() {
        let out = render(
            "{{name|x}}",
            &TemplateVars::new(Some(&json!(["name"])), &facts()),
        );
        assert_eq!(out.text, "x");
    }
}
