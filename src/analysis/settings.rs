//! `assistant_analysis`: what an assistant wants to know about each finished conversation. The
//! owner's schema is compiled when the assistant is saved, so a schema the validator cannot use
//! is a 400 then, not a failed analysis after every call.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::validation::Violations;

/// Largest structured-data schema, serialised (it goes into every analysis request).
pub const MAX_SCHEMA_BYTES: usize = 16 * 1024;
/// Longest success criteria text.
pub const MAX_CRITERIA_CHARS: usize = 2_000;

/// What to work out once a call or chat has ended. Every part is optional; none means no
/// analysis runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisSettings {
    /// Write a short summary of the conversation.
    pub summary: bool,
    /// A JSON Schema object (draft 2020-12) the extracted data must match.
    #[schema(value_type = Option<Object>)]
    pub structured_data_schema: Option<Value>,
    /// What a successful conversation achieves, in words; the verdict is a boolean.
    pub success_criteria: Option<String>,
}

impl AnalysisSettings {
    /// Whether there is anything to analyse.
    pub fn is_empty(&self) -> bool {
        !self.summary && self.structured_data_schema.is_none() && self.success_criteria.is_none()
    }

    pub fn validate(&self, field: &str, v: &mut Violations) {
        if let Some(schema) = &self.structured_data_schema
            && let Err(why) = check_schema(schema)
        {
            v.add(format!("{field}.structured_data_schema"), why);
        }
        if let Some(criteria) = &self.success_criteria {
            if criteria.trim().is_empty() {
                v.add(
                    format!("{field}.success_criteria"),
                    "must not be empty when given",
                );
            } else {
                v.char_length(
                    &format!("{field}.success_criteria"),
                    criteria,
                    1,
                    MAX_CRITERIA_CHARS,
                );
            }
        }
    }
}

/// An object schema the validator compiles, without references to other documents.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let Some(object) = schema.as_object() else {
        return Err("must be a JSON Schema object".to_owned());
    };
    if object.get("type").and_then(Value::as_str) != Some("object") {
        return Err("must describe an object (\"type\": \"object\")".to_owned());
    }
    if schema.to_string().len() > MAX_SCHEMA_BYTES {
        return Err(format!("must be at most {MAX_SCHEMA_BYTES} bytes"));
    }
    // Built without network or file resolution: a remote `$ref` fails here, at save time.
    jsonschema::draft202012::new(schema)
        .map(drop)
        .map_err(|e| format!("is not a valid JSON Schema: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_are_compiled_when_saved() {
        let good = json!({"type": "object", "properties": {"order": {"type": "string"}}});
        assert!(check_schema(&good).is_ok());
        for bad in [
            json!("object"),
            json!({"type": "string"}),
            json!({"type": "object", "properties": {"x": {"type": "strnig"}}}),
            json!({"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}}),
            json!({"type": "object", "properties": {"x": {"pattern": "("}}}),
        ] {
            assert!(check_schema(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_name_the_broken_part() {
        let settings = AnalysisSettings {
            summary: true,
            structured_data_schema: Some(json!({"type": "array"})),
            success_criteria: Some("  ".into()),
        };
        let mut v = Violations::new();
        settings.validate("assistant_analysis", &mut v);
        let fields: Vec<String> = v
            .into_result()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "assistant_analysis.structured_data_schema",
                "assistant_analysis.success_criteria"
            ]
        );
        assert!(AnalysisSettings::default().is_empty());
    }
}
