//! The fake model's "mind": ordered rules that pick a reply from the conversation.
//!
//! A script is JSON (see `fixtures/sim/openai_default.json`, which is also the built-in default):
//!
//! ```json
//! {"rules": [
//!   {"when": {"tool_result": "get_weather"},
//!    "reply": {"text": "It's {{result.summary|result}} in {{args.city|'your city'}}."}},
//!   {"when": {"user_contains": ["weather"]},
//!    "capture": {"city": {"after": ["in", "for"], "until": ["today"], "default": "London"}},
//!    "reply": {"text": "Let me check.", "tool_calls": [{"name": "get_weather", "arguments": {"city": "{{city}}"}}]}},
//!   {"reply": {"text": "You said: {{user}}."}}
//! ]}
//! ```
//!
//! The first rule whose conditions all hold wins. `when` may hold:
//! - `user_contains`: any of these substrings (case-insensitive) in the last user message, when
//!   the model is answering the user (the last message is not a tool result) — or, beside
//!   `tool_result`, in the user message the tool round answers;
//! - `tool_result`: the last message is a tool result answering a call of this function (`*`:
//!   any function);
//! - `no_user_message`: the conversation has no user message yet (the greeting);
//! - `system_contains`: any of these substrings (case-insensitive) in a system message (a
//!   client's own task, such as the assistant builder's, told apart from a conversation).
//! - `result_contains`: any of these substrings in the tool result the rule answers;
//! - `tools_offered`: the request offers every one of these tools (a rule that only speaks,
//!   for an agent that has them).
//!
//! A rule with tool calls only matches if the request offers every tool it calls, like a real
//! model that can only call what it is given. `arguments` is a JSON object whose strings are
//! templates, or a string sent verbatim as the arguments' JSON text (to test odd encodings).
//! Templates: `{{name}}` with `|` fallbacks taking the first non-empty value; names are `user`,
//! `tool`, `result`, `result.<path>`, `args.<path>`, a capture, or a `'literal'`. In a path, `*`
//! takes every element of an array (`result.products.*.productId`); an argument string that is
//! one such template and nothing else becomes the JSON value itself (an array of ids, say).
//!
//! ## Structured outputs
//!
//! A request with `response_format` `json_schema` is not answered by the rules: the model
//! answers JSON valid against the schema (see [`super::structured`]), every property present,
//! filled from what the user said. Where the conversation comes from: the user messages, each
//! split into turns when it is a transcript of `user: …` / `assistant: …` lines (also `caller`,
//! `customer`, `agent`, `bot`), and the assistant messages, up to the first assistant message
//! that is itself a JSON answer (what follows it is a client's retry asking for a correction).
//!
//! The optional top-level `extract` section says how a property (by name, at any depth of the
//! schema) is found in the user's turns; the latest turn that has it wins, and within a turn
//! the first mention:
//!
//! ```json
//! {"rules": [...],
//!  "extract": {
//!    "order_number": {"pattern": "\\b(?:[A-Z]{2,}-?\\d{3,}|\\d{5,})\\b"},
//!    "city": {"after": ["in", "to"], "until": ["today"], "default": "London"},
//!    "urgency_level": {"synonyms": {"high": ["urgent", "asap", "immediately"]}},
//!    "problem_description": {"message": "longest"}
//!  }}
//! ```
//!
//! - `pattern`: a regular expression (`regex` crate syntax; `(?i)` for any case); its first
//!   group if it has one, else the whole match. For an array, every match in order.
//! - `after` / `until`: as in a rule's `capture`, the words after a marker word.
//! - `synonyms`: value → words or phrases that name it; the value's own words name it too.
//!   Words match whole, case-insensitively, with a plain suffix (`refund` in "refunded").
//! - `message`: a whole user turn, `first`, `last` or `longest`.
//! - `default`: any JSON, used when nothing is found and it fits the schema.
//!
//! Text found is used only if it fits the property's schema (type, enum, length, pattern,
//! format, bounds). Without an entry: an enum takes the value the user named (its own words),
//! a string named like `summary` gets one sentence about the first thing the caller asked, a
//! boolean named like `success` is true when a user turn got an assistant reply. Whatever is
//! still missing is `null` where the schema allows it, else the first enum value or a short
//! placeholder that satisfies the schema. `json_object` (JSON mode) answers a `summary` and
//! every `extract` entry (`null` when not found).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::structured;
use super::transcript::Transcript;
use super::validate::{Message, ResponseFormat, Role, ValidRequest};

