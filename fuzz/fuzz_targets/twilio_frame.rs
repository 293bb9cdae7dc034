//! Twilio Media Streams text frames, through the decoder the socket's reader calls on every
//! text frame after `start` (`FrameDecoder::decode`). One input is a sequence of frames split at
//! newlines (frames are JSON, which has no raw newline inside a string), so sequence-number and
//! arena state carry from one frame to the next as they do on a live socket.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxbridge::telephony::twilio::stream::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut decoder = FrameDecoder::new("MZ22222222222222222222222222222222".to_owned());
    for frame in text.split('\n') {
        let _ = decoder.decode(frame);
    }
    // The whole input as one frame too: the path an unsplit (possibly multi-line) frame takes.
    let _ = FrameDecoder::new("MZ22222222222222222222222222222222".to_owned()).decode(text);
});
