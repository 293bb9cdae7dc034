//! An incremental server-sent-events parser for streamed completions.
//!
//! Network reads cut the byte stream anywhere: inside a line, between `\r` and `\n`, inside a
//! UTF-8 character. The parser keeps the unconsumed tail and hands out whole events only. It is
//! written for the token path: its two buffers are reused for the life of a stream, so a steady
//! stream of tokens allocates nothing here, and an event's data is lent out rather than copied.
//!
//! It follows the SSE rules the Chat Completions stream needs: lines end with `\n`, `\r\n` or
//! `\r`; a blank line ends an event; several `data:` lines of one event join with `\n`; one space
//! after the colon is dropped; comment lines (`: keep-alive`) and other fields (`event:`, `id:`,
//! `retry:`) are ignored; `data: [DONE]` is the end sentinel, not JSON.

/// Longest event (or unterminated line) accepted: a runaway or hostile server must not make a
/// call's memory grow without bound. Real chunks are a few hundred bytes.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One complete event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseEvent<'a> {
    /// The event's data (its `data:` lines joined with `\n`), lent until the next call.
    Data(&'a [u8]),
    /// `data: [DONE]`: the server finished the stream.
    Done,
}

/// Input the parser refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event exceeded {MAX_EVENT_BYTES} bytes")]
    TooLong,
}

