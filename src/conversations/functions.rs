//! The functions a conversation can be created for. A function is data, not code: its bot's
//! prompt, the fields it gathers and the schema they are extracted with live in
//! `functions.json`; adding a function is adding an entry there. The same template can back a
//! voice assistant (`assistant_function`), whose calls then end with the same fields in their
//! analysis.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// One function's template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionTemplate {
    pub name: String,
    pub description: String,
    /// The bot's instructions.
    pub prompt: String,
    /// Each gathered field and how to ask for it, in the order the bot asks.
    pub fields: BTreeMap<String, String>,
    /// The JSON Schema the fields are extracted with (every field nullable until given).
    pub schema: Value,
}

impl FunctionTemplate {
    /// The fields in the schema's order (the order a customer is asked in).
    pub fn field_names(&self) -> Vec<&str> {
        self.schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect()
    }
}

/// Every function, loaded once from the compiled-in `functions.json`.
pub fn functions() -> &'static [FunctionTemplate] {
    static FUNCTIONS: OnceLock<Vec<FunctionTemplate>> = OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        // A unit test parses and checks this file, so it cannot fail at run time.
        serde_json::from_str(include_str!("functions.json")).expect("functions.json is valid")
    })
}

/// The function called `name`.
pub fn function(name: &str) -> Option<&'static FunctionTemplate> {
    functions().iter().find(|f| f.name == name)
}

/// The names of every function, for error messages.
pub fn function_names() -> Vec<&'static str> {
    functions().iter().map(|f| f.name.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_complete_and_its_schema_compiles() {
        assert!(!functions().is_empty());
        for f in functions() {
            crate::analysis::check_schema(&f.schema).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            let names = f.field_names();
            assert!(!names.is_empty(), "{}", f.name);
            for name in names {
                assert!(
                    f.fields.contains_key(name),
                    "{}: {name} has no label",
                    f.name
                );
                assert!(
                    f.schema["properties"][name].is_object(),
                    "{}: {name} not in the schema",
                    f.name
                );
            }
        }
        let support = function("customer_support").expect("the seed's function");
        assert_eq!(
            support.field_names(),
            [
                "order_number",
                "problem_category",
                "problem_description",
                "urgency_level"
            ]
        );
    }
}