/// The built-in script: friendly replies, `end_call` on goodbye, `get_weather` on weather.
const DEFAULT_SCRIPT: &str = include_str!("../../../fixtures/sim/openai_default.json");

/// Why a script file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read the script: {0}")]
    Read(#[from] std::io::Error),
    #[error("the script is not valid: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("rule {rule}: {why}")]
    Rule { rule: usize, why: String },
    #[error("extract {name}: {why}")]
    Extract { name: String, why: String },
}

/// Ordered reply rules, and how structured answers find their values.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub rules: Vec<Rule>,
    /// Property name → how its value is found in what the user said (structured outputs).
    #[serde(default)]
    pub extract: BTreeMap<String, Extract>,
}

/// When to answer what.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub when: When,
    /// Values taken from the last user message, usable in templates by name.
    #[serde(default)]
    pub capture: BTreeMap<String, Capture>,
    pub reply: ReplySpec,
}

/// The conditions of a rule; all given ones must hold, none given matches anything.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default)]
    pub user_contains: Vec<String>,
    #[serde(default)]
    pub tool_result: Option<String>,
    #[serde(default)]
    pub no_user_message: bool,
    #[serde(default)]
    pub system_contains: Vec<String>,
    #[serde(default)]
    pub result_contains: Vec<String>,
    #[serde(default)]
    pub tools_offered: Vec<String>,
}

/// The words after a marker word: `after: ["in"]` takes `New York` from "weather in New York
/// today?" when `until` holds `today`. At most four words, stopping at punctuation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    pub after: Vec<String>,
    #[serde(default)]
    pub until: Vec<String>,
    #[serde(default)]
    pub default: String,
}

/// How a structured answer's property is found in the user's turns (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extract {
    /// The words after one of these marker words, as in a [`Capture`].
    #[serde(default)]
    pub after: Vec<String>,
    /// Words that end what `after` takes.
    #[serde(default)]
    pub until: Vec<String>,
    /// A regular expression; its first group if it has one, else the whole match.
    #[serde(default)]
    pub pattern: Option<Pattern>,
    /// Value → words or phrases that name it.
    #[serde(default)]
    pub synonyms: BTreeMap<String, Vec<String>>,
    /// A whole user turn.
    #[serde(default)]
    pub message: Option<MessagePick>,
    /// The value when nothing is found, if it fits the schema.
    #[serde(default)]
    pub default: Option<Value>,
}

/// Which whole user turn an [`Extract`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessagePick {
    First,
    Last,
    Longest,
}

/// A compiled regular expression, read from its source text.
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl Pattern {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        regex::Regex::new(source).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The first group of the first match (the whole match without groups).
    pub(super) fn first(&self, text: &str) -> Option<String> {
        self.0.captures(text).and_then(|c| Self::taken(&c))
    }

    /// The same for every match, in order.
    pub(super) fn all(&self, text: &str) -> Vec<String> {
        self.0
            .captures_iter(text)
            .filter_map(|c| Self::taken(&c))
            .collect()
    }

    fn taken(captures: &regex::Captures<'_>) -> Option<String> {
        captures
            .get(1)
            .or_else(|| captures.get(0))
            .map(|m| m.as_str().trim().to_owned())
            .filter(|t| !t.is_empty())
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        Pattern::new(&source).map_err(serde::de::Error::custom)
    }
}

/// What the model says: text, tool calls, or both (text first, as models do).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplySpec {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallSpec {
    pub name: String,
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A reply, ready to be streamed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub text: String,
    pub tool_calls: Vec<ScriptedCall>,
}

/// A tool call of a reply: the function and its arguments' JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedCall {
    pub name: String,
    pub arguments: String,
}

const FALLBACK_TEXT: &str = "Sorry, I didn't catch that. Could you say it again?";
const MAX_CAPTURED_WORDS: usize = 4;

impl Default for Script {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Script {
    /// The built-in script (`fixtures/sim/openai_default.json`, compiled in).
    pub fn builtin() -> Self {
        // A unit test parses this file, so it cannot fail at run time.
        Self::from_json(DEFAULT_SCRIPT).expect("the built-in script is valid")
    }

