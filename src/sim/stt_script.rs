//! What the fake STT providers "recognise": a list of utterance texts, one per detected
//! utterance, cycled. The audio decides *when* (see [`super::speech_detector`]); the script
//! decides *what*, so a test or a load run knows the words the agent will be told.
//!
//! Fixture format (`fixtures/sim/deepgram_stt.json`, `fixtures/sim/sarvam_stt.json`):
//! `{"utterances": ["first thing the caller says", "second thing", ...]}`.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

/// Utterance texts, cycled per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SttScript {
    utterances: Arc<[String]>,
}

/// A script file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid script {path}: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("script {path} has no utterances")]
    Empty { path: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    utterances: Vec<String>,
}

impl SttScript {
    /// A script of these texts (an empty one recognises only empty text).
    pub fn new(utterances: Vec<String>) -> Self {
        Self {
            utterances: utterances.into(),
        }
    }

    /// Reads a fixture file.
    pub fn from_file(path: &Path) -> Result<Self, ScriptError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: name.clone(),
            source,
        })?;
        let file: ScriptFile =
            serde_json::from_str(&text).map_err(|source| ScriptError::Parse {
                path: name.clone(),
                source,
            })?;
        if file.utterances.is_empty() {
            return Err(ScriptError::Empty { path: name });
        }
        Ok(Self::new(file.utterances))
    }

    /// The `index`-th utterance (cycling). An empty script hears nothing but "".
    pub fn utterance(&self, index: usize) -> &str {
        if self.utterances.is_empty() {
            return "";
        }
        &self.utterances[index % self.utterances.len()]
    }

    pub fn len(&self) -> usize {
        self.utterances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.utterances.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_utterances() {
        let script = SttScript::new(vec!["a".into(), "b".into()]);
        assert_eq!(script.utterance(0), "a");
        assert_eq!(script.utterance(3), "b");
        assert_eq!(SttScript::new(vec![]).utterance(5), "");
    }

    #[test]
    fn fixtures_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sim");
        for name in ["deepgram_stt.json", "sarvam_stt.json"] {
            let script = SttScript::from_file(&root.join(name)).expect(name);
            assert!(script.len() >= 3, "{name}");
        }
        assert!(matches!(
            SttScript::from_file(&root.join("absent.json")),
            Err(ScriptError::Read { .. })
        ));
    }
}
