//! The case a conversation gathers: each field of its function, found so far or still missing.
//! An extraction that does not mention a field (null) never erases what an earlier message gave:
//! the customer said it once, and must not be asked again.

use serde_json::{Map, Value};

use super::functions::FunctionTemplate;

/// The fields of a case, each a value or null.
#[derive(Debug, Clone, PartialEq)]
pub struct Case(Map<String, Value>);

impl Case {
    /// Every field of `function`, none known yet.
    pub fn empty(function: &FunctionTemplate) -> Self {
        Self(
            function
                .field_names()
                .into_iter()
                .map(|name| (name.to_owned(), Value::Null))
                .collect(),
        )
    }

    /// A stored case, completed with any field the function gained since.
    pub fn from_value(function: &FunctionTemplate, value: &Value) -> Self {
        let mut case = Self::empty(function);
        case.merge(value);
        case
    }

    /// Takes what `found` knows (non-null, non-empty values) over what is known.
    pub fn merge(&mut self, found: &Value) {
        for (name, slot) in self.0.iter_mut() {
            let Some(value) = found.get(name) else {
                continue;
            };
            let empty = value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty());
            if !empty {
                *slot = value.clone();
            }
        }
    }

    /// Whether every field is known.
    pub fn complete(&self) -> bool {
        self.0.values().all(|v| !v.is_null())
    }

    /// The fields still missing, in the function's order.
    pub fn missing<'f>(&self, function: &'f FunctionTemplate) -> Vec<&'f str> {
        function
            .field_names()
            .into_iter()
            .filter(|name| self.0.get(*name).is_none_or(Value::is_null))
            .collect()
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// What the bot is told before it answers: what it has (so it confirms and never asks
    /// again) and what it still needs.
    pub fn briefing(&self, function: &FunctionTemplate) -> String {
        let known: Vec<String> = function
            .field_names()
            .into_iter()
            .filter_map(|name| {
                let value = self.0.get(name).filter(|v| !v.is_null())?;
                let shown = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                Some(format!("- {}: {shown}", function.fields[name]))
            })
            .collect();
        let missing: Vec<String> = self
            .missing(function)
            .into_iter()
            .map(|name| format!("- {}", function.fields[name]))
            .collect();
        let mut text =
            String::from("\n\nThe case so far.\nAlready given (do not ask for these again):\n");
        text.push_str(if known.is_empty() {
            "- nothing yet"
        } else {
            ""
        });
        text.push_str(&known.join("\n"));
        text.push_str("\nStill missing (ask only for these):\n");
        text.push_str(if missing.is_empty() {
            "- nothing: the case is complete; summarise it and say a colleague will follow up"
        } else {
            ""
        });
        text.push_str(&missing.join("\n"));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversations::functions::function;
    use serde_json::json;

    #[test]
    fn a_later_null_never_erases_what_was_given() {
        let support = function("customer_support").unwrap();
        let mut case = Case::empty(support);
        case.merge(&json!({"order_number": "7474839", "urgency_level": null}));
        case.merge(
            &json!({"order_number": null, "problem_category": "billing", "urgency_level": ""}),
        );
        assert_eq!(case.to_value()["order_number"], "7474839");
        assert_eq!(case.to_value()["problem_category"], "billing");
        assert_eq!(
            case.missing(support),
            ["problem_description", "urgency_level"]
        );
        assert!(!case.complete());
        let briefing = case.briefing(support);
        assert!(briefing.contains("the order number: 7474839"), "{briefing}");
        assert!(!briefing.contains("- the order number\n"), "{briefing}");
        case.merge(&json!({"problem_description": "Refund late", "urgency_level": "high"}));
        assert!(case.complete());
        assert!(case.briefing(support).contains("the case is complete"));
    }
}
