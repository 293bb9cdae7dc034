//! What a structured answer is made from: the conversation as turns, and the ways a script's
//! `extract` entries find a value in what the user said.
//!
//! A conversation reaches the model in one of two shapes: a transcript sent as text in a user
//! message (`assistant: …` / `user: …` lines, as the end-of-call analysis sends it), or the
//! chat's own user and assistant messages. Both become the same list of turns.

use std::collections::BTreeMap;

use serde_json::Value;

use super::script::{Extract, MessagePick, capture_after};
use super::validate::{Message, Role};

/// Who spoke a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Speaker {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Turn {
    pub speaker: Speaker,
    pub text: String,
}

/// The conversation, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Transcript {
    pub turns: Vec<Turn>,
}

/// Line labels of a text transcript, by speaker.
const USER_LABELS: &[&str] = &["user", "caller", "customer", "human"];
const ASSISTANT_LABELS: &[&str] = &["assistant", "agent", "bot", "ai"];

/// Endings a mentioned word may carry: "refund" is mentioned in "refunded".
const SUFFIXES: &[&str] = &["s", "es", "d", "ed", "ing", "ly"];

/// The longest topic quoted in a summary, in characters.
const SUMMARY_TOPIC_CHARS: usize = 160;

impl Transcript {
    /// The turns of a request's messages, up to the first assistant message that is a JSON
    /// answer: what follows it is a client asking to correct that answer, not conversation.
    pub fn of(messages: &[Message]) -> Self {
        let mut turns = Vec::new();
        for message in messages {
            match message.role {
                Role::User => turns.extend(split(&message.content)),
                Role::Assistant if is_json_answer(&message.content) => break,
                Role::Assistant if !message.content.trim().is_empty() => turns.push(Turn {
                    speaker: Speaker::Assistant,
                    text: message.content.trim().to_owned(),
                }),
                _ => {}
            }
        }
        Self { turns }
    }

    pub fn user_turns(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.turns
            .iter()
            .filter(|t| t.speaker == Speaker::User)
            .map(|t| t.text.as_str())
    }

    /// A user turn got an assistant reply.
    pub fn has_reply(&self) -> bool {
        self.turns
            .iter()
            .position(|t| t.speaker == Speaker::User)
            .is_some_and(|first| {
                self.turns[first..]
                    .iter()
                    .any(|t| t.speaker == Speaker::Assistant)
            })
    }

    pub fn pick(&self, pick: MessagePick) -> Option<&str> {
        let mut users = self.user_turns();
        match pick {
            MessagePick::First => users.next(),
            MessagePick::Last => users.next_back(),
            // The first of equally long turns.
            MessagePick::Longest => users.rev().max_by_key(|t| t.chars().count()),
        }
    }

    /// One sentence: what the caller first asked (their first turn of three words or more,
    /// so a bare "hello" is passed over) and whether the assistant replied.
    pub fn summary(&self) -> String {
        let users: Vec<&str> = self.user_turns().collect();
        let Some(first) = users
            .iter()
            .find(|t| t.split_whitespace().count() >= 3)
            .or(users.first())
        else {
            return if self.turns.is_empty() {
                "No conversation took place.".to_owned()
            } else {
                "The assistant spoke, but the caller said nothing.".to_owned()
            };
        };
        let topic = clip(
            first.trim().trim_end_matches(['.', '!', '?', ',', ' ']),
            SUMMARY_TOPIC_CHARS,
        )
        .replace('"', "'");
        let outcome = if self.has_reply() {
            "and the assistant replied"
        } else {
            "and got no reply"
        };
        format!("The caller asked about \"{topic}\" {outcome}.")
    }
}