    pub fn from_json(text: &str) -> Result<Self, ScriptError> {
        let script: Script = serde_json::from_str(text)?;
        for (rule, r) in script.rules.iter().enumerate() {
            for call in &r.reply.tool_calls {
                if call.name.is_empty() {
                    return Err(ScriptError::Rule {
                        rule,
                        why: "a tool call has no name".into(),
                    });
                }
                if !(call.arguments.is_object() || call.arguments.is_string()) {
                    return Err(ScriptError::Rule {
                        rule,
                        why: "tool call arguments must be an object or a string".into(),
                    });
                }
            }
            if r.reply.text.is_none() && r.reply.tool_calls.is_empty() {
                return Err(ScriptError::Rule {
                    rule,
                    why: "the reply has neither text nor tool calls".into(),
                });
            }
        }
        for (name, entry) in &script.extract {
            let why = if entry.after.is_empty()
                && entry.pattern.is_none()
                && entry.synonyms.is_empty()
                && entry.message.is_none()
                && entry.default.is_none()
            {
                "says neither after, pattern, synonyms, message nor default"
            } else if entry.after.is_empty() && !entry.until.is_empty() {
                "until without after"
            } else {
                continue;
            };
            return Err(ScriptError::Extract {
                name: name.clone(),
                why: why.into(),
            });
        }
        Ok(script)
    }

    pub fn load(path: &Path) -> Result<Self, ScriptError> {
        Self::from_json(&std::fs::read_to_string(path)?)
    }

    /// The reply to a conversation: JSON when the request asks for it, else the first rule
    /// that matches.
    pub fn reply(&self, request: &ValidRequest) -> Reply {
        let structured = match &request.response_format {
            ResponseFormat::Text => None,
            ResponseFormat::JsonObject => Some(structured::json_object(
                &Transcript::of(&request.messages),
                &self.extract,
            )),
            ResponseFormat::JsonSchema(format) => Some(structured::answer(
                format,
                &Transcript::of(&request.messages),
                &self.extract,
            )),
        };
        if let Some(text) = structured {
            return Reply {
                text,
                tool_calls: Vec::new(),
            };
        }
        let conversation = Conversation::of(&request.messages);
        for rule in &self.rules {
            let offered = rule
                .reply
                .tool_calls
                .iter()
                .map(|c| &c.name)
                .chain(&rule.when.tools_offered)
                .all(|name| request.tool_names.contains(name));
            if !offered {
                continue;
            }
            if let Some(result) = conversation.matches(&rule.when) {
                return render(rule, &conversation, result);
            }
        }
        Reply {
            text: FALLBACK_TEXT.to_owned(),
            tool_calls: Vec::new(),
        }
    }
}

/// A tool result at the end of the conversation and the call it answers.
struct ToolResult<'a> {
    name: &'a str,
    arguments: &'a str,
    content: &'a str,
}

/// What rules look at.
struct Conversation<'a> {
    last_user: Option<&'a str>,
    /// Every system message, lowercased and joined.
    system: String,
    /// Tool results after the last assistant message, when the conversation ends with them.
    results: Vec<ToolResult<'a>>,
}

impl<'a> Conversation<'a> {
    fn of(messages: &'a [Message]) -> Self {
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str());
        let trailing = messages
            .iter()
            .rev()
            .take_while(|m| m.role == Role::Tool)
            .count();
        let asked = messages[..messages.len() - trailing]
            .iter()
            .rev()
            .find(|m| !m.tool_calls.is_empty());
        let results = messages[messages.len() - trailing..]
            .iter()
            .map(|m| {
                let call = asked.and_then(|a| {
                    a.tool_calls
                        .iter()
                        .find(|c| Some(c.id.as_str()) == m.tool_call_id.as_deref())
                });
                ToolResult {
                    name: call.map_or("", |c| c.name.as_str()),
                    arguments: call.map_or("{}", |c| c.arguments.as_str()),
                    content: &m.content,
                }
            })
            .collect();
        let system = messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.to_lowercase())
            .collect::<Vec<_>>()
            .join("\n");
        Self {
            last_user,
            system,
            results,
        }
    }

    /// Whether `when` holds; with the tool result it matched, if any.
    fn matches(&self, when: &When) -> Option<Option<&ToolResult<'a>>> {
        let mut matched = self.results.first();
        if let Some(wanted) = &when.tool_result {
            matched = Some(
                self.results
                    .iter()
                    .find(|r| wanted == "*" || r.name == wanted)?,
            );
        }
        if !when.user_contains.is_empty() {
            if !self.results.is_empty() && when.tool_result.is_none() {
                return None;
            }
            let user = self.last_user?.to_lowercase();
            if !when
                .user_contains
                .iter()
                .any(|needle| user.contains(&needle.to_lowercase()))
            {
                return None;
            }
        }
        if when.no_user_message && self.last_user.is_some() {
            return None;
        }
        if !when.system_contains.is_empty()
            && !when
                .system_contains
                .iter()
                .any(|needle| self.system.contains(&needle.to_lowercase()))
        {
            return None;
        }
        if !when.result_contains.is_empty() {
            let content = matched?.content;
            if !when.result_contains.iter().any(|c| content.contains(c)) {
                return None;
            }
        }
        Some(matched)
    }
}

