//! The browser widget's socket protocol: the first frame as the handshake reads `start`, then
//! JSON control frames and binary PCM16 audio (resampled for a 48 kHz client) as the stream
//! reads them (`transport::browser::read_client_frames`, the same parser and audio path as
//! `BrowserSource`). One input is a sequence of frames split at newlines; a frame whose first
//! byte is NUL is binary (its other bytes are the audio), any other is text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxbridge::transport::browser::read_client_frames;

fuzz_target!(|data: &[u8]| {
    let frames = data.split(|&b| b == b'\n').map(|frame| match frame {
        [0, audio @ ..] => (true, audio),
        text => (false, text),
    });
    let _ = read_client_frames(frames);
});
