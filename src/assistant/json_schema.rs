//! Structural check of a tool's `parameters` JSON Schema, the subset LLM function calling uses.
//! A schema the model cannot read fails the whole chat request at call time, so it is refused at
//! the API instead: keyword values must have the types the JSON Schema spec gives them.

use serde_json::Value;

use crate::validation::Violations;

const TYPES: [&str; 7] = [
    "string", "number", "integer", "boolean", "array", "object", "null",
];

/// Checks a function's `parameters`: an object schema, as every LLM tool API requires.
pub fn check_parameters_schema(schema: &Value, field: &str, v: &mut Violations) {
    let Some(object) = schema.as_object() else {
        v.add(field, "must be a JSON Schema object");
        return;
    };
    if object.get("type") != Some(&Value::String("object".into())) {
        v.add(
            format!("{field}.type"),
            "must be \"object\" (function parameters are an object)",
        );
    }
    check_schema(schema, field, v);
}

fn check_schema(schema: &Value, path: &str, v: &mut Violations) {
    let object = match schema {
        Value::Bool(_) => return,
        Value::Object(o) => o,
        _ => {
            v.add(path, "must be a schema (an object or a boolean)");
            return;
        }
    };
    for (keyword, value) in object {
        let at = format!("{path}.{keyword}");
        match keyword.as_str() {
            "type" => check_type(value, &at, v),
            "properties" | "$defs" | "definitions" | "patternProperties" => match value.as_object()
            {
                Some(props) => {
                    for (name, sub) in props {
                        check_schema(sub, &format!("{at}.{name}"), v);
                    }
                }
                None => v.add(at, "must be an object of schemas"),
            },
            "items"
            | "additionalProperties"
            | "not"
            | "contains"
            | "propertyNames"
            | "additionalItems"
            | "if"
            | "then"
            | "else" => match value {
                Value::Array(items) if keyword == "items" => {
                    for (i, sub) in items.iter().enumerate() {
                        check_schema(sub, &format!("{at}[{i}]"), v);
                    }
                }
                _ => check_schema(value, &at, v),
            },
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => match value.as_array() {
                Some(items) if !items.is_empty() => {
                    for (i, sub) in items.iter().enumerate() {
                        check_schema(sub, &format!("{at}[{i}]"), v);
                    }
                }
                _ => v.add(at, "must be a non-empty array of schemas"),
            },
            "required" => check_required(value, object.get("properties"), &at, v),
            "enum" => require(
                value.as_array().is_some_and(|a| !a.is_empty()),
                at,
                "must be a non-empty array",
                v,
            ),
            "description" | "title" | "pattern" | "format" | "$ref" | "$schema" | "$id"
            | "$comment" => require(value.is_string(), at, "must be a string", v),
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf" => {
                require(value.is_number(), at, "must be a number", v)
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties"
            | "maxProperties" => require(value.is_u64(), at, "must be a non-negative integer", v),
            "uniqueItems" | "readOnly" | "writeOnly" | "deprecated" => {
                require(value.is_boolean(), at, "must be a boolean", v)
            }
            // Unknown keywords are annotations in JSON Schema; models ignore them too.
            _ => {}
        }
    }
}

fn require(ok: bool, at: String, message: &str, v: &mut Violations) {
    if !ok {
        v.add(at, message);
    }
}

fn check_type(value: &Value, at: &str, v: &mut Violations) {
    let known = |t: &Value| t.as_str().is_some_and(|s| TYPES.contains(&s));
    let ok = match value {
        Value::String(_) => known(value),
        Value::Array(items) => !items.is_empty() && items.iter().all(known),
        _ => false,
    };
    if !ok {
        v.add(
            at,
            format!("must be one of {} (or an array of them)", TYPES.join(", ")),
        );
    }
}

fn check_required(value: &Value, properties: Option<&Value>, at: &str, v: &mut Violations) {
    let Some(names) = value.as_array() else {
        v.add(at, "must be an array of property names");
        return;
    };
    let mut seen = std::collections::HashSet::new();
    for name in names {
        let Some(name) = name.as_str() else {
            v.add(at, "must be an array of property names");
            return;
        };
        if !seen.insert(name) {
            v.add(at, format!("names {name:?} twice"));
        }
        if let Some(props) = properties.and_then(Value::as_object)
            && !props.contains_key(name)
        {
            v.add(at, format!("names {name:?}, which is not in properties"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(schema: Value) -> Vec<String> {
        let mut v = Violations::new();
        check_parameters_schema(&schema, "p", &mut v);
        v.into_result()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    }

    #[test]
    fn accepts_a_typical_function_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "date": {"type": "string", "description": "ISO date", "format": "date"},
                "party": {"type": "integer", "minimum": 1, "maximum": 20},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                "note": {"type": ["string", "null"]}
            },
            "required": ["date"],
            "additionalProperties": false
        });
        assert!(errors(schema).is_empty());
    }

    #[test]
    fn refuses_broken_schemas() {
        assert_eq!(errors(json!([])), ["p: must be a JSON Schema object"]);
        assert_eq!(
            errors(json!({"type": "string"})),
            ["p.type: must be \"object\" (function parameters are an object)"]
        );
        let e = errors(json!({"type": "object", "properties": {"a": {"type": "text"}}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("p.properties.a.type"), "{e:?}");
        let e = errors(
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}),
        );
        assert_eq!(e, ["p.required: names \"b\", which is not in properties"]);
        let e = errors(json!({"type": "object", "properties": 3}));
        assert_eq!(e, ["p.properties: must be an object of schemas"]);
        let e = errors(
            json!({"type": "object", "properties": {"a": {"type": "string", "minLength": -1}}}),
        );
        assert_eq!(
            e,
            ["p.properties.a.minLength: must be a non-negative integer"]
        );
    }
}
