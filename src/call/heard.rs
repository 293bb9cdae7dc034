//! What the caller has actually heard of the agent's reply. The agent places a playback mark
//! after each word (at the word's end in the audio, from the TTS's word timestamps) and one at
//! the end of the reply; the transport reports each mark once everything before it has played.
//! So at a barge-in the reply is cut to the words whose marks came back: known from the far end,
//! not guessed from a timer.

use crate::generation::Generation;

/// A mark we placed: after `n` words of a generation, or at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkPoint {
    Words(usize),
    End,
}

/// The name of the mark for `point` of `generation` (short: it travels on every echo).
pub fn mark_name(generation: Generation, point: MarkPoint) -> String {
    match point {
        MarkPoint::Words(n) => format!("g{}.{n}", generation.0),
        MarkPoint::End => format!("g{}.end", generation.0),
    }
}

/// Parses a mark name of ours; `None` for anything else.
pub fn parse_mark(name: &str) -> Option<(Generation, MarkPoint)> {
    let (generation, point) = name.strip_prefix('g')?.split_once('.')?;
    let generation = Generation(generation.parse().ok()?);
    let point = match point {
        "end" => MarkPoint::End,
        n => MarkPoint::Words(n.parse().ok()?),
    };
    Some((generation, point))
}

/// The words of one reply and how many of them have been heard.
#[derive(Debug, Default)]
pub struct SpokenWords {
    words: Vec<String>,
    heard: usize,
    finished: bool,
}

impl SpokenWords {
    /// Records the next word the TTS produced; answers how many words precede its end.
    pub fn push(&mut self, word: &str) -> usize {
        self.words.push(word.to_owned());
        self.words.len()
    }

    /// A mark echo: everything up to `point` has been played.
    pub fn heard_up_to(&mut self, point: MarkPoint) {
        match point {
            MarkPoint::Words(n) => self.heard = self.heard.max(n.min(self.words.len())),
            MarkPoint::End => {
                self.heard = self.words.len();
                self.finished = true;
            }
        }
    }

    /// Whether the end mark came back: the whole reply was played.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Whether any word timing arrived (without timings only the end mark tells anything).
    pub fn has_words(&self) -> bool {
        !self.words.is_empty()
    }

    /// The heard words, joined as spoken.
    pub fn heard_text(&self) -> String {
        self.words[..self.heard].join(" ")
    }

    pub fn heard_count(&self) -> usize {
        self.heard
    }

    /// The words after the last heard one will not be played as they were (the reply is held
    /// and will say them again in new audio): they are forgotten.
    pub fn forget_unheard(&mut self) {
        self.words.truncate(self.heard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_names_round_trip() {
        for point in [MarkPoint::Words(0), MarkPoint::Words(17), MarkPoint::End] {
            let name = mark_name(Generation(42), point);
            assert_eq!(parse_mark(&name), Some((Generation(42), point)), "{name}");
        }
        for other in ["", "g", "g1", "gx.1", "g1.x", "utt-17", "g1.2.3"] {
            assert_eq!(parse_mark(other), None, "{other}");
        }
    }

    #[test]
    fn heard_text_follows_echoes() {
        let mut w = SpokenWords::default();
        for word in ["Your", "table", "is", "booked", "for", "seven."] {
            w.push(word);
        }
        assert_eq!(w.heard_text(), "");
        w.heard_up_to(MarkPoint::Words(2));
        w.heard_up_to(MarkPoint::Words(1));
        assert_eq!(w.heard_text(), "Your table", "echoes never move backwards");
        w.heard_up_to(MarkPoint::Words(99));
        assert_eq!(w.heard_count(), 6);
        assert!(!w.finished());
        w.heard_up_to(MarkPoint::End);
        assert!(w.finished());
    }
}
