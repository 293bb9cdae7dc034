//! The fake model's structured answers: JSON made from the request's schema and filled from
//! the conversation (see the script module's doc for the rules).
//!
//! Generation walks the schema: objects get every property in the schema's order, arrays
//! their named items or `minItems` placeholders, strings/numbers/booleans what the transcript
//! says when it fits the schema's constraints, `enum`s the value the user named, `anyOf`/
//! `oneOf` the first branch that finds something (else `null` when allowed, else the first
//! branch that validates), `const` itself, `$ref` the local definition it points to (`#`,
//! `#/$defs/…`, `#/definitions/…`), `allOf` its parts merged. Every leaf value is checked
//! against its own schema with the `jsonschema` crate before it is used, and the whole answer
//! against the whole schema before it is sent.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Number, Value};

use super::ordered::Json;
use super::response_format::JsonSchemaFormat;
use super::script::Extract;
use super::transcript::{Finder, Transcript, clip, named_choice};

/// Deeper than this (a recursive schema that never bottoms out) the answer is `null`.
const MAX_DEPTH: usize = 32;
/// `$ref`s followed in a row before giving up on a cycle.
const MAX_REF_HOPS: usize = 16;

/// A number standing alone in text (not the digits of "AB-123" or "v2").
static INTEGER: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?:^|[^\w.\-])(-?\d+)(?:$|[^\w.\-]|\.(?:\s|$))").expect("a valid pattern")
});
static DECIMAL: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?:^|[^\w.\-])(-?\d+(?:\.\d+)?)(?:$|[^\w.\-]|\.(?:\s|$))")
        .expect("a valid pattern")
});

/// The answer to a `json_schema` request, as the JSON text the model streams.
pub(super) fn answer(
    format: &JsonSchemaFormat,
    transcript: &Transcript,
    extract: &BTreeMap<String, Extract>,
) -> String {
    let finder = Finder {
        transcript,
        extract,
    };
    let filled = Generator::new(&format.ordered, Some(&finder)).document();
    let Ok(validator) = jsonschema::options()
        .should_validate_formats(true)
        .build(&format.schema)
    else {
        return filled.to_text();
    };
    if validator.is_valid(&filled.to_value()) {
        return filled.to_text();
    }
    // What the transcript gave broke a rule across properties (say, `dependentRequired`):
    // the answer without it is the next best.
    let bare = Generator::new(&format.ordered, None).document();
    if validator.is_valid(&bare.to_value()) {
        tracing::debug!(
            schema = %format.name,
            "sim LLM: the filled answer did not validate; sending the unfilled one"
        );
        return bare.to_text();
    }
    tracing::warn!(
        schema = %format.name,
        "sim LLM: no answer valid against this schema could be made; sending the closest"
    );
    filled.to_text()
}

/// The answer to a `json_object` request: a summary and every `extract` entry.
pub(super) fn json_object(transcript: &Transcript, extract: &BTreeMap<String, Extract>) -> String {
    let finder = Finder {
        transcript,
        extract,
    };
    let mut members = vec![("summary".to_owned(), Json::String(transcript.summary()))];
    for (name, entry) in extract {
        let value = finder
            .text(entry)
            .map(Json::String)
            .or_else(|| entry.default.as_ref().map(Json::from_value))
            .unwrap_or(Json::Null);
        members.push((name.clone(), value));
    }
    Json::Object(members).to_text()
}

/// A generated value, and whether the transcript supplied it (or any part of it).
struct Made {
    json: Json,
    found: bool,
}

impl Made {
    fn found(json: Json) -> Self {
        Self { json, found: true }
    }

    fn unfound(json: Json) -> Self {
        Self { json, found: false }
    }
}

struct Generator<'a> {
    root: &'a Json,
    /// `None`: the schema alone, nothing taken from the conversation.
    finder: Option<&'a Finder<'a>>,
}

impl<'a> Generator<'a> {
    fn new(root: &'a Json, finder: Option<&'a Finder<'a>>) -> Self {
        Self { root, finder }
    }

    /// The whole answer: never `null` at the root, even where the schema would allow it.
    fn document(&self) -> Json {
        let schema = self.resolve(self.root, 0);
        let made = self.value(&schema, None, 0);
        if made.json != Json::Null {
            return made.json;
        }
        types_of(&schema)
            .iter()
            .filter(|t| *t != "null")
            .map(|t| self.typed(t, &schema, None, 0).json)
            .next()
            .unwrap_or(Json::Null)
    }