/// A user message as turns: a labelled transcript line by line (an unlabelled line continues the
/// turn before it; text before the first label is not a turn), else the whole message.
fn split(content: &str) -> Vec<Turn> {
    if !content.lines().any(|line| label(line).is_some()) {
        let text = content.trim();
        return if text.is_empty() {
            Vec::new()
        } else {
            vec![Turn {
                speaker: Speaker::User,
                text: text.to_owned(),
            }]
        };
    }
    let mut turns: Vec<Turn> = Vec::new();
    for line in content.lines() {
        match label(line) {
            Some((speaker, said)) => turns.push(Turn {
                speaker,
                text: said.trim().to_owned(),
            }),
            None => {
                if let Some(turn) = turns.last_mut()
                    && !line.trim().is_empty()
                {
                    if !turn.text.is_empty() {
                        turn.text.push(' ');
                    }
                    turn.text.push_str(line.trim());
                }
            }
        }
    }
    turns.retain(|t| !t.text.is_empty());
    turns
}

fn label(line: &str) -> Option<(Speaker, &str)> {
    let (head, said) = line.split_once(':')?;
    let head = head.trim().to_ascii_lowercase();
    if USER_LABELS.contains(&head.as_str()) {
        Some((Speaker::User, said))
    } else if ASSISTANT_LABELS.contains(&head.as_str()) {
        Some((Speaker::Assistant, said))
    } else {
        None
    }
}

fn is_json_answer(content: &str) -> bool {
    let content = content.trim();
    content.starts_with(['{', '['])
        && serde_json::from_str::<Value>(content).is_ok_and(|v| v.is_object() || v.is_array())
}

/// At most `max` characters, cut at a word when it can be, with an ellipsis.
pub(super) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match cut.rfind(char::is_whitespace) {
        Some(at) if at > cut.len() / 2 => cut[..at].trim_end().to_owned(),
        _ => cut,
    };
    format!("{cut}…")
}

/// Lowercase, with typographic apostrophes made plain, so "doesn’t" matches "doesn't".
fn normalize(text: &str) -> String {
    text.to_lowercase().replace(['’', '‘'], "'")
}

/// How a choice (an enum value, a synonyms key) is said: `late_delivery` is "late delivery".
fn phrase_of(choice: &str) -> String {
    normalize(choice).replace(['_', '-'], " ")
}

/// Where `phrase` is mentioned in `text` (both normalized): starting a word and ending one,
/// or followed by one of [`SUFFIXES`].
fn mention(text: &str, phrase: &str) -> Option<usize> {
    let phrase = phrase.trim();
    if phrase.is_empty() {
        return None;
    }
    let mut from = 0;
    while let Some(found) = text[from..].find(phrase) {
        let start = from + found;
        let end = start + phrase.len();
        let starts_word = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let rest = &text[end..];
        let tail = &rest[..rest
            .find(|c: char| !c.is_alphanumeric())
            .unwrap_or(rest.len())];
        if starts_word && (tail.is_empty() || SUFFIXES.contains(&tail)) {
            return Some(start);
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// The choice mentioned first in `text`, given each choice's phrases.
fn first_mentioned(text: &str, phrases: &[Vec<String>]) -> Option<usize> {
    phrases
        .iter()
        .enumerate()
        .filter_map(|(i, said)| {
            said.iter()
                .filter_map(|p| mention(text, p))
                .min()
                .map(|at| (at, i))
        })
        .min()
        .map(|(_, i)| i)
}

/// Finds values in the user's turns, following the script's `extract` entries.
pub(super) struct Finder<'a> {
    pub transcript: &'a Transcript,
    pub extract: &'a BTreeMap<String, Extract>,
}

impl Finder<'_> {
    pub fn entry(&self, name: Option<&str>) -> Option<&Extract> {
        name.and_then(|n| self.extract.get(n))
    }

    /// The text an entry finds: the latest user turn that has it; within a turn its
    /// `pattern`, then `after`, then the first `synonyms` key mentioned.
    pub fn text(&self, entry: &Extract) -> Option<String> {
        if let Some(pick) = entry.message {
            return self.transcript.pick(pick).map(str::to_owned);
        }
        let keys: Vec<&String> = entry.synonyms.keys().collect();
        let phrases = synonym_phrases(entry, keys.iter().map(|k| k.as_str()));
        self.transcript.user_turns().rev().find_map(|turn| {
            entry
                .pattern
                .as_ref()
                .and_then(|p| p.first(turn))
                .or_else(|| capture_after(turn, &entry.after, &entry.until))
                .or_else(|| first_mentioned(&normalize(turn), &phrases).map(|i| keys[i].clone()))
        })
    }

    /// Everything an entry finds, in the order it was said, each once (for arrays).
    pub fn texts(&self, entry: &Extract) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        if let Some(pick) = entry.message {
            found.extend(self.transcript.pick(pick).map(str::to_owned));
        }
        let keys: Vec<&String> = entry.synonyms.keys().collect();
        let phrases = synonym_phrases(entry, keys.iter().map(|k| k.as_str()));
        for turn in self.transcript.user_turns() {
            if let Some(pattern) = &entry.pattern {
                found.extend(pattern.all(turn));
            }
            found.extend(capture_after(turn, &entry.after, &entry.until));
            found.extend(mentioned_in_order(&normalize(turn), &phrases).map(|i| keys[i].clone()));
        }
        let mut seen = Vec::new();
        found.retain(|f| {
            let fresh = !seen.contains(f);
            seen.push(f.clone());
            fresh
        });
        found
    }

    /// Which of `choices` the user named (its own words or the entry's synonyms for it): the
    /// latest user turn that names one, the first named in that turn.
    pub fn choice(&self, choices: &[String], entry: Option<&Extract>) -> Option<usize> {
        let phrases = choice_phrases(choices, entry);
        self.transcript
            .user_turns()
            .rev()
            .find_map(|turn| first_mentioned(&normalize(turn), &phrases))
    }

    /// Every choice the user named, in the order first named.
    pub fn choices(&self, choices: &[String], entry: Option<&Extract>) -> Vec<usize> {
        let phrases = choice_phrases(choices, entry);
        let mut named: Vec<usize> = Vec::new();
        for turn in self.transcript.user_turns() {
            for i in mentioned_in_order(&normalize(turn), &phrases) {
                if !named.contains(&i) {
                    named.push(i);
                }
            }
        }
        named
    }
}

