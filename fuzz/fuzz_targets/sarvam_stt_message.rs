//! Sarvam streaming STT's server messages (`data`, `events`, `error`), after a `flush`, through the
//! reader a live socket's session calls on every text frame (`stt::sarvam::read_server_messages`).
//! One input is a sequence of messages split at newlines (the provider sends compact JSON), so
//! state carries from one message to the next.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxbridge::stt::sarvam::read_server_messages;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = read_server_messages(text.split('\n'));
});