/// The parser's state between reads.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes received and not yet consumed start at `start`.
    buf: Vec<u8>,
    start: usize,
    /// Data of the event being assembled.
    data: Vec<u8>,
    /// Whether the current event has had a `data` field (an empty `data:` still counts).
    has_data: bool,
    /// The last event was handed out: clear `data` before assembling the next one.
    dispatched: bool,
    /// The last line ended with a `\r` at the end of a read: a `\n` opening the next read
    /// belongs to that line ending.
    skip_lf: bool,
    /// The byte-order mark (allowed once, at the very start) has been dealt with.
    bom_checked: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the network.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            // Only the unterminated tail is kept; it is short, so moving it is cheap.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Clears everything, for a fresh response on the same stream (a retry).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.data.clear();
        *self = Self {
            buf: std::mem::take(&mut self.buf),
            data: std::mem::take(&mut self.data),
            ..Self::default()
        };
    }

    /// The next complete event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<SseEvent<'_>>, SseError> {
        if self.dispatched {
            self.data.clear();
            self.has_data = false;
            self.dispatched = false;
        }
        if !self.bom_checked {
            let rest = &self.buf[self.start..];
            if rest.len() < BOM.len() && BOM.starts_with(rest) {
                return Ok(None);
            }
            if rest.starts_with(BOM) {
                self.start += BOM.len();
            }
            self.bom_checked = true;
        }
        loop {
            let rest = &self.buf[self.start..];
            if self.skip_lf && !rest.is_empty() {
                self.skip_lf = false;
                if rest[0] == b'\n' {
                    self.start += 1;
                    continue;
                }
            }
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if rest.len() + self.data.len() > MAX_EVENT_BYTES {
                    return Err(SseError::TooLong);
                }
                return Ok(None);
            };
            let line = &rest[..end];
            let mut consumed = end + 1;
            if rest[end] == b'\r' {
                match rest.get(end + 1) {
                    Some(b'\n') => consumed += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if line.is_empty() {
                self.start += consumed;
                if !self.has_data {
                    // Comments or other fields only: not an event.
                    continue;
                }
                self.dispatched = true;
                if self.data.trim_ascii() == b"[DONE]" {
                    return Ok(Some(SseEvent::Done));
                }
                return Ok(Some(SseEvent::Data(&self.data)));
            }
            if line[0] != b':' {
                let (field, value) = match line.iter().position(|&b| b == b':') {
                    Some(colon) => {
                        let value = &line[colon + 1..];
                        (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                    }
                    None => (line, &b""[..]),
                };
                if field == b"data" {
                    if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                        return Err(SseError::TooLong);
                    }
                    if self.has_data {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                    self.has_data = true;
                }
            }
            self.start += consumed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Data(String),
        Done,
    }

    fn drain(parser: &mut SseParser, out: &mut Vec<Owned>) {
        while let Some(event) = parser.next_event().unwrap() {
            out.push(match event {
                SseEvent::Data(d) => Owned::Data(String::from_utf8(d.to_vec()).unwrap()),
                SseEvent::Done => Owned::Done,
            });
        }
    }

    fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Vec<Owned> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            parser.push(&input[from..cut]);
            drain(&mut parser, &mut out);
            from = cut;
        }
        out
    }

    fn data(s: &str) -> Owned {
        Owned::Data(s.to_owned())
    }

    const STREAM: &str = "\u{feff}: keep-alive\n\ndata: {\"a\":\"caf\u{e9}\"}\n\nevent: x\nid: 7\nretry: 10\ndata:{\"b\":1}\r\n\r\ndata: line one\ndata: line two\n\n: OPENROUTER PROCESSING\r\rdata: \r\n\r\ndata: [DONE]\n\n";

    fn expected() -> Vec<Owned> {
        vec![
            data("{\"a\":\"caf\u{e9}\"}"),
            data("{\"b\":1}"),
            data("line one\nline two"),
            data(""),
            Owned::Done,
        ]
    }

    #[test]
    fn parses_events_comments_fields_and_done() {
        assert_eq!(parse_in_pieces(STREAM.as_bytes(), &[]), expected());
    }

    #[test]
    fn every_two_and_three_way_split_gives_the_same_events() {
        let input = STREAM.as_bytes();
        for i in 0..=input.len() {
            assert_eq!(parse_in_pieces(input, &[i]), expected(), "split at {i}");
            for j in i..=input.len() {
                for k in (j..=input.len()).step_by(11) {
                    assert_eq!(
                        parse_in_pieces(input, &[i, j, k]),
                        expected(),
                        "split at {i}, {j}, {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn byte_by_byte_feeding_works() {
        let input = STREAM.as_bytes();
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(parse_in_pieces(input, &cuts), expected());
    }

    #[test]
    fn line_endings_may_be_lf_crlf_or_cr() {
        for eol in ["\n", "\r\n", "\r"] {
            let input = format!("data: a{eol}{eol}data: b{eol}data: c{eol}{eol}");
            assert_eq!(
                parse_in_pieces(input.as_bytes(), &[]),
                vec![data("a"), data("b\nc")],
                "{eol:?}"
            );
        }
    }

    #[test]
    fn an_unfinished_event_is_not_handed_out() {
        assert_eq!(parse_in_pieces(b"data: {\"partial\":", &[]), vec![]);
        assert_eq!(parse_in_pieces(b"data: whole\n", &[]), vec![]);
    }

    #[test]
    fn lines_without_a_colon_and_unknown_fields_are_ignored() {
        assert_eq!(
            parse_in_pieces(b"garbage\nfoo: bar\ndata: x\n\n", &[]),
            vec![data("x")]
        );
        // A field name alone is a field with an empty value: `data` alone is an empty line of data.
        assert_eq!(parse_in_pieces(b"data\n\n", &[]), vec![data("")]);
    }

    #[test]
    fn only_one_space_after_the_colon_is_dropped() {
        assert_eq!(parse_in_pieces(b"data:  two\n\n", &[]), vec![data(" two")]);
    }

    #[test]
    fn done_tolerates_surrounding_whitespace_but_nothing_else() {
        assert_eq!(
            parse_in_pieces(b"data: [DONE] \n\n", &[]),
            vec![Owned::Done]
        );
        assert_eq!(
            parse_in_pieces(b"data: [DONE]x\n\n", &[]),
            vec![data("[DONE]x")]
        );
    }

    #[test]
    fn a_runaway_line_is_refused() {
        let mut parser = SseParser::new();
        parser.push(b"data: ");
        let blob = vec![b'x'; MAX_EVENT_BYTES + 1];
        parser.push(&blob);
        assert_eq!(parser.next_event(), Err(SseError::TooLong));
    }

    #[test]
    fn a_runaway_multi_line_event_is_refused() {
        let mut parser = SseParser::new();
        let line = format!("data: {}\n", "y".repeat(1000));
        let mut refused = false;
        for _ in 0..(MAX_EVENT_BYTES / 1000 + 2) {
            parser.push(line.as_bytes());
            if parser.next_event() == Err(SseError::TooLong) {
                refused = true;
                break;
            }
        }
        assert!(refused);
    }

    #[test]
    fn reset_forgets_a_partial_event() {
        let mut parser = SseParser::new();
        parser.push(b"data: half");
        assert_eq!(parser.next_event(), Ok(None));
        parser.reset();
        parser.push(b"data: fresh\n\n");
        assert_eq!(parser.next_event(), Ok(Some(SseEvent::Data(b"fresh"))));
    }
}
