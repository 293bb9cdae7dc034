//! Reading v1 requests the way the seed's FastAPI/pydantic service does: a body field may be
//! sent in camelCase or snake_case (the seed shows both), every broken rule is reported with
//! pydantic's own wording under the name the client used, and the query of `get-all` is read
//! the same way. Unlike pydantic's default, an unknown field is refused ("Extra inputs are not
//! permitted", pydantic's wording for it) so that a typo is not silently dropped; a `null` is
//! the same as leaving the field out.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::{Map, Value};

use super::wrapper::V1Error;
use crate::assistant::v1::{AssistantType, WorkflowType};
use crate::validation::has_control_characters;

/// Most ids in `mcpIds` or `extensionIds` (each tool is offered to the model on every turn).
pub const MAX_IDS: usize = 32;
/// Longest id in those lists.
const MAX_ID_CHARS: usize = 100;

/// A v1 JSON body, read but not yet checked. Unlike the server's other routes, a body that is
/// not JSON at all is still answered in the wrapper.
pub struct V1Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for V1Body {
    type Rejection = V1Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, V1Error> {
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
            return Err(V1Error::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                V1Error::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body is larger than the server accepts",
                )
            } else {
                V1Error::new(
                    StatusCode::BAD_REQUEST,
                    format!("Could not read the request body: {rejection}"),
                )
            }
        })?;
        Ok(V1Body(bytes))
    }
}

/// A field a body may hold: its camelCase and snake_case names.
pub type FieldName = (&'static str, &'static str);

/// A body's fields, taken one by one with their rules; broken rules are collected.
pub struct Fields {
    /// camelCase name → (the name as sent, the value); nulls are left out.
    given: Map<String, Value>,
    sent_as: Map<String, Value>,
    errors: Vec<(String, String)>,
    extra: Vec<(String, String)>,
}

impl Fields {
    /// Reads `bytes` as a JSON object whose keys must be among `allowed`.
    pub fn parse(bytes: &[u8], allowed: &[FieldName]) -> Result<Self, V1Error> {
        let document: Value = serde_json::from_slice(bytes)
            .map_err(|e| V1Error::field("body", format!("JSON decode error ({e})")))?;
        let Value::Object(object) = document else {
            return Err(V1Error::field(
                "body",
                "Input should be a valid dictionary or object to extract fields from",
            ));
        };
        let mut fields = Self {
            given: Map::new(),
            sent_as: Map::new(),
            errors: Vec::new(),
            extra: Vec::new(),
        };
        for (key, value) in object {
            let Some((camel, _)) = allowed
                .iter()
                .find(|(camel, snake)| key == *camel || key == *snake)
            else {
                fields
                    .extra
                    .push((key, "Extra inputs are not permitted".to_owned()));
                continue;
            };
            if let Some(Value::String(first)) = fields.sent_as.get(*camel) {
                let first = first.clone();
                fields.errors.push((
                    key.clone(),
                    format!("Field given twice (as \"{first}\" and \"{key}\")"),
                ));
                continue;
            }
            fields
                .sent_as
                .insert((*camel).to_owned(), Value::String(key.clone()));
            if !value.is_null() {
                fields.given.insert((*camel).to_owned(), value);
            }
        }
        Ok(fields)
    }

    /// The name the client used for `camel` (camelCase when absent, as pydantic's alias).
    fn name(&self, camel: &str) -> String {
        self.sent_as
            .get(camel)
            .and_then(Value::as_str)
            .unwrap_or(camel)
            .to_owned()
    }

    fn fail(&mut self, camel: &str, message: impl Into<String>) {
        let name = self.name(camel);
        self.errors.push((name, message.into()));
    }

    /// Adds a broken rule found outside this reader (an unknown provider, a foreign id).
    pub fn reject(&mut self, field: FieldName, message: impl Into<String>) {
        self.fail(field.0, message);
    }

    /// Whether the client sent this field with a value.
    pub fn has(&self, field: FieldName) -> bool {
        self.given.contains_key(field.0)
    }

    /// A required text of `min..=max` characters.
    pub fn required_text(&mut self, field: FieldName, min: usize, max: usize) -> Option<String> {
        if !self.has(field) {
            self.fail(field.0, "Field required");
            return None;
        }
        self.text(field, min, max)
    }

    /// An optional text of `min..=max` characters.
    pub fn text(&mut self, field: FieldName, min: usize, max: usize) -> Option<String> {
        let value = self.given.get(field.0)?.clone();
        let checked = check_text(&value, min, max);
        checked.map_err(|why| self.fail(field.0, why)).ok()
    }

