//! An assistant's texts rendered with a call's metadata (`agent::template::render`):
//! `{{key}}`, `{{key|default}}`, dotted keys, stray braces. The input is the template, and
//! after a NUL byte the metadata as JSON (an object is used, anything else ignored).
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxbridge::agent::template::{CallFacts, TemplateVars, render};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, metadata) = text.split_once('\0').unwrap_or((text, ""));
    let metadata: Option<serde_json::Value> = serde_json::from_str(metadata).ok();
    let facts = CallFacts {
        call_id: "0195f3a2-7c1e-7d2a-9b1c-1a2b3c4d5e6f".into(),
        to_number: "+14155550100".into(),
        from_number: "+14155550199".into(),
        now: Some(time::macros::datetime!(2026-12-06 05:00 UTC)),
    };
    let vars = TemplateVars::new(metadata.as_ref(), &facts);
    let rendered = render(template, &vars);
    // A text without a placeholder comes out as typed.
    if !template.contains("{{") {
        assert_eq!(rendered.text, template);
    }
});