fn render(rule: &Rule, conversation: &Conversation<'_>, result: Option<&ToolResult<'_>>) -> Reply {
    let user = conversation.last_user.unwrap_or("");
    let captures: BTreeMap<&str, String> = rule
        .capture
        .iter()
        .map(|(name, capture)| (name.as_str(), capture_from(user, capture)))
        .collect();
    let vars = Vars {
        user,
        result,
        result_json: result.and_then(|r| serde_json::from_str(r.content).ok()),
        args_json: result.and_then(|r| serde_json::from_str(r.arguments).ok()),
        captures,
    };
    Reply {
        text: rule
            .reply
            .text
            .as_deref()
            .map(|t| vars.fill(t))
            .unwrap_or_default(),
        tool_calls: rule
            .reply
            .tool_calls
            .iter()
            .map(|call| ScriptedCall {
                name: call.name.clone(),
                arguments: match &call.arguments {
                    Value::String(raw) => raw.clone(),
                    other => vars.fill_json(other).to_string(),
                },
            })
            .collect(),
    }
}

/// The words after the first marker word, up to punctuation, a stop word or four words.
fn capture_from(user: &str, capture: &Capture) -> String {
    capture_after(user, &capture.after, &capture.until).unwrap_or_else(|| capture.default.clone())
}

/// What [`capture_from`] takes, if anything.
pub(super) fn capture_after(text: &str, after: &[String], until: &[String]) -> Option<String> {
    let is = |word: &str, list: &[String]| list.iter().any(|w| w.eq_ignore_ascii_case(word));
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if !is(word.trim_matches(|c: char| !c.is_alphanumeric()), after) {
            continue;
        }
        let mut taken: Vec<&str> = Vec::new();
        for word in words.by_ref() {
            let bare = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-');
            if bare.is_empty() || is(bare, until) {
                break;
            }
            taken.push(bare);
            let ends_clause = word.ends_with(['.', ',', '?', '!', ';', ':']);
            if ends_clause || taken.len() == MAX_CAPTURED_WORDS {
                break;
            }
        }
        if !taken.is_empty() {
            return Some(taken.join(" "));
        }
    }
    None
}

struct Vars<'a> {
    user: &'a str,
    result: Option<&'a ToolResult<'a>>,
    result_json: Option<Value>,
    args_json: Option<Value>,
    captures: BTreeMap<&'a str, String>,
}

impl Vars<'_> {
    /// Replaces every `{{...}}` in a template; an unclosed `{{` is kept as text.
    fn fill(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open + 2..].find("}}") else {
                break;
            };
            out.push_str(&rest[..open]);
            let expression = &rest[open + 2..open + 2 + close];
            out.push_str(&self.first_non_empty(expression));
            rest = &rest[open + 2 + close + 2..];
        }
        out.push_str(rest);
        out
    }

    fn fill_json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => self
                .whole_value(s)
                .unwrap_or_else(|| Value::String(self.fill(s))),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.fill_json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.fill_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// The JSON value of a string that is one `{{result.<path>}}`/`{{args.<path>}}` template
    /// naming an array, object or number, if it is that.
    fn whole_value(&self, template: &str) -> Option<Value> {
        let expression = template.strip_prefix("{{")?.strip_suffix("}}")?;
        if expression.contains("{{") || expression.contains('|') {
            return None;
        }
        let expression = expression.trim();
        let value = if let Some(path) = expression.strip_prefix("result.") {
            json_value(self.result_json.as_ref(), path)
        } else {
            json_value(self.args_json.as_ref(), expression.strip_prefix("args.")?)
        };
        value.filter(|v| !(v.is_string() || v.is_null()))
    }

    fn first_non_empty(&self, expression: &str) -> String {
        expression
            .split('|')
            .map(|alternative| self.lookup(alternative.trim()))
            .find(|v| !v.is_empty())
            .unwrap_or_default()
    }

    fn lookup(&self, name: &str) -> String {
        if let Some(literal) = name.strip_prefix('\'').and_then(|n| n.strip_suffix('\'')) {
            return literal.to_owned();
        }
        match name {
            // Without its final punctuation, so a template can end the sentence itself.
            "user" => return self.user.trim_end_matches(['.', '?', '!', ' ']).to_owned(),
            "result" => return self.result.map_or("", |r| r.content).to_owned(),
            "tool" => return self.result.map_or("", |r| r.name).to_owned(),
            _ => {}
        }
        if let Some(path) = name.strip_prefix("result.") {
            return json_path(self.result_json.as_ref(), path);
        }
        if let Some(path) = name.strip_prefix("args.") {
            return json_path(self.args_json.as_ref(), path);
        }
        self.captures.get(name).cloned().unwrap_or_default()
    }
}