    /// An optional number in `min..=max`.
    pub fn number(&mut self, field: FieldName, min: f64, max: f64) -> Option<f64> {
        let value = self.given.get(field.0)?;
        let Some(n) = value.as_f64().filter(|_| value.is_number()) else {
            self.fail(field.0, "Input should be a valid number");
            return None;
        };
        if n < min {
            self.fail(
                field.0,
                format!("Input should be greater than or equal to {min}"),
            );
            return None;
        }
        if n > max {
            self.fail(
                field.0,
                format!("Input should be less than or equal to {max}"),
            );
            return None;
        }
        Some(n)
    }

    /// An optional boolean.
    pub fn boolean(&mut self, field: FieldName) -> Option<bool> {
        let value = self.given.get(field.0)?;
        match value.as_bool() {
            Some(b) => Some(b),
            None => {
                self.fail(field.0, "Input should be a valid boolean");
                None
            }
        }
    }

    /// An optional list of `WorkflowType`s, each at most once.
    pub fn workflow_types(&mut self, field: FieldName) -> Option<Vec<WorkflowType>> {
        let items = self.list(field)?;
        let mut units = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item.as_str().and_then(WorkflowType::parse) {
                Some(unit) if units.contains(&unit) => {
                    ok = false;
                    self.item_error(field, i, format!("Duplicate item {item}"));
                }
                Some(unit) => units.push(unit),
                None => {
                    ok = false;
                    self.item_error(field, i, workflow_type_expected());
                }
            }
        }
        ok.then_some(units)
    }

    /// An optional list of distinct ids (at most [`MAX_IDS`]).
    pub fn ids(&mut self, field: FieldName) -> Option<Vec<String>> {
        let items = self.list(field)?;
        if items.len() > MAX_IDS {
            self.fail(
                field.0,
                format!(
                    "List should have at most {MAX_IDS} items after validation, not {}",
                    items.len()
                ),
            );
            return None;
        }
        let mut ids: Vec<String> = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match check_text(item, 1, MAX_ID_CHARS) {
                Ok(id) if ids.contains(&id) => {
                    ok = false;
                    self.item_error(field, i, format!("Duplicate item {item}"));
                }
                Ok(id) => ids.push(id),
                Err(why) => {
                    ok = false;
                    self.item_error(field, i, why);
                }
            }
        }
        ok.then_some(ids)
    }

    fn list(&mut self, field: FieldName) -> Option<Vec<Value>> {
        match self.given.get(field.0)? {
            Value::Array(items) => Some(items.clone()),
            _ => {
                self.fail(field.0, "Input should be a valid list");
                None
            }
        }
    }

    fn item_error(&mut self, field: FieldName, index: usize, message: String) {
        let name = format!("{}.{index}", self.name(field.0));
        self.errors.push((name, message));
    }

    /// Every broken rule so far, field errors first, then unknown fields.
    pub fn finish(mut self) -> Result<(), V1Error> {
        self.errors.append(&mut self.extra);
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(V1Error::validation(&self.errors))
        }
    }
}

/// A JSON string of `min..=max` characters without control characters, or pydantic's reason.
fn check_text(value: &Value, min: usize, max: usize) -> Result<String, String> {
    let Some(text) = value.as_str() else {
        return Err("Input should be a valid string".to_owned());
    };
    let n = text.chars().count();
    let plural = |n: usize| if n == 1 { "character" } else { "characters" };
    if n < min {
        return Err(format!("String should have at least {min} {}", plural(min)));
    }
    if n > max {
        return Err(format!("String should have at most {max} {}", plural(max)));
    }
    if has_control_characters(text) {
        return Err("String should not contain control characters".to_owned());
    }
    Ok(text.to_owned())
}

/// pydantic's message for a value outside an enum: `Input should be 'a', 'b' or 'c'`.
fn enum_expected(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.split_last() {
        Some((last, [])) => format!("Input should be {last}"),
        Some((last, rest)) => format!("Input should be {} or {last}", rest.join(", ")),
        None => "Input should be a valid enumeration member".to_owned(),
    }
}

fn workflow_type_expected() -> String {
    let names: Vec<&str> = WorkflowType::ALL.iter().map(|w| w.as_str()).collect();
    enum_expected(&names)
}

/// The query of `GET /get-all`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub assistant_type: Option<AssistantType>,
    pub page_number: i64,
    pub max_per_page: i64,
}

