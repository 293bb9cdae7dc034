//! `response_format`, checked the way the real Chat Completions API checks it: plain text, JSON
//! mode (`json_object`, which needs the word "json" somewhere in the messages) or Structured
//! Outputs (`json_schema` with a name, a schema and an optional `strict`). With `strict: true`
//! the schema must stay inside the subset OpenAI can enforce while decoding: an object at the
//! root, `additionalProperties: false` and every property `required` on every object, a `type`
//! on every schema, no `allOf`/`oneOf`/`not`/`if`/`then`/`else`/`dependent*`/`uniqueItems`.
//! Refusals use OpenAI's wording: `Invalid schema for response_format '<name>': In
//! context=('properties', 'x'), ...` with `param: "response_format"`.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ordered::Json;
use super::validate::{ApiError, Message, invalid_type, missing};

/// What the answer must look like.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ResponseFormat {
    /// Absent, `null` or `{"type": "text"}`.
    #[default]
    Text,
    /// `{"type": "json_object"}`: any JSON object.
    JsonObject,
    /// `{"type": "json_schema", "json_schema": {...}}`: JSON valid against the schema.
    JsonSchema(JsonSchemaFormat),
}

/// A Structured Outputs request's `json_schema`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonSchemaFormat {
    pub name: String,
    pub description: Option<String>,
    pub strict: bool,
    pub schema: Value,
    /// The same schema with its properties in the order the client wrote them.
    pub(crate) ordered: Json,
}

/// The longest `json_schema.name` OpenAI accepts.
const MAX_NAME_CHARS: usize = 64;

/// Keywords strict mode refuses wherever they appear.
const NOT_PERMITTED: &[&str] = &[
    "allOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "uniqueItems",
];

/// Checks `request["response_format"]`; `body` is the raw request, read again for the order of
/// the schema's properties.
pub(super) fn check(
    request: &Map<String, Value>,
    body: &[u8],
    messages: &[Message],
) -> Result<ResponseFormat, ApiError> {
    let format = match request.get("response_format") {
        None | Some(Value::Null) => return Ok(ResponseFormat::Text),
        Some(Value::Object(format)) => format,
        Some(other) => return Err(invalid_type("response_format", "an object", other)),
    };
    let kind = match format.get("type") {
        None | Some(Value::Null) => return Err(missing("response_format.type")),
        Some(Value::String(kind)) => kind.as_str(),
        Some(other) => return Err(invalid_type("response_format.type", "a string", other)),
    };
    match kind {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => {
            let mentions_json = messages
                .iter()
                .any(|m| m.content.to_lowercase().contains("json"));
            if mentions_json {
                Ok(ResponseFormat::JsonObject)
            } else {
                Err(ApiError::invalid(
                    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                    Some("messages".into()),
                    None,
                ))
            }
        }
        "json_schema" => {
            json_schema(format.get("json_schema"), body).map(ResponseFormat::JsonSchema)
        }
        other => Err(ApiError::invalid(
            format!(
                "Invalid value: '{other}'. Supported values are: 'text', 'json_object', and 'json_schema'."
            ),
            Some("response_format.type".into()),
            Some("invalid_value"),
        )),
    }
}

fn json_schema(value: Option<&Value>, body: &[u8]) -> Result<JsonSchemaFormat, ApiError> {
    const PATH: &str = "response_format.json_schema";
    let format = match value {
        None | Some(Value::Null) => return Err(missing(PATH)),
        Some(Value::Object(format)) => format,
        Some(other) => return Err(invalid_type(PATH, "an object", other)),
    };
    let name_path = format!("{PATH}.name");
    let name = match format.get("name") {
        None | Some(Value::Null) => return Err(missing(&name_path)),
        Some(Value::String(name)) => name.clone(),
        Some(other) => return Err(invalid_type(&name_path, "a string", other)),
    };
    let length = name.chars().count();
    if length > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            format!(
                "Invalid '{name_path}': string too long. Expected a string with maximum length {MAX_NAME_CHARS}, but got a string with length {length} instead."
            ),
            Some(name_path),
            Some("string_above_max_length"),
        ));
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::invalid(
            format!(
                "Invalid '{name_path}': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
            ),
            Some(name_path),
            Some("invalid_value"),
        ));
    }
    let description = match format.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(description)) => Some(description.clone()),
        Some(other) => {
            return Err(invalid_type(
                &format!("{PATH}.description"),
                "a string",
                other,
            ));
        }
    };
    let strict = match format.get("strict") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(strict)) => *strict,
        Some(other) => return Err(invalid_type(&format!("{PATH}.strict"), "a boolean", other)),
    };
    let schema_path = format!("{PATH}.schema");
    let schema = match format.get("schema") {
        None | Some(Value::Null) => return Err(missing(&schema_path)),
        Some(schema @ Value::Object(_)) => schema.clone(),
        Some(other) => return Err(invalid_type(&schema_path, "an object", other)),
    };
    let invalid_schema = |why: String| {
        ApiError::invalid(
            format!("Invalid schema for response_format '{name}': {why}"),
            Some("response_format".into()),
            None,
        )
    };
    if strict && let Some(why) = strict_violation(&schema) {
        return Err(invalid_schema(why));
    }
    // Offline (no default features): a remote `$ref` cannot be fetched and fails here, as it
    // would at OpenAI, which resolves only local references.
    if jsonschema::validator_for(&schema).is_err() {
        return Err(ApiError::invalid(
            format!(
                "Invalid schema for response_format '{name}'. Please ensure it is a valid JSON Schema."
            ),
            Some("response_format".into()),
            None,
        ));
    }
    let ordered = ordered_schema(body).unwrap_or_else(|| Json::from_value(&schema));
    Ok(JsonSchemaFormat {
        name,
        description,
        strict,
        schema,
        ordered,
    })
}