    fn value(&self, schema: &Json, name: Option<&str>, depth: usize) -> Made {
        if depth > MAX_DEPTH || !matches!(schema, Json::Object(_)) {
            // `true` (anything) or `false` (nothing): `null` is as good as any answer.
            return Made::unfound(Json::Null);
        }
        let schema = self.resolve(schema, depth);
        if let Some(value) = schema.get("const") {
            return Made::unfound(value.clone());
        }
        let nullable = self.allows_null(&schema, depth);
        if let Some(Json::Array(values)) = schema.get("enum") {
            return self.enumerated(values, &schema, name, nullable);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Json::Array(branches)) = schema.get(key) {
                return self.branches(&schema, branches, name, nullable, depth);
            }
        }
        let mut first = None;
        for kind in types_of(&schema).iter().filter(|t| *t != "null") {
            let made = self.typed(kind, &schema, name, depth);
            if made.found {
                return made;
            }
            first.get_or_insert(made);
        }
        match first {
            Some(made) if !nullable => made,
            _ => Made::unfound(Json::Null),
        }
    }

    fn typed(&self, kind: &str, schema: &Json, name: Option<&str>, depth: usize) -> Made {
        match kind {
            "object" => self.object(schema, depth),
            "array" => self.array(schema, name, depth),
            "string" | "number" | "integer" | "boolean" => self.scalar(kind, schema, name),
            _ => Made::unfound(Json::Null),
        }
    }

    fn object(&self, schema: &Json, depth: usize) -> Made {
        let mut members = Vec::new();
        let mut found = false;
        let properties = schema.get("properties").map_or(&[][..], Json::members);
        for (key, property) in properties {
            let made = self.value(property, Some(key), depth + 1);
            found |= made.found;
            members.push((key.clone(), made.json));
        }
        // Required without a schema: any value will do.
        for key in schema
            .get("required")
            .and_then(Json::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(Json::as_str)
        {
            if !members.iter().any(|(k, _)| k == key) {
                members.push((key.to_owned(), Json::Null));
            }
        }
        Made {
            json: Json::Object(members),
            found,
        }
    }

    fn array(&self, schema: &Json, name: Option<&str>, depth: usize) -> Made {
        let min = schema.get("minItems").and_then(Json::as_f64).unwrap_or(0.0) as usize;
        let max = schema
            .get("maxItems")
            .and_then(Json::as_f64)
            .map_or(usize::MAX, |m| m as usize);
        if let Some(Json::Array(prefix)) = schema.get("prefixItems") {
            let made: Vec<Made> = prefix
                .iter()
                .map(|item| self.value(item, name, depth + 1))
                .collect();
            let found = made.iter().any(|m| m.found);
            return Made {
                json: Json::Array(made.into_iter().map(|m| m.json).collect()),
                found,
            };
        }
        let items = schema
            .get("items")
            .cloned()
            .unwrap_or(Json::Object(Vec::new()));
        if items == Json::Bool(false) {
            return Made::unfound(Json::Array(Vec::new()));
        }
        let item_schema = self.resolve(&items, depth + 1);
        let mut out: Vec<Json> = Vec::new();
        if let Some(finder) = self.finder {
            let entry = finder.entry(name);
            if let Some(Json::Array(values)) = item_schema.get("enum") {
                let (choices, positions) = choices_of(values);
                out.extend(
                    finder
                        .choices(&choices, entry)
                        .into_iter()
                        .map(|i| values[positions[i]].clone()),
                );
            } else if let Some(entry) = entry {
                let kind = first_type(&item_schema);
                out.extend(
                    finder
                        .texts(entry)
                        .iter()
                        .filter_map(|text| self.fit(kind, &item_schema, text)),
                );
                if out.is_empty()
                    && let Some(default) = entry.default.as_ref().map(Json::from_value)
                    && matches!(default, Json::Array(_))
                    && self.valid_at(&default, schema)
                {
                    return Made::found(default);
                }
            }
        }
        let found = !out.is_empty();
        while out.len() < min {
            out.push(self.value(&items, name, depth + 1).json);
        }
        if schema.get("uniqueItems") == Some(&Json::Bool(true)) {
            make_unique(&mut out);
        }
        out.truncate(max.max(min));
        Made {
            json: Json::Array(out),
            found,
        }
    }

    fn scalar(&self, kind: &str, schema: &Json, name: Option<&str>) -> Made {
        if let Some(finder) = self.finder {
            if let Some(entry) = finder.entry(name) {
                if let Some(json) = finder
                    .text(entry)
                    .and_then(|text| self.fit(kind, schema, &text))
                {
                    return Made::found(json);
                }
                if let Some(default) = entry.default.as_ref().map(Json::from_value)
                    && self.valid_at(&default, schema)
                {
                    return Made::found(default);
                }
            } else if let Some(name) = name.map(str::to_lowercase) {
                let transcript = finder.transcript;
                if kind == "string"
                    && name.contains("summary")
                    && !transcript.turns.is_empty()
                    && let Some(json) = self.fit(kind, schema, &transcript.summary())
                {
                    return Made::found(json);
                }
                if kind == "boolean" && name.contains("success") {
                    return Made::found(Json::Bool(transcript.has_reply()));
                }
            }
        }
        Made::unfound(self.placeholder(kind, schema))
    }

    fn enumerated(
        &self,
        values: &[Json],
        schema: &Json,
        name: Option<&str>,
        nullable: bool,
    ) -> Made {
        let (choices, positions) = choices_of(values);
        if let Some(finder) = self.finder {
            let entry = finder.entry(name);
            let scripted = entry
                .filter(|e| e.pattern.is_some() || !e.after.is_empty() || e.message.is_some())
                .and_then(|e| finder.text(e))
                .and_then(|text| named_choice(&text, &choices));
            if let Some(i) = scripted.or_else(|| finder.choice(&choices, entry)) {
                let value = values[positions[i]].clone();
                if self.valid_at(&value, schema) {
                    return Made::found(value);
                }
            }
            if let Some(default) = entry.and_then(|e| e.default.as_ref()).map(Json::from_value)
                && values.contains(&default)
            {
                return Made::found(default);
            }
        }
        if nullable {
            return Made::unfound(Json::Null);
        }
        let first = values
            .iter()
            .find(|v| **v != Json::Null && self.valid_at(v, schema))
            .or(values.first())
            .cloned()
            .unwrap_or(Json::Null);
        Made::unfound(first)
    }

    /// `anyOf` / `oneOf`: a branch that found something, else `null` if allowed, else a
    /// branch's placeholder; the first of these that validates against the whole node.
    fn branches(
        &self,
        schema: &Json,
        branches: &[Json],
        name: Option<&str>,
        nullable: bool,
        depth: usize,
    ) -> Made {
        let made: Vec<Made> = branches
            .iter()
            .filter(|b| !is_null_only(&self.resolve(b, depth + 1)))
            .map(|b| self.value(b, name, depth + 1))
            .collect();
        let (found, unfound): (Vec<Made>, Vec<Made>) = made.into_iter().partition(|m| m.found);
        let mut candidates = found;
        if nullable {
            candidates.push(Made::unfound(Json::Null));
        }
        candidates.extend(unfound);
        let chosen = candidates
            .iter()
            .position(|m| self.valid_at(&m.json, schema))
            .unwrap_or(0);
        candidates
            .into_iter()
            .nth(chosen)
            .unwrap_or(Made::unfound(Json::Null))
    }

    /// Text as a value of type `kind` that `schema` accepts, if it can be.
    fn fit(&self, kind: &str, schema: &Json, text: &str) -> Option<Json> {
        let candidate = match kind {
            "string" => {
                let max = schema.get("maxLength").and_then(Json::as_f64);
                let text = text.trim();
                Json::String(match max {
                    Some(max) => clip(text, max as usize),
                    None => text.to_owned(),
                })
            }
            "integer" => Json::Number(
                INTEGER
                    .captures(text)?
                    .get(1)?
                    .as_str()
                    .parse::<i64>()
                    .ok()?
                    .into(),
            ),
            "number" => number(
                DECIMAL
                    .captures(text)?
                    .get(1)?
                    .as_str()
                    .parse::<f64>()
                    .ok()?,
            )?,
            "boolean" => Json::Bool(yes_or_no(text)?),
            _ => return None,
        };
        self.valid_at(&candidate, schema).then_some(candidate)
    }

    /// A value of type `kind` that `schema` accepts, when the conversation says nothing.
    fn placeholder(&self, kind: &str, schema: &Json) -> Json {
        let candidates = match kind {
            "boolean" => vec![Json::Bool(false), Json::Bool(true)],
            "integer" | "number" => number_candidates(schema, kind == "integer"),
            "string" => string_candidates(schema),
            _ => vec![Json::Null],
        };
        candidates
            .iter()
            .find(|c| self.valid_at(c, schema))
            .or(candidates.first())
            .cloned()
            .unwrap_or(Json::Null)
    }

    /// Whether `value` is valid against `schema`, a node of the document (its root's `$defs`
    /// and `definitions` are lent to it, so local references still resolve). A node that
    /// cannot be compiled alone accepts anything: the whole answer is checked at the end.
    fn valid_at(&self, value: &Json, schema: &Json) -> bool {
        let mut schema = schema.to_value();
        if let Value::Object(map) = &mut schema {
            for key in ["$defs", "definitions"] {
                if let Some(defs) = self.root.get(key)
                    && !map.contains_key(key)
                {
                    map.insert(key.to_owned(), defs.to_value());
                }
            }
        }
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_or(true, |v| v.is_valid(&value.to_value()))
    }

    /// The node with its `$ref`s followed (the referenced schema, plus sibling keywords it
    /// lacks) and its `allOf` parts merged in.
    fn resolve(&self, schema: &Json, depth: usize) -> Json {
        let mut node = schema.clone();
        for _ in 0..MAX_REF_HOPS {
            let Some(reference) = node.get("$ref").and_then(Json::as_str) else {
                break;
            };
            let target = self
                .pointer(reference)
                .cloned()
                .unwrap_or(Json::Object(Vec::new()));
            let siblings: Vec<(String, Json)> = node
                .members()
                .iter()
                .filter(|(k, _)| k != "$ref")
                .cloned()
                .collect();
            node = overlay(target, siblings);
        }
        if let Some(Json::Array(parts)) = node.get("allOf").cloned()
            && depth < MAX_DEPTH
        {
            node = Json::Object(
                node.members()
                    .iter()
                    .filter(|(k, _)| k != "allOf")
                    .cloned()
                    .collect(),
            );
            for part in parts {
                node = merge(node, self.resolve(&part, depth + 1));
            }
        }
        node
    }

    /// A local reference: `#` or a JSON pointer after it.
    fn pointer(&self, reference: &str) -> Option<&'a Json> {
        let path = reference.strip_prefix('#')?;
        let mut node = self.root;
        for token in path.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            node = match node {
                Json::Object(_) => node.get(&token)?,
                Json::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// `null` is allowed explicitly (a `null` type, enum value, const or branch), or the node
    /// says nothing about its type at all.
    fn allows_null(&self, schema: &Json, depth: usize) -> bool {
        let kind = schema.get("type");
        let values = schema.get("enum").and_then(Json::as_array);
        let constant = schema.get("const");
        let branches: Vec<&Json> = ["anyOf", "oneOf"]
            .iter()
            .filter_map(|k| schema.get(k).and_then(Json::as_array))
            .flatten()
            .collect();
        let type_allows = match kind {
            None => None,
            Some(Json::String(t)) => Some(t == "null"),
            Some(Json::Array(types)) => Some(types.contains(&Json::String("null".into()))),
            Some(_) => None,
        };
        let enum_allows = values.map(|v| v.contains(&Json::Null));
        let const_allows = constant.map(|c| *c == Json::Null);
        let branch_allows = (!branches.is_empty() && depth < MAX_DEPTH).then(|| {
            branches
                .iter()
                .any(|b| self.allows_null(&self.resolve(b, depth + 1), depth + 1))
        });
        let said = [type_allows, enum_allows, const_allows, branch_allows];
        if said.contains(&Some(false)) {
            return false;
        }
        said.contains(&Some(true)) || types_of(schema).is_empty()
    }
}

/// The enum's non-null values as choice texts, and where each is in the enum.
fn choices_of(values: &[Json]) -> (Vec<String>, Vec<usize>) {
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != Json::Null)
        .map(|(i, v)| (v.as_str().map_or_else(|| v.to_text(), str::to_owned), i))
        .unzip()
}