/// A dotted path into a JSON document, as speakable text (strings without quotes).
fn json_path(root: Option<&Value>, path: &str) -> String {
    match json_value(root, path) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

/// The value at a dotted path; `*` maps the rest of the path over an array's elements.
fn json_value(root: Option<&Value>, path: &str) -> Option<Value> {
    let mut value = root?;
    let mut keys = path.split('.');
    while let Some(key) = keys.next() {
        if key == "*" {
            let rest: Vec<&str> = keys.collect();
            let items = value.as_array()?;
            let mapped = items
                .iter()
                .filter_map(|item| {
                    if rest.is_empty() {
                        Some(item.clone())
                    } else {
                        json_value(Some(item), &rest.join("."))
                    }
                })
                .collect();
            return Some(Value::Array(mapped));
        }
        value = match value {
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i))?,
            other => other.get(key)?,
        };
    }
    Some(value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::openai::validate::CalledTool;

    fn msg(role: Role, content: &str) -> Message {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    fn request(messages: Vec<Message>, tools: &[&str]) -> ValidRequest {
        ValidRequest {
            model: "m".into(),
            stream: true,
            include_usage: true,
            messages,
            tool_names: tools.iter().map(|t| t.to_string()).collect(),
            response_format: ResponseFormat::Text,
        }
    }

    const ALL_TOOLS: &[&str] = &["end_call", "get_weather"];

    #[test]
    fn the_builtin_script_parses() {
        assert!(!Script::builtin().rules.is_empty());
    }

    #[test]
    fn greets_when_no_one_spoke_yet() {
        let reply =
            Script::builtin().reply(&request(vec![msg(Role::System, "Be nice.")], ALL_TOOLS));
        assert!(reply.text.starts_with("Hello"));
        assert!(reply.tool_calls.is_empty());
    }

    #[test]
    fn any_message_gets_a_friendly_reply_of_a_few_sentences() {
        let reply = Script::builtin().reply(&request(
            vec![msg(Role::User, "I need to move my appointment")],
            ALL_TOOLS,
        ));
        assert!(reply.text.contains("I need to move my appointment"));
        let sentences = reply.text.matches(['.', '?', '!']).count();
        assert!((1..=3).contains(&sentences), "{}", reply.text);
    }

    #[test]
    fn goodbye_calls_end_call_only_when_offered() {
        let script = Script::builtin();
        let reply = script.reply(&request(vec![msg(Role::User, "OK, goodbye!")], ALL_TOOLS));
        assert_eq!(reply.tool_calls.len(), 1);
        assert_eq!(reply.tool_calls[0].name, "end_call");
        assert_eq!(reply.tool_calls[0].arguments, "{}");
        assert!(!reply.text.is_empty());

        let reply = script.reply(&request(vec![msg(Role::User, "Bye")], &[]));
        assert!(reply.tool_calls.is_empty());
        assert!(reply.text.contains("Goodbye"));
    }

    #[test]
    fn weather_calls_get_weather_with_the_city() {
        let script = Script::builtin();
        for (said, city) in [
            ("What's the weather in Paris today?", "Paris"),
            ("weather for new york please", "new york"),
            ("how is the weather", "London"),
        ] {
            let reply = script.reply(&request(vec![msg(Role::User, said)], ALL_TOOLS));
            assert_eq!(reply.tool_calls[0].name, "get_weather", "{said}");
            let args: Value = serde_json::from_str(&reply.tool_calls[0].arguments).unwrap();
            assert_eq!(args, serde_json::json!({"city": city}), "{said}");
        }
    }

    #[test]
    fn a_tool_result_is_used_in_the_reply() {
        let assistant = Message {
            role: Role::Assistant,
            content: String::new(),
            tool_calls: vec![CalledTool {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }],
            tool_call_id: None,
        };
        let result = Message {
            tool_call_id: Some("call_1".into()),
            ..msg(Role::Tool, "{\"summary\":\"sunny and 21 degrees\"}")
        };
        let reply = Script::builtin().reply(&request(
            vec![msg(Role::User, "weather in Paris?"), assistant, result],
            ALL_TOOLS,
        ));
        assert!(reply.tool_calls.is_empty(), "no loop back into the tool");
        assert!(
            reply.text.contains("sunny and 21 degrees"),
            "{}",
            reply.text
        );
        assert!(reply.text.contains("Paris"), "{}", reply.text);
    }

    #[test]
    fn a_whole_template_naming_an_array_becomes_the_array() {
        let script = Script::from_json(
            r#"{"rules":[
              {"when":{"tool_result":"search","user_contains":["dress"]},
               "reply":{"tool_calls":[{"name":"show","arguments":{"ids":"{{result.items.*.id}}","first":"{{result.items.0.id}}"}}]}},
              {"when":{"tool_result":"search"},"reply":{"text":"not a dress"}}
            ]}"#,
        )
        .unwrap();
        let asked = Message {
            role: Role::Assistant,
            content: String::new(),
            tool_calls: vec![CalledTool {
                id: "c1".into(),
                name: "search".into(),
                arguments: "{}".into(),
            }],
            tool_call_id: None,
        };
        let result = Message {
            tool_call_id: Some("c1".into()),
            ..msg(Role::Tool, r#"{"items":[{"id":"a"},{"id":"b"}]}"#)
        };
        let messages = |said: &str| vec![msg(Role::User, said), asked.clone(), result.clone()];
        let reply = script.reply(&request(messages("a pink dress"), &["search", "show"]));
        let args: Value = serde_json::from_str(&reply.tool_calls[0].arguments).unwrap();
        assert_eq!(args, serde_json::json!({"ids": ["a", "b"], "first": "a"}));
        // The user's words still choose among tool-result rules.
        let reply = script.reply(&request(messages("shoes"), &["search", "show"]));
        assert_eq!(reply.text, "not a dress");
    }

    #[test]
    fn templates_fall_back_and_keep_unclosed_braces() {
        let vars = Vars {
            user: "hi",
            result: None,
            result_json: None,
            args_json: None,
            captures: BTreeMap::new(),
        };
        assert_eq!(vars.fill("{{result.x|user}}!"), "hi!");
        assert_eq!(vars.fill("{{nothing|'dflt'}} {{"), "dflt {{");
    }

    #[test]
    fn raw_string_arguments_are_sent_verbatim() {
        let script = Script::from_json(
            r#"{"rules":[{"reply":{"tool_calls":[{"name":"f","arguments":"{\"n\":\"Ren\\u00e9\"}"}]}}]}"#,
        )
        .unwrap();
        let reply = script.reply(&request(vec![msg(Role::User, "x")], &["f"]));
        assert_eq!(reply.tool_calls[0].arguments, r#"{"n":"Ren\u00e9"}"#);
    }

    #[test]
    fn bad_scripts_are_refused() {
        assert!(Script::from_json(r#"{"rules":[{"reply":{}}]}"#).is_err());
        assert!(Script::from_json(r#"{"rules":[{"reply":{"text":"x"},"wen":{}}]}"#).is_err());
        assert!(
            Script::from_json(
                r#"{"rules":[{"reply":{"tool_calls":[{"name":"f","arguments":3}]}}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn without_a_matching_rule_the_fallback_answers() {
        let script = Script::from_json(
            r#"{"rules":[{"when":{"user_contains":["x"]},"reply":{"text":"x"}}]}"#,
        )
        .unwrap();
        let reply = script.reply(&request(vec![msg(Role::User, "y")], &[]));
        assert_eq!(reply.text, FALLBACK_TEXT);
    }
}