/// The schema read again from the body, keeping the order of its keys.
fn ordered_schema(body: &[u8]) -> Option<Json> {
    #[derive(Deserialize)]
    struct Body {
        response_format: Option<Format>,
    }
    #[derive(Deserialize)]
    struct Format {
        json_schema: Option<Schema>,
    }
    #[derive(Deserialize)]
    struct Schema {
        schema: Option<Json>,
    }
    serde_json::from_slice::<Body>(body)
        .ok()?
        .response_format?
        .json_schema?
        .schema
}

/// The first rule of strict mode the schema breaks, worded as OpenAI words it.
fn strict_violation(schema: &Value) -> Option<String> {
    match schema.get("type") {
        Some(Value::String(kind)) if kind == "object" => {}
        other => {
            let got = match other {
                None | Some(Value::Null) => "None".to_owned(),
                Some(Value::String(kind)) => kind.clone(),
                Some(other) => other.to_string(),
            };
            return Some(format!(
                "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{got}\"'."
            ));
        }
    }
    let mut context = Vec::new();
    strict_node(schema, &mut context)
}

fn strict_node(node: &Value, context: &mut Vec<String>) -> Option<String> {
    let at = |why: &str, context: &[String]| format!("In context={}, {why}", tuple(context));
    let Value::Object(schema) = node else {
        return Some(at("schema must have a 'type' key.", context));
    };
    if let Some(keyword) = NOT_PERMITTED.iter().find(|k| schema.contains_key(**k)) {
        return Some(at(&format!("'{keyword}' is not permitted."), context));
    }
    if !["type", "$ref", "anyOf"]
        .iter()
        .any(|k| schema.contains_key(*k))
    {
        return Some(at("schema must have a 'type' key.", context));
    }
    let is_object = match schema.get("type") {
        Some(Value::String(kind)) => kind == "object",
        Some(Value::Array(kinds)) => kinds.iter().any(|k| k == "object"),
        _ => false,
    } || schema.contains_key("properties");
    if is_object {
        if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Some(at(
                "'additionalProperties' is required to be supplied and to be false.",
                context,
            ));
        }
        let properties: Vec<&String> = schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let rule = "'required' is required to be supplied and to be an array including every key in properties.";
        if let Some(key) = properties.iter().find(|p| !required.contains(&p.as_str())) {
            return Some(at(&format!("{rule} Missing '{key}'."), context));
        }
        if let Some(key) = required
            .iter()
            .find(|r| !properties.iter().any(|p| p == *r))
        {
            return Some(at(
                &format!("{rule} Extra required key '{key}' supplied."),
                context,
            ));
        }
    }
    let mut children: Vec<(Vec<String>, &Value)> = Vec::new();
    for container in ["properties", "$defs", "definitions"] {
        if let Some(Value::Object(members)) = schema.get(container) {
            children.extend(
                members
                    .iter()
                    .map(|(k, v)| (vec![container.to_owned(), k.clone()], v)),
            );
        }
    }
    if let Some(items @ Value::Object(_)) = schema.get("items") {
        children.push((vec!["items".to_owned()], items));
    }
    for list in ["anyOf", "prefixItems"] {
        if let Some(Value::Array(branches)) = schema.get(list) {
            children.extend(
                branches
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (vec![list.to_owned(), i.to_string()], v)),
            );
        }
    }
    for (path, child) in children {
        let depth = context.len();
        context.extend(path);
        let found = strict_node(child, context);
        context.truncate(depth);
        if found.is_some() {
            return found;
        }
    }
    None
}

