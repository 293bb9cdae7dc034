//! Owner-supplied JSON Schemas: a tool's `parameters` through the API's structural check
//! (`assistant::check_parameters_schema`), an analysis schema through the compile done when it
//! is saved (`analysis::check_schema`, the `jsonschema` crate without remote references), and a
//! compiled schema applied to a document as the structured-output check applies it to the
//! model's answer. The input is the schema, and after a NUL byte the document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxbridge::analysis::check_schema;
use voxbridge::assistant::check_parameters_schema;
use voxbridge::validation::Violations;

fuzz_target!(|data: &[u8]| {
    let (schema, instance) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(schema) = serde_json::from_slice::<serde_json::Value>(schema) else {
        return;
    };
    let mut violations = Violations::new();
    check_parameters_schema(&schema, "tool_parameters", &mut violations);
    if check_schema(&schema).is_ok()
        && let Ok(instance) = serde_json::from_slice::<serde_json::Value>(instance)
        && let Ok(validator) = jsonschema::draft202012::new(&schema)
    {
        let _ = validator.iter_errors(&instance).count();
    }
});
