//! Reassembles whole tool calls from the fragments a streamed completion sends.
//!
//! OpenAI sends a call's `id` and name once, in the first fragment for its `index`, then pieces
//! of the `arguments` JSON text split anywhere (inside keys, values, escape sequences). Other
//! servers differ: Ollama sends each call whole in one fragment, some omit the `id`, some omit
//! the `index`, some give several calls the same `index` with different ids. The accumulator
//! keys fragments by index, never parses arguments before the end, and only at the end checks
//! that each call is usable: a name, JSON-object arguments, a unique id (synthesised if absent,
//! so the `tool` answer can name it).

use super::{FunctionCall, ToolCall};

/// Most calls one reply may make.
pub const MAX_TOOL_CALLS: usize = 64;
/// Most bytes of names and arguments of one reply, so a runaway stream cannot grow a call's
/// memory without bound.
pub const MAX_TOOL_CALL_BYTES: usize = 64 * 1024;

/// One `delta.tool_calls[]` entry, borrowed from the chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolCallFragment<'a> {
    pub index: Option<u32>,
    pub id: Option<&'a str>,
    pub name: Option<&'a str>,
    pub arguments: Option<&'a str>,
}

/// Why the accumulated calls cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolCallError {
    #[error("tool call {position} has no function name")]
    MissingName { position: usize },
    #[error("tool call {name:?} has arguments that are not a JSON object: {reason}")]
    BadArguments { name: String, reason: String },
    #[error("the reply's tool calls exceed {MAX_TOOL_CALLS} calls or {MAX_TOOL_CALL_BYTES} bytes")]
    TooLarge,
}

#[derive(Debug, Default)]
struct PartialCall {
    index: Option<u32>,
    id: String,
    name: String,
    arguments: String,
}

/// The calls of one reply, in the order they started.
#[derive(Debug, Default)]
pub struct ToolCallAccumulator {
    calls: Vec<PartialCall>,
    bytes: usize,
    too_large: bool,
}