/// The node's types: `type`, or what its keywords imply; empty when it says nothing.
fn types_of(schema: &Json) -> Vec<String> {
    match schema.get("type") {
        Some(Json::String(kind)) => return vec![kind.clone()],
        Some(Json::Array(kinds)) => {
            return kinds
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect();
        }
        _ => {}
    }
    let has = |keys: &[&str]| keys.iter().any(|k| schema.get(k).is_some());
    let implied = if has(&["properties", "additionalProperties", "required"]) {
        "object"
    } else if has(&["items", "prefixItems", "minItems", "maxItems"]) {
        "array"
    } else if has(&["minLength", "maxLength", "pattern", "format"]) {
        "string"
    } else if has(&[
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    ]) {
        "number"
    } else {
        return Vec::new();
    };
    vec![implied.to_owned()]
}

/// The type text found for an item is read as: the first non-null one, a string by default.
fn first_type(schema: &Json) -> &'static str {
    let types = types_of(schema);
    let first = types.iter().find(|t| *t != "null").map(String::as_str);
    match first {
        Some("integer") => "integer",
        Some("number") => "number",
        Some("boolean") => "boolean",
        _ => "string",
    }
}

fn is_null_only(schema: &Json) -> bool {
    match schema.get("type") {
        Some(Json::String(t)) => t == "null",
        Some(Json::Array(types)) => types.iter().all(|t| t.as_str() == Some("null")),
        _ => false,
    }
}