/// The index of the choice `text` names: equal to it, or mentioning it.
pub(super) fn named_choice(text: &str, choices: &[String]) -> Option<usize> {
    let text = normalize(text.trim());
    choices
        .iter()
        .position(|c| normalize(c) == text)
        .or_else(|| {
            let phrases: Vec<Vec<String>> = choices.iter().map(|c| vec![phrase_of(c)]).collect();
            first_mentioned(&text, &phrases)
        })
}

/// Each choice's phrases: its own words, then the entry's synonyms for it.
fn choice_phrases(choices: &[String], entry: Option<&Extract>) -> Vec<Vec<String>> {
    choices
        .iter()
        .map(|choice| {
            let mut phrases = vec![phrase_of(choice)];
            if let Some(words) = entry.and_then(|e| synonyms_for(e, choice)) {
                phrases.extend(words.iter().map(|w| normalize(w)));
            }
            phrases
        })
        .collect()
}

fn synonym_phrases<'k>(entry: &Extract, keys: impl Iterator<Item = &'k str>) -> Vec<Vec<String>> {
    keys.map(|key| {
        let mut phrases = vec![phrase_of(key)];
        if let Some(words) = entry.synonyms.get(key) {
            phrases.extend(words.iter().map(|w| normalize(w)));
        }
        phrases
    })
    .collect()
}

/// A synonyms list by its key, ignoring case.
fn synonyms_for<'e>(entry: &'e Extract, choice: &str) -> Option<&'e Vec<String>> {
    entry.synonyms.get(choice).or_else(|| {
        entry
            .synonyms
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(choice))
            .map(|(_, v)| v)
    })
}

