//! Cartesia's WebSocket server messages (`chunk`, `timestamps`, `done`, `error`, old and new error
//! shapes) with contexts `ctx-1` and `ctx-2` live, through the reader a live socket's session calls
//! on every text frame (`tts::cartesia::read_server_messages`). One input is a sequence of messages
//! split at newlines (the provider sends compact JSON), so state carries from one message to the
//! next.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxbridge::tts::cartesia::read_server_messages;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = read_server_messages(text.split('\n'));
});