/// `target`'s keywords, then the `siblings` it lacks.
fn overlay(target: Json, siblings: Vec<(String, Json)>) -> Json {
    let mut members = match target {
        Json::Object(members) => members,
        _ => Vec::new(),
    };
    for (key, value) in siblings {
        if !members.iter().any(|(k, _)| *k == key) {
            members.push((key, value));
        }
    }
    Json::Object(members)
}

/// `base` and `part` as one node: properties and required lists joined, other keywords the
/// first one given.
fn merge(base: Json, part: Json) -> Json {
    let mut members = match base {
        Json::Object(members) => members,
        _ => Vec::new(),
    };
    for (key, value) in part.members().iter().cloned() {
        let existing = members.iter_mut().find(|(k, _)| *k == key);
        match (key.as_str(), existing, value) {
            ("properties", Some((_, Json::Object(have))), Json::Object(more)) => {
                for (name, property) in more {
                    if !have.iter().any(|(n, _)| *n == name) {
                        have.push((name, property));
                    }
                }
            }
            ("required", Some((_, Json::Array(have))), Json::Array(more)) => {
                for name in more {
                    if !have.contains(&name) {
                        have.push(name);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, value) => members.push((key, value)),
        }
    }
    Json::Object(members)
}

/// A number as JSON, whole numbers without a fraction.
fn number(value: f64) -> Option<Json> {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        return Some(Json::Number((value as i64).into()));
    }
    Number::from_f64(value).map(Json::Number)
}

/// Numbers to try, in order: 0, then around the bounds, then snapped to `multipleOf`.
fn number_candidates(schema: &Json, integer: bool) -> Vec<Json> {
    let get = |key: &str| schema.get(key).and_then(Json::as_f64);
    let step = if integer { 1.0 } else { 0.5 };
    let mut values = vec![0.0];
    let low = get("minimum").or(get("exclusiveMinimum").map(|x| x + step));
    let high = get("maximum").or(get("exclusiveMaximum").map(|x| x - step));
    if let Some(low) = low {
        values.extend([low, low.ceil(), low.ceil() + 1.0]);
    }
    if let Some(high) = high {
        values.extend([high, high.floor(), high.floor() - 1.0]);
    }
    if let (Some(low), Some(high)) = (low, high) {
        values.push((low + high) / 2.0);
        values.push(((low + high) / 2.0).round());
    }
    if let Some(multiple) = get("multipleOf").filter(|m| *m > 0.0) {
        let snapped: Vec<f64> = values
            .iter()
            .map(|v| (v / multiple).ceil() * multiple)
            .collect();
        values.extend(snapped);
    }
    values
        .into_iter()
        .filter(|v| !integer || v.fract() == 0.0)
        .filter_map(number)
        .collect()
}

/// Strings to try: one that has the schema's `format`, then plain ones, each stretched to
/// `minLength` and cut to `maxLength`.
fn string_candidates(schema: &Json) -> Vec<Json> {
    let min = schema
        .get("minLength")
        .and_then(Json::as_f64)
        .unwrap_or(0.0) as usize;
    let max = schema
        .get("maxLength")
        .and_then(Json::as_f64)
        .map_or(usize::MAX, |m| m as usize);
    let formatted = match schema.get("format").and_then(Json::as_str) {
        Some("email" | "idn-email") => "unknown@example.com",
        Some("date") => "1970-01-01",
        Some("date-time") => "1970-01-01T00:00:00Z",
        Some("time") => "00:00:00Z",
        Some("duration") => "P0D",
        Some("uuid") => "00000000-0000-0000-0000-000000000000",
        Some("uri" | "iri" | "uri-reference" | "iri-reference" | "url") => "https://example.com",
        Some("hostname" | "idn-hostname") => "example.com",
        Some("ipv4") => "0.0.0.0",
        Some("ipv6") => "::1",
        _ => "unknown",
    };
    [formatted, "unknown", "0", "x", "A1", "AA-000", "00000"]
        .iter()
        .map(|base| {
            let mut text = (*base).to_owned();
            while text.chars().count() < min {
                text.push_str(if base.len() > 1 { " " } else { "" });
                text.push_str(base);
            }
            Json::String(text.chars().take(max).collect())
        })
        .collect()
}

/// "yes" / "no" and their everyday forms, by the first word.
fn yes_or_no(text: &str) -> Option<bool> {
    let lower = text.trim().to_lowercase();
    let word = lower
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())?;
    match word {
        "yes" | "yeah" | "yep" | "yup" | "true" | "correct" | "sure" | "y" | "1" => Some(true),
        "no" | "nope" | "nah" | "false" | "n" | "0" | "not" => Some(false),
        _ => None,
    }
}

