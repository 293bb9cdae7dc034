//! The caller's keypad: what the assistant does with the digits a caller presses (Twilio `dtmf`
//! events, the browser widget's `dtmf` message). In `input` mode digits are collected into one
//! entry — ended by the terminator key, by `max_digits`, or by `timeout_ms` without a key — and
//! the entry is the caller's turn, as if said; in `ignore` mode they are dropped.

use serde::{Deserialize, Serialize};
use tokio::time::{Duration, Instant};
use utoipa::ToSchema;

/// What keypad digits are for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeypadMode {
    /// Digits are the caller's input to the assistant.
    #[default]
    Input,
    /// Digits are dropped.
    Ignore,
}

/// Per-assistant keypad settings (`assistant_dtmf_config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KeypadSettings {
    pub mode: KeypadMode,
    /// The key that ends an entry (not part of it); `null`: none. Default `#`.
    pub terminator: Option<String>,
    /// An entry ends this long (ms) after its last key (500-10000, default 2000).
    pub timeout_ms: u32,
    /// An entry ends at this many digits (1-32, default 16).
    pub max_digits: u32,
}

impl Default for KeypadSettings {
    fn default() -> Self {
        Self {
            mode: KeypadMode::Input,
            terminator: Some("#".to_owned()),
            timeout_ms: 2000,
            max_digits: 16,
        }
    }
}

/// Whether `key` is on a phone keypad.
pub fn is_key(key: char) -> bool {
    key.is_ascii_digit() || key == '*' || key == '#'
}

impl KeypadSettings {
    pub fn validate(&self, field: &str, v: &mut crate::validation::Violations) {
        if let Some(t) = &self.terminator {
            let mut chars = t.chars();
            if !matches!((chars.next(), chars.next()), (Some(c), None) if is_key(c)) {
                v.add(
                    format!("{field}.terminator"),
                    "must be one keypad key (0-9, * or #) or null",
                );
            }
        }
        if !(500..=10_000).contains(&self.timeout_ms) {
            v.add(
                format!("{field}.timeout_ms"),
                "must be between 500 and 10000",
            );
        }
        if !(1..=32).contains(&self.max_digits) {
            v.add(format!("{field}.max_digits"), "must be between 1 and 32");
        }
    }

    fn terminator(&self) -> Option<char> {
        self.terminator.as_deref().and_then(|t| t.chars().next())
    }
}

/// The entry being typed.
#[derive(Debug)]
pub struct Keypad {
    settings: KeypadSettings,
    digits: String,
    deadline: Option<Instant>,
}

impl Keypad {
    pub fn new(settings: KeypadSettings) -> Self {
        Self {
            settings,
            digits: String::new(),
            deadline: None,
        }
    }

    /// A key was pressed; answers the finished entry, if this key finished one.
    pub fn press(&mut self, key: char) -> Option<String> {
        if self.settings.mode == KeypadMode::Ignore || !is_key(key) {
            return None;
        }
        if self.settings.terminator() == Some(key) {
            return self.finish();
        }
        self.digits.push(key);
        if self.digits.len() >= self.settings.max_digits as usize {
            return self.finish();
        }
        self.deadline =
            Some(Instant::now() + Duration::from_millis(u64::from(self.settings.timeout_ms)));
        None
    }

    /// When the entry in progress ends without another key.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The deadline passed: the entry so far.
    pub fn timed_out(&mut self) -> Option<String> {
        self.finish()
    }

    fn finish(&mut self) -> Option<String> {
        self.deadline = None;
        (!self.digits.is_empty()).then(|| std::mem::take(&mut self.digits))
    }
}

/// The caller's turn for a keypad entry, in words the model reads.
pub fn entry_text(entry: &str) -> String {
    if entry.chars().count() == 1 {
        format!("(the caller pressed {entry} on the keypad)")
    } else {
        format!("(the caller entered {entry} on the keypad)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_entry_ends_at_the_terminator_the_limit_or_the_timeout() {
        let mut keypad = Keypad::new(KeypadSettings::default());
        assert_eq!(keypad.press('1'), None);
        assert_eq!(keypad.press('2'), None);
        assert_eq!(keypad.press('#').as_deref(), Some("12"));
        assert_eq!(keypad.press('#'), None, "an empty entry is nothing");

        let mut keypad = Keypad::new(KeypadSettings {
            max_digits: 3,
            ..KeypadSettings::default()
        });
        keypad.press('4');
        keypad.press('5');
        assert_eq!(keypad.press('6').as_deref(), Some("456"));

        let mut keypad = Keypad::new(KeypadSettings::default());
        keypad.press('9');
        let deadline = keypad.deadline().expect("an entry in progress");
        tokio::time::sleep_until(deadline).await;
        assert_eq!(keypad.timed_out().as_deref(), Some("9"));
        assert_eq!(keypad.deadline(), None);
    }

    #[test]
    fn ignore_mode_drops_keys_and_settings_are_checked() {
        let mut keypad = Keypad::new(KeypadSettings {
            mode: KeypadMode::Ignore,
            ..KeypadSettings::default()
        });
        assert_eq!(keypad.press('1'), None);
        assert_eq!(keypad.deadline(), None);
        let mut v = crate::validation::Violations::default();
        KeypadSettings {
            terminator: Some("##".into()),
            timeout_ms: 100,
            max_digits: 0,
            ..KeypadSettings::default()
        }
        .validate("assistant_dtmf_config", &mut v);
        assert_eq!(v.len(), 3);
        assert_eq!(entry_text("5"), "(the caller pressed 5 on the keypad)");
        assert_eq!(
            entry_text("1234"),
            "(the caller entered 1234 on the keypad)"
        );
    }
}
