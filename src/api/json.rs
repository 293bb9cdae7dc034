//! The JSON body extractor for every REST route. Unlike axum's own, it answers every bad body with
//! the envelope: malformed JSON and wrong types are 400s naming the field, an unknown field is a
//! 400 (a typo must not be silently ignored), an oversized body is a 413, a non-JSON one a 415.
//! A control character (NUL, escape...) in any string is a 400 naming its field, on every route
//! at once: no text field wants one, and PostgreSQL cannot store NUL.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::validation::{FieldError, has_control_characters};

/// A JSON request body (an object), deserialised with the field path of any error kept.
pub struct ApiJson<T>(pub T);

/// A JSON request body that is an array (a bulk upsert), with the same checks as [`ApiJson`].
pub struct ApiJsonArray<T>(pub Vec<T>);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse(&json_body(req, state).await?).map(ApiJson)
    }
}

impl<S, T> FromRequest<S> for ApiJsonArray<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_array(&json_body(req, state).await?).map(ApiJsonArray)
    }
}

/// The body of a request declared as JSON.
async fn json_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(
            "Expected a JSON body with Content-Type: application/json".to_owned(),
        ));
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("Request body is larger than the server accepts".to_owned())
        } else {
            ApiError::BadRequest(format!("Could not read the request body: {rejection}"))
        }
    })
}

/// Deserialises `bytes` (an object), naming the offending field on failure.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Serde would otherwise accept `[..]` for a struct.
    expect_document(bytes, b'{', "must be a JSON object")?;
    parse_document(bytes)
}

/// Deserialises `bytes` (an array), naming the offending element and field on failure.
pub fn parse_array<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, ApiError> {
    expect_document(bytes, b'[', "must be a JSON array")?;
    parse_document(bytes)
}

/// Refuses valid JSON that does not open with `open` (malformed JSON is reported as such).
fn expect_document(bytes: &[u8], open: u8, rule: &str) -> Result<(), ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != open)
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(ApiError::Invalid(vec![FieldError {
            field: "body".to_owned(),
            message: rule.to_owned(),
        }]));
    }
    Ok(())
}

fn parse_document<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: &serde_json::Error| {
        ApiError::Invalid(vec![FieldError {
            field: "body".to_owned(),
            message: format!("is not valid JSON: {e}"),
        }])
    };
    // JSON escapes (`\u0000`) are the only way a control character gets into a string, and
    // only a parsed document shows where it is.
    if bytes.windows(2).any(|w| w == b"\\u")
        && let Ok(document) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(field) = control_character_at(&document, &mut Vec::new())
    {
        return Err(ApiError::Invalid(vec![FieldError {
            field,
            message: "must not contain control characters (only tab and line breaks)".to_owned(),
        }]));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let inner = err.inner();
        if inner.is_syntax() || inner.is_eof() {
            return malformed(inner);
        }
        let path = err.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::Invalid(vec![FieldError {
            field,
            message: inner.to_string(),
        }])
    })?;
    // Trailing garbage after the document is malformed JSON too.
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// The path of the first string (value or key) in `value` that holds a control character.
fn control_character_at(value: &serde_json::Value, path: &mut Vec<String>) -> Option<String> {
    use serde_json::Value;
    let here = |path: &[String]| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.join(".")
        }
    };
    match value {
        Value::String(text) if has_control_characters(text) => Some(here(path)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            path.push(i.to_string());
            let found = control_character_at(item, path);
            path.pop();
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            path.push(key.clone());
            let found = if has_control_characters(key) {
                Some(here(path))
            } else {
                control_character_at(item, path)
            };
            path.pop();
            found
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: Option<String>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn error_of(json: &str) -> FieldError {
        match parse::<Body>(json.as_bytes()) {
            Err(ApiError::Invalid(mut errors)) => errors.remove(0),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field_of_a_type_error() {
        let e = error_of(r#"{"inner": {"count": "three"}}"#);
        assert_eq!(e.field, "inner.count");
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }

    #[test]
    fn malformed_json_and_trailing_garbage_are_body_errors() {
        assert_eq!(error_of(r#"{"name": "#).field, "body");
        assert_eq!(error_of(r#"{"name": "a"} x"#).field, "body");
        assert_eq!(error_of("").field, "body");
    }

    #[test]
    fn control_characters_are_refused_where_they_are() {
        let e = error_of(r#"{"name": "a\u0000b"}"#);
        assert_eq!(e.field, "name");
        assert!(e.message.contains("control characters"), "{}", e.message);
        let e = error_of(r#"{"inner": {"count": 1, "x\u001b": 2}}"#);
        assert_eq!(e.field, "inner.x\u{1b}");
        assert!(parse::<Body>(br#"{"name": "tab\there\nand \\u0000 as text"}"#).is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = error_of(r#"{"nmae": "a"}"#);
        assert!(e.message.contains("unknown field `nmae`"), "{}", e.message);
    }
}