impl ToolCallAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Forgets everything (a retried request starts over).
    pub fn clear(&mut self) {
        self.calls.clear();
        self.bytes = 0;
        self.too_large = false;
    }

    /// Adds one fragment.
    pub fn push(&mut self, fragment: ToolCallFragment<'_>) {
        let id = fragment.id.filter(|id| !id.is_empty());
        let name = fragment.name.filter(|name| !name.is_empty());
        let arguments = fragment.arguments.unwrap_or("");
        self.bytes += id.map_or(0, str::len) + name.map_or(0, str::len) + arguments.len();
        if self.bytes > MAX_TOOL_CALL_BYTES {
            self.too_large = true;
            return;
        }
        let position = match self.continued_call(fragment.index, id, name) {
            Some(position) => position,
            None => {
                if self.calls.len() == MAX_TOOL_CALLS {
                    self.too_large = true;
                    return;
                }
                self.calls.push(PartialCall {
                    index: fragment.index,
                    ..PartialCall::default()
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[position];
        if let Some(id) = id
            && call.id.is_empty()
        {
            call.id.push_str(id);
        }
        if let Some(name) = name
            && name != call.name
        {
            // A repeated name is ignored; a different one continues a name sent in pieces.
            call.name.push_str(name);
        }
        call.arguments.push_str(arguments);
    }

    /// Which started call a fragment continues, if any.
    fn continued_call(
        &self,
        index: Option<u32>,
        id: Option<&str>,
        name: Option<&str>,
    ) -> Option<usize> {
        match index {
            Some(index) => {
                let position = self.calls.iter().rposition(|c| c.index == Some(index))?;
                let call = &self.calls[position];
                // Some servers put every call at index 0: a new id there is a new call.
                let another_call = id.is_some_and(|id| !call.id.is_empty() && call.id != id);
                (!another_call).then_some(position)
            }
            None => {
                let position = self.calls.len().checked_sub(1)?;
                let last = &self.calls[position];
                let continues = match id {
                    Some(id) => last.id == id,
                    // Without index or id, only a fragment naming no function continues a call.
                    None => name.is_none() || last.name.is_empty(),
                };
                continues.then_some(position)
            }
        }
    }

    /// The whole calls, ordered by index, each with an id, a name and JSON-object arguments
    /// (`""` becomes `{}`). Leaves the accumulator empty.
    pub fn finish(&mut self) -> Result<Vec<ToolCall>, ToolCallError> {
        if self.too_large {
            return Err(ToolCallError::TooLarge);
        }
        let mut calls = std::mem::take(&mut self.calls);
        self.clear();
        // Stable: calls without an index, or sharing one, keep their order of arrival.
        calls.sort_by_key(|c| c.index.unwrap_or(u32::MAX));
        let mut whole = Vec::with_capacity(calls.len());
        for (position, call) in calls.into_iter().enumerate() {
            if call.name.is_empty() {
                return Err(ToolCallError::MissingName { position });
            }
            let arguments = if call.arguments.trim().is_empty() {
                "{}".to_owned()
            } else {
                check_arguments(&call.name, &call.arguments)?;
                call.arguments
            };
            whole.push(ToolCall {
                id: call.id,
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: call.name,
                    arguments,
                },
            });
        }
        synthesise_missing_ids(&mut whole);
        Ok(whole)
    }
}

fn check_arguments(name: &str, arguments: &str) -> Result<(), ToolCallError> {
    let bad = |reason: String| ToolCallError::BadArguments {
        name: name.to_owned(),
        reason,
    };
    serde_json::from_str::<serde::de::IgnoredAny>(arguments).map_err(|e| bad(e.to_string()))?;
    if !arguments.trim_start().starts_with('{') {
        return Err(bad("not an object".to_owned()));
    }
    Ok(())
}

/// Gives every call without an id (or with an id another call already has) `call_<n>`, unique
/// within the reply, so each `tool` answer names exactly one call.
fn synthesise_missing_ids(calls: &mut [ToolCall]) {
    for position in 0..calls.len() {
        let taken = |id: &str, calls: &[ToolCall]| {
            calls
                .iter()
                .enumerate()
                .any(|(other, c)| other != position && c.id == id)
        };
        if !calls[position].id.is_empty() && !taken(&calls[position].id, calls) {
            continue;
        }
        let mut n = position;
        let mut id = format!("call_{n}");
        while taken(&id, calls) {
            n += calls.len();
            id = format!("call_{n}");
        }
        calls[position].id = id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag<'a>(
        index: Option<u32>,
        id: Option<&'a str>,
        name: Option<&'a str>,
        arguments: Option<&'a str>,
    ) -> ToolCallFragment<'a> {
        ToolCallFragment {
            index,
            id,
            name,
            arguments,
        }
    }

    fn summary(calls: &[ToolCall]) -> Vec<(&str, &str, &str)> {
        calls
            .iter()
            .map(|c| {
                (
                    c.id.as_str(),
                    c.function.name.as_str(),
                    c.function.arguments.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn fragments_of_one_index_concatenate() {
        let mut acc = ToolCallAccumulator::new();
        acc.push(frag(
            Some(0),
            Some("call_Zr3"),
            Some("reschedule"),
            Some(""),
        ));
        acc.push(frag(Some(0), None, None, Some("{\"da")));
        acc.push(frag(Some(0), None, None, Some("te\":\"2026-03-06\"}")));
        let calls = acc.finish().unwrap();
        assert_eq!(
            summary(&calls),
            vec![("call_Zr3", "reschedule", "{\"date\":\"2026-03-06\"}")]
        );
        assert_eq!(calls[0].kind, "function");
        assert!(acc.is_empty());
    }

    #[test]
    fn arguments_split_anywhere_even_inside_escapes_reassemble() {
        let arguments = r#"{"name":"Ren\u00e9 \"R\" Crème","n":1}"#;
        for cut_a in 0..=arguments.len() {
            for cut_b in cut_a..=arguments.len() {
                if !arguments.is_char_boundary(cut_a) || !arguments.is_char_boundary(cut_b) {
                    continue;
                }
                let mut acc = ToolCallAccumulator::new();
                acc.push(frag(
                    Some(0),
                    Some("c1"),
                    Some("f"),
                    Some(&arguments[..cut_a]),
                ));
                acc.push(frag(Some(0), None, None, Some(&arguments[cut_a..cut_b])));
                acc.push(frag(Some(0), None, None, Some(&arguments[cut_b..])));
                let calls = acc.finish().unwrap();
                assert_eq!(calls[0].function.arguments, arguments);
                let value: serde_json::Value =
                    serde_json::from_str(&calls[0].function.arguments).unwrap();
                assert_eq!(value["name"], "René \"R\" Crème");
            }
        }
    }

    #[test]
    fn interleaved_parallel_calls_are_keyed_by_index_and_ordered_by_it() {
        let mut acc = ToolCallAccumulator::new();
        acc.push(frag(Some(1), Some("b"), Some("second"), Some("{\"x\"")));
        acc.push(frag(Some(0), Some("a"), Some("first"), Some("{")));
        acc.push(frag(Some(1), None, None, Some(":2}")));
        acc.push(frag(Some(0), None, None, Some("}")));
        assert_eq!(
            summary(&acc.finish().unwrap()),
            vec![("a", "first", "{}"), ("b", "second", "{\"x\":2}")]
        );
    }

    #[test]
    fn whole_calls_in_one_fragment_each_work_with_or_without_index() {
        let mut acc = ToolCallAccumulator::new();
        acc.push(frag(None, None, Some("end_call"), Some("{}")));
        acc.push(frag(
            None,
            None,
            Some("get_weather"),
            Some("{\"city\":\"Paris\"}"),
        ));
        assert_eq!(
            summary(&acc.finish().unwrap()),
            vec![
                ("call_0", "end_call", "{}"),
                ("call_1", "get_weather", "{\"city\":\"Paris\"}")
            ]
        );
    }

    #[test]
    fn missing_ids_are_synthesised_unique() {
        let mut acc = ToolCallAccumulator::new();
        acc.push(frag(Some(0), None, Some("f"), Some("{}")));
        acc.push(frag(Some(1), Some("call_0"), Some("g"), Some("{}")));
        let calls = acc.finish().unwrap();
        assert_eq!(calls[1].id, "call_0");
        assert_ne!(calls[0].id, "call_0");
        assert!(calls[0].id.starts_with("call_"));
    }

    #[test]
    fn duplicate_ids_are_made_unique() {
        let mut acc = ToolCallAccumulator::new();
        acc.push(frag(Some(0), Some("same"), Some("f"), Some("{}")));
        acc.push(frag(Some(1), Some("same"), Some("g"), Some("{}")));
        let calls = acc.finish().unwrap();
        assert_ne!(calls[0].id, calls[1].id);
    }

    #[test]
    fn a_new_id_at_a_used_index_is_another_call() {
        let mut acc = ToolCallAccumulator::new();
        acc.push(frag(Some(0), Some("a"), Some("f"), Some("{\"n\":")));
        acc.push(frag(Some(0), None, None, Some("1}")));
        acc.push(frag(Some(0), Some("b"), Some("g"), Some("{}")));
        assert_eq!(
            summary(&acc.finish().unwrap()),
            vec![("a", "f", "{\"n\":1}"), ("b", "g", "{}")]
        );
    }

    #[test]
    fn repeated_id_and_name_in_every_fragment_are_not_doubled() {
        let mut acc = ToolCallAccumulator::new();
        acc.push(frag(Some(0), Some("a"), Some("f"), Some("{\"n\"")));
        acc.push(frag(Some(0), Some("a"), Some("f"), Some(":1}")));
        assert_eq!(
            summary(&acc.finish().unwrap()),
            vec![("a", "f", "{\"n\":1}")]
        );
    }

    #[test]
    fn empty_arguments_mean_an_empty_object() {
        let mut acc = ToolCallAccumulator::new();
        acc.push(frag(Some(0), Some("a"), Some("end_call"), Some("")));
        assert_eq!(acc.finish().unwrap()[0].function.arguments, "{}");
    }

    #[test]
    fn unusable_calls_are_typed_errors() {
        let mut acc = ToolCallAccumulator::new();
        acc.push(frag(Some(0), Some("a"), None, Some("{}")));
        assert_eq!(
            acc.finish(),
            Err(ToolCallError::MissingName { position: 0 })
        );

        acc.push(frag(Some(0), Some("a"), Some("f"), Some("{\"cut")));
        assert!(matches!(
            acc.finish(),
            Err(ToolCallError::BadArguments { .. })
        ));

        acc.push(frag(Some(0), Some("a"), Some("f"), Some("[1]")));
        assert!(matches!(
            acc.finish(),
            Err(ToolCallError::BadArguments { .. })
        ));
    }

    #[test]
    fn a_runaway_call_is_refused() {
        let mut acc = ToolCallAccumulator::new();
        let piece = "x".repeat(1024);
        acc.push(frag(Some(0), Some("a"), Some("f"), Some("{\"x\":\"")));
        for _ in 0..=(MAX_TOOL_CALL_BYTES / 1024) {
            acc.push(frag(Some(0), None, None, Some(&piece)));
        }
        assert_eq!(acc.finish(), Err(ToolCallError::TooLarge));
    }
}
