//! TwiML documents through the reader the fake Twilio follows answers with
//! (`sim::twilio::parse_twiml`): XML, entities, the verbs and their attributes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxbridge::sim::twilio::parse_twiml;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_twiml(xml);
});