/// Reads `assistant_type`, `page_number` (≥ 1, default 1) and `max_per_page` (1-100, default
/// 10), in snake_case or camelCase; other parameters are ignored, as FastAPI does.
pub fn list_query(raw: Option<&str>) -> Result<ListQuery, V1Error> {
    let mut query = ListQuery {
        assistant_type: None,
        page_number: 1,
        max_per_page: 10,
    };
    let mut errors = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "assistant_type" | "assistantType" => match AssistantType::parse(&value) {
                Some(kind) => query.assistant_type = Some(kind),
                None => {
                    let names: Vec<&str> = AssistantType::ALL.iter().map(|t| t.as_str()).collect();
                    errors.push((key.into_owned(), enum_expected(&names)));
                }
            },
            "page_number" | "pageNumber" => match integer_in(&value, 1, None) {
                Ok(n) => query.page_number = n,
                Err(why) => errors.push((key.into_owned(), why)),
            },
            "max_per_page" | "maxPerPage" => match integer_in(&value, 1, Some(100)) {
                Ok(n) => query.max_per_page = n,
                Err(why) => errors.push((key.into_owned(), why)),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(V1Error::validation(&errors))
    }
}

fn integer_in(text: &str, min: i64, max: Option<i64>) -> Result<i64, String> {
    let n: i64 = text.trim().parse().map_err(|_| {
        "Input should be a valid integer, unable to parse string as an integer".to_owned()
    })?;
    if n < min {
        return Err(format!("Input should be greater than or equal to {min}"));
    }
    if let Some(max) = max
        && n > max
    {
        return Err(format!("Input should be less than or equal to {max}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: FieldName = ("name", "name");
    const PROMPT: FieldName = ("systemPrompt", "system_prompt");
    const UNITS: FieldName = ("supportUnits", "support_units");

    fn message(result: Result<(), V1Error>) -> String {
        result.unwrap_err().message
    }

    #[test]
    fn messages_read_like_pydantic() {
        let mut f = Fields::parse(br#"{"name": "ab"}"#, &[NAME, PROMPT]).unwrap();
        f.required_text(NAME, 3, 100);
        f.required_text(PROMPT, 3, 5000);
        assert_eq!(
            message(f.finish()),
            "Validation error - \"name\": String should have at least 3 characters; \
             \"systemPrompt\": Field required"
        );
    }

    #[test]
    fn camel_and_snake_case_are_both_read_and_named_as_sent() {
        let mut f = Fields::parse(br#"{"system_prompt": "x"}"#, &[PROMPT]).unwrap();
        assert_eq!(f.text(PROMPT, 1, 10).as_deref(), Some("x"));
        let mut f = Fields::parse(br#"{"system_prompt": 3}"#, &[PROMPT]).unwrap();
        f.text(PROMPT, 1, 10);
        assert_eq!(
            message(f.finish()),
            "Validation error - \"system_prompt\": Input should be a valid string"
        );
        let f = Fields::parse(br#"{"systemPrompt": "a", "system_prompt": "b"}"#, &[PROMPT]);
        assert!(message(f.unwrap().finish()).contains("given twice"));
    }

    #[test]
    fn unknown_fields_enums_and_bad_json_are_refused() {
        let f = Fields::parse(br#"{"nmae": "x"}"#, &[NAME]).unwrap();
        assert_eq!(
            message(f.finish()),
            "Validation error - \"nmae\": Extra inputs are not permitted"
        );
        let mut f = Fields::parse(br#"{"supportUnits": ["ragbot", "x"]}"#, &[UNITS]).unwrap();
        assert_eq!(f.workflow_types(UNITS), None);
        assert_eq!(
            message(f.finish()),
            "Validation error - \"supportUnits.1\": Input should be 'chatbot', 'ragbot', \
             'searchbot', 'sequential', 'hierarchical' or 'workflow'"
        );
        assert!(
            Fields::parse(b"{nope", &[NAME])
                .err()
                .unwrap()
                .message
                .starts_with("Validation error - \"body\": JSON decode error")
        );
    }

    #[test]
    fn the_list_query_has_bounds_and_defaults() {
        assert_eq!(
            list_query(None).unwrap(),
            ListQuery {
                assistant_type: None,
                page_number: 1,
                max_per_page: 10
            }
        );
        let q = list_query(Some(
            "assistant_type=general_assistant&pageNumber=2&max_per_page=5",
        ))
        .unwrap();
        assert_eq!(q.assistant_type, Some(AssistantType::GeneralAssistant));
        assert_eq!((q.page_number, q.max_per_page), (2, 5));
        assert_eq!(
            list_query(Some("page_number=0")).unwrap_err().message,
            "Validation error - \"page_number\": Input should be greater than or equal to 1"
        );
        assert_eq!(
            list_query(Some("max_per_page=101")).unwrap_err().message,
            "Validation error - \"max_per_page\": Input should be less than or equal to 100"
        );
        assert!(
            list_query(Some("assistant_type=x"))
                .unwrap_err()
                .message
                .contains("Input should be 'general_assistant' or 'advanced_assistant'")
        );
    }
}
