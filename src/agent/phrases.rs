//! Cuts the LLM's token stream into speakable phrases for TTS. Speech can start as soon as the
//! first clause is complete instead of waiting for the whole reply, which is most of the latency
//! a caller hears; all phrases of one reply go into one TTS context, so cutting at clauses costs
//! no prosody.
//!
//! A phrase ends at a sentence end (`.`, `!`, `?`, `…`, CJK and Devanagari stops, a newline) that
//! is followed by whitespace, or at a clause mark (`,`, `;`, `:`, dash) once the phrase has a few
//! words. Abbreviations (`Dr.`, `e.g.`), initials and decimals (`3.5`) do not end sentences.
//! Markdown that an LLM may emit (`**`, `#`, backticks) is removed: a caller should not hear it.

/// Fewest characters before a clause mark may end a phrase (shorter pieces sound choppy).
const MIN_CLAUSE_CHARS: usize = 12;
/// A phrase this long is cut at the next space even without punctuation, so a run-on reply
/// still starts speaking.
const MAX_PHRASE_CHARS: usize = 200;

const ABBREVIATIONS: [&str; 18] = [
    "mr", "mrs", "ms", "dr", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "approx", "no", "prof",
    "inc", "ltd", "a.m", "p.m",
];

/// Streaming phrase cutter; one per agent reply.
#[derive(Debug, Default)]
pub struct PhraseSplitter {
    buffer: String,
}

impl PhraseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a delta of LLM text and returns the phrases it completed (trimmed, non-empty).
    pub fn push(&mut self, delta: &str) -> Vec<String> {
        self.buffer.push_str(delta);
        let mut phrases = Vec::new();
        while let Some(end) = find_cut(&self.buffer) {
            let rest = self.buffer.split_off(end);
            let phrase = std::mem::replace(&mut self.buffer, rest);
            push_clean(&mut phrases, &phrase);
        }
        phrases
    }

    /// The remaining text once the reply is complete.
    pub fn finish(&mut self) -> Option<String> {
        let mut phrases = Vec::new();
        push_clean(&mut phrases, &std::mem::take(&mut self.buffer));
        phrases.pop()
    }

    /// Text received but not yet emitted as a phrase.
    pub fn pending(&self) -> &str {
        &self.buffer
    }
}

fn push_clean(phrases: &mut Vec<String>, raw: &str) {
    let cleaned = speakable(raw);
    if cleaned.chars().any(char::is_alphanumeric) {
        phrases.push(cleaned);
    }
}

/// Removes markdown markup and collapses whitespace.
pub fn speakable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        let word = word.trim_start_matches('#');
        let word: String = word
            .chars()
            .filter(|c| !matches!(c, '*' | '`' | '_'))
            .collect();
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word);
    }
    out
}

/// The byte index just after the first phrase end in `text`, if one is certain yet.
fn find_cut(text: &str) -> Option<usize> {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let after = i + c.len_utf8();
        match c {
            '\n' if text[..i].trim().chars().any(char::is_alphanumeric) => return Some(after),
            '。' | '！' | '？' | '।' | '॥' => return Some(after),
            '.' | '!' | '?' | '…' | ',' | ';' | ':' | '—' => {
                // Closing quotes/brackets and repeated marks belong to the phrase ("Really?!").
                let mut end = after;
                while let Some(&(j, next)) = chars.peek() {
                    if matches!(next, '.' | '!' | '?' | '"' | '\'' | ')' | '”' | '’') {
                        end = j + next.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                // The mark must be followed by whitespace; at the end of the buffer we cannot
                // know yet (the next token may be "5" in "3.5").
                let next = text[end..].chars().next()?;
                if !next.is_whitespace() {
                    continue;
                }
                let sentence_end = matches!(c, '.' | '!' | '?' | '…');
                if sentence_end && (c != '.' || !is_abbreviation(&text[..i])) {
                    return Some(end);
                }
                if !sentence_end && text[..i].trim().chars().count() >= MIN_CLAUSE_CHARS {
                    return Some(end);
                }
            }
            ' ' if i >= MAX_PHRASE_CHARS => return Some(after),
            _ => {}
        }
    }
    None
}

/// Whether the word before a `.` is an abbreviation or an initial, so the dot ends nothing.
fn is_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    let lower = word.to_lowercase();
    let single_initial = word.chars().count() == 1 && word.chars().all(char::is_uppercase);
    single_initial || ABBREVIATIONS.contains(&lower.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(deltas: &[&str]) -> Vec<String> {
        let mut s = PhraseSplitter::new();
        let mut out: Vec<String> = deltas.iter().flat_map(|d| s.push(d)).collect();
        out.extend(s.finish());
        out
    }

    #[test]
    fn sentences_and_clauses() {
        let out = split_all(&[
            "Sure",
            ", I can help with that",
            ". Your table for two is booked",
            " for seven tomorrow evening! Anything",
            " else?",
        ]);
        assert_eq!(
            out,
            [
                "Sure, I can help with that.",
                "Your table for two is booked for seven tomorrow evening!",
                "Anything else?"
            ]
        );
    }

    #[test]
    fn long_clauses_are_cut_at_commas() {
        let out =
            split_all(&["Let me check the weather for you, it should only take a moment, thanks"]);
        assert_eq!(
            out,
            [
                "Let me check the weather for you,",
                "it should only take a moment,",
                "thanks"
            ]
        );
    }

    #[test]
    fn abbreviations_initials_and_decimals_do_not_cut() {
        let out = split_all(&[
            "Dr. Smith sees J. Doe at 3.5 p.m. today. e.g. ",
            "tomorrow works.",
        ]);
        assert_eq!(
            out,
            [
                "Dr. Smith sees J. Doe at 3.5 p.m. today.",
                "e.g. tomorrow works."
            ]
        );
    }

    #[test]
    fn token_boundaries_do_not_matter() {
        let text = "Hello there! How are you today? I hope, truly, that all is well.";
        let whole = split_all(&[text]);
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let by_char = split_all(&chars.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(whole, by_char);
        assert_eq!(
            whole,
            [
                "Hello there!",
                "How are you today?",
                "I hope, truly,",
                "that all is well."
            ]
        );
    }

    #[test]
    fn quotes_and_repeated_marks_stay_with_the_sentence() {
        let out = split_all(&["He said \"yes.\" Really?! Yes."]);
        assert_eq!(out, ["He said \"yes.\"", "Really?!", "Yes."]);
    }

    #[test]
    fn markdown_is_not_spoken() {
        let out = split_all(&["**Great** news: `code` and _this_.\n## Next\n- item"]);
        assert_eq!(out, ["Great news:", "code and this.", "Next", "- item"]);
    }

    #[test]
    fn other_scripts_have_their_own_stops() {
        let out = split_all(&["नमस्ते। आप कैसे हैं? 你好。谢谢"]);
        assert_eq!(out, ["नमस्ते।", "आप कैसे हैं?", "你好。", "谢谢"]);
    }

    #[test]
    fn run_on_text_is_cut_eventually() {
        let text = "word ".repeat(60);
        let out = split_all(&[&text]);
        assert!(out.len() >= 2, "{out:?}");
        assert!(out.iter().all(|p| p.len() <= MAX_PHRASE_CHARS + 5));
    }
}