/// The choices mentioned in `text`, in the order of their first mention.
fn mentioned_in_order(text: &str, phrases: &[Vec<String>]) -> impl Iterator<Item = usize> {
    let mut at: Vec<(usize, usize)> = phrases
        .iter()
        .enumerate()
        .filter_map(|(i, said)| {
            said.iter()
                .filter_map(|p| mention(text, p))
                .min()
                .map(|at| (at, i))
        })
        .collect();
    at.sort_unstable();
    at.into_iter().map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::openai::script::Pattern;

    fn message(role: Role, content: &str) -> Message {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    fn users(transcript: &Transcript) -> Vec<&str> {
        transcript.user_turns().collect()
    }

    #[test]
    fn a_text_transcript_becomes_turns() {
        let transcript = Transcript::of(&[
            message(Role::System, "user: not a turn, the instructions"),
            message(
                Role::User,
                "Transcript:\nassistant: Hello!\nuser: My parcel\nis late.\n\nCaller: Order 12345",
            ),
        ]);
        assert_eq!(
            transcript.turns,
            [
                Turn {
                    speaker: Speaker::Assistant,
                    text: "Hello!".into()
                },
                Turn {
                    speaker: Speaker::User,
                    text: "My parcel is late.".into()
                },
                Turn {
                    speaker: Speaker::User,
                    text: "Order 12345".into()
                },
            ]
        );
        assert!(!transcript.has_reply(), "the assistant only spoke first");
    }

    #[test]
    fn chat_messages_are_turns_up_to_a_json_answer() {
        let transcript = Transcript::of(&[
            message(Role::User, "Where is my order?"),
            message(Role::Assistant, "Let me look."),
            message(Role::User, "It's AB-123"),
            message(Role::Assistant, "{\"order_number\": \"AB-123\"}"),
            message(
                Role::User,
                "Your answer is invalid: order_number must match ...",
            ),
        ]);
        assert_eq!(users(&transcript), ["Where is my order?", "It's AB-123"]);
        assert!(transcript.has_reply());
    }

    #[test]
    fn the_summary_quotes_what_the_caller_first_asked() {
        let transcript = Transcript::of(&[message(
            Role::User,
            "assistant: Hi!\nuser: hello\nuser: I want to \"change\" my delivery address.\nassistant: Sure.",
        )]);
        assert_eq!(
            transcript.summary(),
            "The caller asked about \"I want to 'change' my delivery address\" and the assistant replied."
        );
        assert_eq!(
            Transcript::default().summary(),
            "No conversation took place."
        );
        assert!(clip(&"word ".repeat(100), 20).ends_with('…'));
        assert!(clip(&"word ".repeat(100), 20).chars().count() <= 20);
    }

    #[test]
    fn mentions_are_whole_words_with_plain_endings() {
        assert_eq!(mention("i was charged twice", "charge"), Some(6));
        assert_eq!(mention("it's urgently needed", "urgent"), Some(5));
        assert_eq!(mention("the bill is wrong", "bill"), Some(4));
        assert_eq!(mention("see you later", "late"), None);
        assert_eq!(mention("a rebill", "bill"), None);
        assert_eq!(
            mention("as soon as possible!", "as soon as possible"),
            Some(0)
        );
        assert_eq!(mention("anything", ""), None);
    }

    #[test]
    fn extraction_prefers_the_latest_turn_and_its_first_mention() {
        let transcript = Transcript::of(&[message(
            Role::User,
            "user: my order 11111 is late, it's urgent\nuser: sorry, it is order 22222 or 33333",
        )]);
        let extract = BTreeMap::new();
        let finder = Finder {
            transcript: &transcript,
            extract: &extract,
        };
        let entry = Extract {
            pattern: Some(Pattern::new(r"\d{5}").unwrap()),
            ..Extract::default()
        };
        assert_eq!(finder.text(&entry).as_deref(), Some("22222"));
        assert_eq!(finder.texts(&entry), ["11111", "22222", "33333"]);

        let urgency = Extract {
            synonyms: BTreeMap::from([
                (
                    "high".to_owned(),
                    vec!["urgent".to_owned(), "asap".to_owned()],
                ),
                ("low".to_owned(), vec!["no rush".to_owned()]),
            ]),
            ..Extract::default()
        };
        let choices = ["low".to_owned(), "medium".to_owned(), "high".to_owned()];
        assert_eq!(finder.choice(&choices, Some(&urgency)), Some(2));
        assert_eq!(finder.choice(&choices, None), None, "no synonyms, no word");
        assert_eq!(finder.text(&urgency).as_deref(), Some("high"));
        assert_eq!(named_choice("HIGH", &choices), Some(2));
        assert_eq!(named_choice("pretty high I'd say", &choices), Some(2));
    }
}
