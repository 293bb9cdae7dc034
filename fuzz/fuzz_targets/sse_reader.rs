//! A streamed Chat Completions body through the SSE parser and the chunk decoding a live
//! completion uses (`llm::openai::read_body`): events, data lines, `[DONE]`, tool-call fragments.
//! The body is read once whole and once cut into reads of varying sizes (as the network cuts
//! it: inside lines, between `\r` and `\n`, inside UTF-8 characters); both must give the same
//! events, tool calls or error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxbridge::llm::openai::read_body;

const CUTS: [usize; 10] = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89];

fuzz_target!(|data: &[u8]| {
    let whole = read_body([data]);
    let mut pieces = Vec::new();
    let mut rest = data;
    for &cut in CUTS.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(cut.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    let cut = read_body(pieces);
    assert_eq!(
        format!("{whole:?}"),
        format!("{cut:?}"),
        "the same body cut differently read differently"
    );
});