/// Repeated items made different (a number added to text, a step to numbers).
fn make_unique(items: &mut [Json]) {
    for i in 1..items.len() {
        let mut n = 1;
        while items[..i].contains(&items[i]) && n < 1000 {
            n += 1;
            items[i] = match &items[i] {
                Json::String(s) => Json::String(format!(
                    "{} {n}",
                    s.trim_end_matches(char::is_numeric).trim_end()
                )),
                Json::Number(x) => number(x.as_f64().unwrap_or(0.0) + 1.0).unwrap_or(Json::Null),
                _ => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sim::openai::script::Script;
    use crate::sim::openai::validate::{Message, ResponseFormat, Role, validate};

    fn user(content: &str) -> Value {
        json!({"role": "user", "content": content})
    }

    /// The fake's answer to a streamed request with this schema and these messages, checked
    /// to parse.
    fn answer_for(script: &Script, schema: Value, messages: Vec<Value>) -> Value {
        let body = json!({
            "model": "gpt-4o-mini", "stream": true, "temperature": 0,
            "messages": messages,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "call_analysis", "strict": false, "schema": schema}}
        });
        let request = validate(&serde_json::to_vec(&body).unwrap()).expect("a valid request");
        let reply = script.reply(&request);
        assert!(reply.tool_calls.is_empty());
        serde_json::from_str(&reply.text).unwrap_or_else(|e| panic!("{e}: {}", reply.text))
    }

    fn assert_valid(schema: &Value, answer: &Value) {
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(schema)
            .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(answer)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{answer}: {errors:?}");
    }

    fn valid_answer(schema: Value, messages: Vec<Value>) -> Value {
        let answer = answer_for(&Script::builtin(), schema.clone(), messages);
        assert_valid(&schema, &answer);
        answer
    }

    fn call_transcript() -> Vec<Value> {
        vec![
            json!({"role": "system", "content": "Analyse this support call."}),
            user(
                "assistant: Hello! Thanks for calling. How can I help you today?\n\
                 user: Hi, my package still hasn't arrived and I need it urgently.\n\
                 assistant: I'm sorry to hear that. What's your order number?\n\
                 user: It's AB-48213.\n\
                 assistant: Thanks, I've escalated it to the courier.",
            ),
        ]
    }

    /// The end-of-call analysis's shape, with a customer-support `structured_data`; as text,
    /// since `json!` would sort its keys.
    const CALL_ANALYSIS: &str = r#"{
        "type": "object", "additionalProperties": false,
        "properties": {
            "summary": {"type": "string"},
            "structured_data": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "order_number": {"type": ["string", "null"]},
                    "problem_category": {"type": ["string", "null"],
                        "enum": ["delivery", "billing", "product", "account", "other", null]},
                    "problem_description": {"type": ["string", "null"]},
                    "urgency_level": {"type": ["string", "null"], "enum": ["low", "medium", "high", null]},
                    "customer_email": {"type": ["string", "null"], "format": "email"}
                },
                "required": ["order_number", "problem_category", "problem_description", "urgency_level", "customer_email"]
            },
            "success": {"type": "boolean"}
        },
        "required": ["summary", "structured_data", "success"]
    }"#;

    fn call_analysis_schema() -> Value {
        serde_json::from_str(CALL_ANALYSIS).unwrap()
    }

    #[test]
    fn the_call_analysis_is_filled_from_the_transcript() {
        let schema = call_analysis_schema();
        let answer = valid_answer(schema, call_transcript());
        assert_eq!(
            answer["summary"],
            "The caller asked about \"Hi, my package still hasn't arrived and I need it urgently\" and the assistant replied."
        );
        assert_eq!(answer["success"], true);
        let data = &answer["structured_data"];
        assert_eq!(data["order_number"], "AB-48213");
        assert_eq!(data["problem_category"], "delivery");
        assert_eq!(
            data["problem_description"],
            "Hi, my package still hasn't arrived and I need it urgently."
        );
        assert_eq!(data["urgency_level"], "high");
        assert_eq!(data["customer_email"], Value::Null, "never said");
    }

    #[test]
    fn properties_come_in_the_schema_order() {
        let body = format!(
            r#"{{"model": "m", "messages": {}, "response_format": {{"type": "json_schema",
                "json_schema": {{"name": "x", "strict": true, "schema": {CALL_ANALYSIS}}}}}}}"#,
            Value::from(call_transcript())
        );
        let request = validate(body.as_bytes()).unwrap();
        let text = Script::builtin().reply(&request).text;
        let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
        assert!(at("summary") < at("structured_data") && at("structured_data") < at("success"));
        assert!(
            at("order_number") < at("problem_category")
                && at("urgency_level") < at("customer_email")
        );
    }

    #[test]
    fn a_chat_in_progress_leaves_what_is_not_said_yet_null() {
        let schema = call_analysis_schema()["properties"]["structured_data"].clone();
        let messages = vec![
            json!({"role": "system", "content": "Extract the case fields."}),
            user("I was charged twice for my last order"),
            json!({"role": "assistant", "content": "Sorry about that. Which order?"}),
        ];
        let answer = valid_answer(schema.clone(), messages.clone());
        assert_eq!(answer["problem_category"], "billing");
        assert_eq!(
            answer["problem_description"],
            "I was charged twice for my last order"
        );
        assert_eq!(answer["order_number"], Value::Null);
        assert_eq!(answer["urgency_level"], Value::Null);

        let mut more = messages;
        more.push(user("Order 1234567, and no rush, whenever you can."));
        let answer = valid_answer(schema, more);
        assert_eq!(answer["order_number"], "1234567");
        assert_eq!(answer["urgency_level"], "low");
        assert_eq!(
            answer["problem_category"], "billing",
            "still the earlier turn's"
        );
    }

    #[test]
    fn nested_objects_arrays_and_bounds_validate() {
        let schema = json!({
            "type": "object",
            "properties": {
                "caller": {"type": "object", "properties": {
                    "name": {"type": "string", "minLength": 12, "maxLength": 20},
                    "age": {"type": "integer", "minimum": 18, "maximum": 120},
                    "score": {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 1},
                    "count": {"type": "integer", "minimum": 7, "multipleOf": 5},
                    "vip": {"type": "boolean"},
                    "id": {"type": "string", "format": "uuid"},
                    "when": {"type": "string", "format": "date-time"},
                    "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}
                }, "required": ["name", "age", "score", "count", "vip", "id", "when", "code"]},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 5, "uniqueItems": true},
                "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}, "minItems": 1}, "minItems": 2},
                "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}
            },
            "required": ["caller", "tags", "matrix", "pair"]
        });
        let answer = valid_answer(schema, vec![user("hello there")]);
        assert_eq!(answer["tags"].as_array().unwrap().len(), 3);
        assert_eq!(answer["caller"]["count"], 10);
        assert_eq!(answer["caller"]["code"], "AA-000");
    }

    #[test]
    fn enums_nullables_consts_and_refs_validate() {
        let schema = json!({
            "type": "object",
            "$defs": {
                "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
                "address": {"type": ["object", "null"], "properties": {
                    "city": {"type": ["string", "null"]}, "zip": {"type": ["string", "null"]}
                }, "required": ["city", "zip"], "additionalProperties": false}
            },
            "definitions": {"level": {"type": "integer", "enum": [1, 2, 3]}},
            "properties": {
                "sentiment": {"$ref": "#/$defs/sentiment"},
                "mood": {"$ref": "#/$defs/sentiment", "description": "the same, referenced again"},
                "level": {"$ref": "#/definitions/level"},
                "address": {"$ref": "#/$defs/address"},
                "version": {"const": "v2"},
                "note": {"type": ["string", "null"]},
                "kind": {"enum": ["a", "b", null]},
                "anything": {}
            },
            "required": ["sentiment", "mood", "level", "address", "version", "note", "kind", "anything"]
        });
        let answer = valid_answer(schema, vec![user("I'm very negative about this")]);
        assert_eq!(answer["sentiment"], "negative", "the user's own word");
        assert_eq!(answer["level"], 1);
        assert_eq!(answer["address"], Value::Null, "nothing in it was said");
        assert_eq!(answer["version"], "v2");
        assert_eq!(answer["note"], Value::Null);
        assert_eq!(answer["kind"], Value::Null);
    }

    #[test]
    fn any_of_and_one_of_take_the_first_branch_that_works() {
        let schema = json!({
            "type": "object",
            "properties": {
                "order_number": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
                "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "either": {"oneOf": [{"type": "number"}, {"type": "integer"}, {"type": "string"}]},
                "shape": {"oneOf": [
                    {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "minimum": 1}}, "required": ["kind", "r"]},
                    {"type": "object", "properties": {"kind": {"const": "square"}}, "required": ["kind"]}
                ]},
                "tree": {"$ref": "#/$defs/node"}
            },
            "$defs": {"node": {"type": "object", "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}
            }, "required": ["label", "children"]}},
            "required": ["order_number", "maybe", "either", "shape", "tree"]
        });
        let answer = valid_answer(schema, vec![user("my order is AB-12345")]);
        assert_eq!(
            answer["order_number"], "AB-12345",
            "the string branch found it"
        );
        assert_eq!(answer["maybe"], Value::Null);
        assert_eq!(answer["either"], "unknown", "0 would match two branches");
        assert_eq!(answer["shape"], json!({"kind": "circle", "r": 1}));
        assert_eq!(answer["tree"], json!({"label": "unknown", "children": []}));
    }

    #[test]
    fn all_of_parts_are_merged() {
        let schema = json!({
            "type": "object",
            "allOf": [
                {"properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "integer", "minimum": 3}}, "required": ["b"]}
            ]
        });
        let answer = valid_answer(schema, vec![user("hi")]);
        assert_eq!(answer, json!({"a": "unknown", "b": 3}));
    }

    #[test]
    fn arrays_collect_every_value_named() {
        let schema = json!({
            "type": "object",
            "properties": {
                "order_number": {"type": "array", "items": {"type": "string"}},
                "topics": {"type": "array", "items": {"enum": ["billing", "delivery", "account"]}}
            },
            "required": ["order_number", "topics"]
        });
        let answer = valid_answer(
            schema,
            vec![user(
                "Orders 12345 and 67890: the delivery never came, and my account is locked",
            )],
        );
        assert_eq!(answer["order_number"], json!(["12345", "67890"]));
        assert_eq!(answer["topics"], json!(["delivery", "account"]));
    }

    #[test]
    fn a_script_overrides_the_defaults() {
        let script = Script::from_json(
            &json!({"rules": [{"reply": {"text": "ok"}}],
            "extract": {
                "summary": {"message": "last"},
                "order_number": {"pattern": "order (?:number )?#?(\\w+)"},
                "city": {"after": ["in", "to"], "until": ["please"], "default": "Paris"},
                "urgency_level": {"synonyms": {"medium": ["this week"]}},
                "refund": {"synonyms": {"true": ["refund", "money back"]}},
                "nights": {"after": ["for"]},
                "channel": {"default": "phone"}
            }})
            .to_string(),
        )
        .unwrap();
        let schema = json!({
            "type": "object",
            "properties": {
                "summary": {"type": "string"},
                "order_number": {"type": ["string", "null"]},
                "city": {"type": "string"},
                "urgency_level": {"type": "string", "enum": ["low", "medium", "high"]},
                "refund": {"type": "boolean"},
                "nights": {"type": "integer"},
                "channel": {"type": ["string", "null"]},
                "success": {"type": "boolean"}
            },
            "required": ["summary", "order_number", "city", "urgency_level", "refund", "nights", "channel", "success"]
        });
        let answer = answer_for(
            &script,
            schema.clone(),
            vec![
                user("I booked a room for 3 nights, order number #X9Y8"),
                user("Can I get my money back this week?"),
            ],
        );
        assert_valid(&schema, &answer);
        assert_eq!(
            answer,
            json!({
                "summary": "Can I get my money back this week?",
                "order_number": "X9Y8",
                "city": "Paris",
                "urgency_level": "medium",
                "refund": true,
                "nights": 3,
                "channel": "phone",
                "success": false
            })
        );
        // Without the script: the built-in defaults.
        let answer = answer_for(
            &Script::from_json(r#"{"rules": []}"#).unwrap(),
            schema.clone(),
            vec![user("hi")],
        );
        assert_valid(&schema, &answer);
        assert_eq!(answer["urgency_level"], "low", "the first value");
        assert_eq!(answer["order_number"], Value::Null);
        assert_eq!(answer["city"], "unknown");
        assert_eq!(
            answer["summary"],
            "The caller asked about \"hi\" and got no reply."
        );
    }

    #[test]
    fn text_that_breaks_the_schema_is_not_used() {
        let schema = json!({
            "type": "object",
            "properties": {
                "order_number": {"type": ["string", "null"], "pattern": "^[0-9]+$"},
                "problem_description": {"type": "string", "maxLength": 10},
                "customer_email": {"type": ["string", "null"], "format": "email"}
            },
            "required": ["order_number", "problem_description", "customer_email"]
        });
        let script = Script::from_json(
            r#"{"rules": [], "extract": {
                "order_number": {"pattern": "[A-Z]{2}-\\d+"},
                "problem_description": {"message": "longest"},
                "customer_email": {"after": ["email"]}}}"#,
        )
        .unwrap();
        let answer = answer_for(
            &script,
            schema.clone(),
            vec![user("Order AB-123 is broken, email me at nowhere")],
        );
        assert_valid(&schema, &answer);
        assert_eq!(answer["order_number"], Value::Null, "not digits only");
        assert_eq!(answer["problem_description"], "Order…");
        assert_eq!(answer["customer_email"], Value::Null, "not an email");
    }

    #[test]
    fn a_retry_is_answered_from_the_conversation_not_the_correction() {
        let mut messages = call_transcript();
        messages.push(json!({"role": "assistant", "content": "{\"summary\": 3}"}));
        messages.push(user(
            "Your answer did not validate: 3 is not of type \"string\". Order 99999.",
        ));
        let answer = valid_answer(call_analysis_schema(), messages);
        assert_eq!(answer["structured_data"]["order_number"], "AB-48213");
    }

    #[test]
    fn json_mode_answers_a_summary_and_the_extract_entries() {
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "Reply in JSON."},
            {"role": "user", "content": "My order AB-1234 never arrived, please help asap"}],
            "response_format": {"type": "json_object"}});
        let request = validate(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(request.response_format, ResponseFormat::JsonObject);
        let answer: Value = serde_json::from_str(&Script::builtin().reply(&request).text).unwrap();
        assert!(
            answer["summary"]
                .as_str()
                .unwrap()
                .starts_with("The caller asked about")
        );
        assert_eq!(answer["order_number"], "AB-1234");
        assert_eq!(answer["problem_category"], "delivery");
        assert_eq!(answer["urgency_level"], "high");
    }

    #[test]
    fn placeholders_meet_string_and_number_constraints() {
        let text = |schema: Value| string_candidates(&Json::from_value(&schema))[0].clone();
        assert_eq!(
            text(json!({"minLength": 10})),
            Json::String("unknown unknown".into())
        );
        assert_eq!(text(json!({"maxLength": 3})), Json::String("unk".into()));
        assert_eq!(
            text(json!({"format": "email"})),
            Json::String("unknown@example.com".into())
        );
        let root = Json::Null;
        let generator = Generator::new(&root, None);
        let schema =
            Json::from_value(&json!({"type": "integer", "exclusiveMinimum": 10, "maximum": 11}));
        assert_eq!(
            generator.placeholder("integer", &schema),
            Json::Number(11.into())
        );
        let schema = Json::from_value(&json!({"type": "number", "minimum": -5, "maximum": -2}));
        assert_eq!(
            generator.placeholder("number", &schema),
            Json::Number((-5).into())
        );
        assert_eq!(yes_or_no("Yes please"), Some(true));
        assert_eq!(yes_or_no("nope."), Some(false));
        assert_eq!(yes_or_no("maybe"), None);
    }

    #[test]
    fn the_bare_answer_is_sent_when_the_filled_one_breaks_a_cross_property_rule() {
        let schema = json!({
            "type": "object",
            "properties": {"order_number": {"type": ["string", "null"]}, "email": {"type": ["string", "null"]}},
            "required": ["order_number", "email"],
            "dependentRequired": {"order_number": ["email"]},
            "not": {"properties": {"order_number": {"type": "string"}, "email": {"type": "null"}}}
        });
        let answer = valid_answer(schema, vec![user("order 12345")]);
        assert_eq!(answer, json!({"order_number": null, "email": null}));
    }

    #[test]
    fn messages_without_a_transcript_label_are_one_turn_each() {
        let transcript = Transcript::of(&[Message {
            role: Role::User,
            content: "Note: order 12345".into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }]);
        assert_eq!(
            transcript.user_turns().collect::<Vec<_>>(),
            ["Note: order 12345"]
        );
    }
}