/// A path as Python prints a tuple of strings: `()`, `('items',)`, `('properties', 'x')`.
fn tuple(path: &[String]) -> String {
    let quoted: Vec<String> = path.iter().map(|p| format!("'{p}'")).collect();
    match quoted.len() {
        1 => format!("({},)", quoted[0]),
        _ => format!("({})", quoted.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::validate::{ValidRequest, validate};
    use super::*;

    fn check_body(body: Value) -> Result<ValidRequest, ApiError> {
        validate(&serde_json::to_vec(&body).unwrap())
    }

    fn with_format(format: Value) -> Value {
        json!({"model": "gpt-4o-mini", "stream": true,
               "messages": [{"role": "system", "content": "Summarise the call."},
                            {"role": "user", "content": "user: hi"}],
               "response_format": format})
    }

    fn schema_format(schema: Value, strict: bool) -> Value {
        with_format(json!({"type": "json_schema",
                           "json_schema": {"name": "call_analysis", "strict": strict, "schema": schema}}))
    }

    fn rejected(body: Value) -> ApiError {
        check_body(body).expect_err("should be rejected")
    }

    fn strict_message(schema: Value) -> String {
        let e = rejected(schema_format(schema, true));
        assert_eq!(e.param.as_deref(), Some("response_format"));
        assert_eq!(e.kind, "invalid_request_error");
        assert_eq!(e.code, None);
        e.message
    }

    fn strict_ok() -> Value {
        json!({"type": "object", "additionalProperties": false,
               "properties": {
                   "summary": {"type": "string"},
                   "data": {"$ref": "#/$defs/data"},
                   "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                   "score": {"anyOf": [{"type": "number"}, {"type": "null"}]}
               },
               "required": ["summary", "data", "tags", "score"],
               "$defs": {"data": {"type": ["object", "null"], "additionalProperties": false,
                                  "properties": {"x": {"type": ["string", "null"]}}, "required": ["x"]}}})
    }

    #[test]
    fn text_and_absent_formats_are_text() {
        let mut body = with_format(json!({"type": "text"}));
        assert_eq!(
            check_body(body.clone()).unwrap().response_format,
            ResponseFormat::Text
        );
        body["response_format"] = Value::Null;
        assert_eq!(
            check_body(body).unwrap().response_format,
            ResponseFormat::Text
        );
    }

    #[test]
    fn json_mode_needs_the_word_json_in_the_messages() {
        let e = rejected(with_format(json!({"type": "json_object"})));
        assert_eq!(
            e.message,
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."
        );
        assert_eq!(e.param.as_deref(), Some("messages"));
        let mut body = with_format(json!({"type": "json_object"}));
        body["messages"][0]["content"] = json!("Answer in JSON.");
        assert_eq!(
            check_body(body).unwrap().response_format,
            ResponseFormat::JsonObject
        );
    }

    #[test]
    fn the_format_and_its_type_are_checked() {
        let e = rejected(with_format(json!("json_object")));
        assert_eq!(
            e.message,
            "Invalid type for 'response_format': expected an object, but got a string instead."
        );
        let e = rejected(with_format(json!({})));
        assert_eq!(e.param.as_deref(), Some("response_format.type"));
        assert_eq!(e.code, Some("missing_required_parameter"));
        let e = rejected(with_format(json!({"type": "xml"})));
        assert_eq!(
            e.message,
            "Invalid value: 'xml'. Supported values are: 'text', 'json_object', and 'json_schema'."
        );
        assert_eq!(e.code, Some("invalid_value"));
    }

    #[test]
    fn json_schema_needs_a_valid_name_and_an_object_schema() {
        let e = rejected(with_format(json!({"type": "json_schema"})));
        assert_eq!(
            e.message,
            "Missing required parameter: 'response_format.json_schema'."
        );
        let schema = json!({"type": "object"});
        let e = rejected(with_format(
            json!({"type": "json_schema", "json_schema": {"schema": schema}}),
        ));
        assert_eq!(e.param.as_deref(), Some("response_format.json_schema.name"));
        let e = rejected(with_format(
            json!({"type": "json_schema", "json_schema": {"name": "call analysis", "schema": schema}}),
        ));
        assert_eq!(
            e.message,
            "Invalid 'response_format.json_schema.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
        );
        let e = rejected(with_format(
            json!({"type": "json_schema", "json_schema": {"name": "a".repeat(65), "schema": schema}}),
        ));
        assert_eq!(e.code, Some("string_above_max_length"));
        assert!(
            check_body(with_format(
                json!({"type": "json_schema", "json_schema": {"name": "a".repeat(64), "schema": schema}})
            ))
            .is_ok()
        );
        let e = rejected(with_format(
            json!({"type": "json_schema", "json_schema": {"name": "x"}}),
        ));
        assert_eq!(
            e.message,
            "Missing required parameter: 'response_format.json_schema.schema'."
        );
        let e = rejected(with_format(
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": "{}"}}),
        ));
        assert_eq!(e.code, Some("invalid_type"));
        let e = rejected(with_format(
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": "yes"}}),
        ));
        assert_eq!(
            e.param.as_deref(),
            Some("response_format.json_schema.strict")
        );
    }

    #[test]
    fn a_schema_that_is_not_json_schema_is_refused() {
        for schema in [
            json!({"type": "objekt"}),
            json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}),
            json!({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}),
        ] {
            let e = rejected(schema_format(schema, false));
            assert_eq!(
                e.message,
                "Invalid schema for response_format 'call_analysis'. Please ensure it is a valid JSON Schema."
            );
        }
    }

    #[test]
    fn a_loose_schema_is_accepted_when_not_strict() {
        // As text: `json!` would sort the keys.
        let body = r#"{"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "call_analysis",
                "schema": {"type": "object", "properties": {"b": {}, "a": {"type": "string"}}, "required": ["a"]}}}}"#;
        let request = validate(body.as_bytes()).unwrap();
        let ResponseFormat::JsonSchema(format) = request.response_format else {
            panic!("not a schema");
        };
        assert_eq!(format.name, "call_analysis");
        assert!(!format.strict);
        let keys: Vec<&str> = format
            .ordered
            .get("properties")
            .unwrap()
            .members()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, ["b", "a"], "the client's order is kept");
    }

    #[test]
    fn strict_mode_accepts_its_subset() {
        assert!(check_body(schema_format(strict_ok(), true)).is_ok());
    }

    #[test]
    fn strict_mode_refuses_what_openai_refuses() {
        assert_eq!(
            strict_message(json!({"type": "array", "items": {"type": "string"}})),
            "Invalid schema for response_format 'call_analysis': schema must be a JSON Schema of 'type: \"object\"', got 'type: \"array\"'."
        );
        assert!(
            strict_message(json!({"anyOf": [{"type": "object"}]}))
                .ends_with("got 'type: \"None\"'.")
        );
        assert_eq!(
            strict_message(
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
            ),
            "Invalid schema for response_format 'call_analysis': In context=(), 'additionalProperties' is required to be supplied and to be false."
        );
        assert_eq!(
            strict_message(json!({"type": "object", "additionalProperties": false,
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"]})),
            "Invalid schema for response_format 'call_analysis': In context=(), 'required' is required to be supplied and to be an array including every key in properties. Missing 'b'."
        );
        assert!(
            strict_message(json!({"type": "object", "additionalProperties": false,
                "properties": {}, "required": ["ghost"]}))
            .ends_with("Extra required key 'ghost' supplied.")
        );
        let mut nested = strict_ok();
        nested["properties"]["tags"]["items"] =
            json!({"type": "object", "properties": {"t": {"type": "string"}}, "required": ["t"]});
        assert_eq!(
            strict_message(nested),
            "Invalid schema for response_format 'call_analysis': In context=('properties', 'tags', 'items'), 'additionalProperties' is required to be supplied and to be false."
        );
        let mut untyped = strict_ok();
        untyped["properties"]["summary"] = json!({"description": "anything"});
        assert!(
            strict_message(untyped)
                .ends_with("In context=('properties', 'summary'), schema must have a 'type' key.")
        );
        let mut one_of = strict_ok();
        one_of["properties"]["score"] = json!({"oneOf": [{"type": "number"}, {"type": "null"}]});
        assert!(
            strict_message(one_of)
                .ends_with("In context=('properties', 'score'), 'oneOf' is not permitted.")
        );
        let mut in_defs = strict_ok();
        in_defs["$defs"]["data"]["required"] = json!([]);
        assert!(strict_message(in_defs).contains("In context=('$defs', 'data'), 'required'"));
        let mut in_any_of = strict_ok();
        in_any_of["properties"]["score"]["anyOf"][0] = json!({"type": "number", "allOf": []});
        assert!(strict_message(in_any_of).contains(
            "In context=('properties', 'score', 'anyOf', '0'), 'allOf' is not permitted."
        ));
    }

    #[test]
    fn contexts_print_like_python_tuples() {
        assert_eq!(tuple(&[]), "()");
        assert_eq!(tuple(&["items".into()]), "('items',)");
        assert_eq!(
            tuple(&["properties".into(), "x".into()]),
            "('properties', 'x')"
        );
    }
}
