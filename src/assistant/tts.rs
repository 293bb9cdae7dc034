//! Which voice speaks for an assistant: the TTS provider (`assistant_tts_model`) and its
//! provider-specific configuration (`assistant_tts_config`). The two must agree; a config is only
//! meaningful together with its model, so it is parsed with the model in hand.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::secret::mask_secret;
use crate::validation::{Violations, is_bcp47};

/// The TTS providers voxbridge speaks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TtsModel {
    Cartesia,
    Sarvam,
}

impl TtsModel {
    pub fn as_str(self) -> &'static str {
        match self {
            TtsModel::Cartesia => "cartesia",
            TtsModel::Sarvam => "sarvam",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cartesia" => Some(TtsModel::Cartesia),
            "sarvam" => Some(TtsModel::Sarvam),
            _ => None,
        }
    }
}

/// Sarvam's default language when the assistant names none, as the API documents.
pub const SARVAM_DEFAULT_LANGUAGE: &str = "bn-IN";

/// A validated TTS configuration, one variant per provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TtsConfig {
    Cartesia(CartesiaVoice),
    Sarvam(SarvamVoice),
}

/// `assistant_tts_config` for Cartesia.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct CartesiaVoice {
    /// The Cartesia voice id (a UUID).
    pub voice_id: String,
    /// Overrides the server's Cartesia key for this assistant. Never returned in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Cartesia model, e.g. `sonic-3` (default: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// ISO 639-1 language of the speech, e.g. `en` (default `en`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// `assistant_tts_config` for Sarvam.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SarvamVoice {
    /// The Sarvam speaker, e.g. `meera` or `anushka`.
    pub speaker: String,
    /// BCP-47 language code (default `bn-IN`).
    pub target_language_code: String,
    /// Overrides the server's Sarvam key for this assistant. Never returned in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Sarvam model, e.g. `bulbul:v2` (default: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl TtsConfig {
    pub fn model(&self) -> TtsModel {
        match self {
            TtsConfig::Cartesia(_) => TtsModel::Cartesia,
            TtsConfig::Sarvam(_) => TtsModel::Sarvam,
        }
    }

    pub fn api_key(&self) -> Option<&str> {
        match self {
            TtsConfig::Cartesia(c) => c.api_key.as_deref(),
            TtsConfig::Sarvam(s) => s.api_key.as_deref(),
        }
    }

    fn api_key_mut(&mut self) -> &mut Option<String> {
        match self {
            TtsConfig::Cartesia(c) => &mut c.api_key,
            TtsConfig::Sarvam(s) => &mut s.api_key,
        }
    }

    /// Parses `value` as the configuration of `model`, recording every broken rule under `field`.
    pub fn parse(model: TtsModel, value: &Value, field: &str, v: &mut Violations) -> Option<Self> {
        let Some(object) = value.as_object() else {
            v.add(field, "must be an object");
            return None;
        };
        match model {
            TtsModel::Cartesia => parse_cartesia(object, field, v).map(TtsConfig::Cartesia),
            TtsModel::Sarvam => parse_sarvam(object, field, v).map(TtsConfig::Sarvam),
        }
    }

    /// The configuration as responses show it: the api key masked.
    pub fn to_public_json(&self) -> Value {
        let mut shown = self.clone();
        if let Some(key) = shown.api_key_mut() {
            *key = mask_secret(key);
        }
        serde_json::to_value(shown).expect("plain structs serialise")
    }

    /// A client that read the masked key from a response and sent it back unchanged means "keep
    /// the stored key", not "set the key to the mask".
    pub fn keep_masked_key_from(&mut self, stored: &TtsConfig) {
        if let (Some(sent), Some(kept)) = (self.api_key(), stored.api_key())
            && sent == mask_secret(kept)
        {
            *self.api_key_mut() = Some(kept.to_owned());
        }
    }
}

/// Another voice for when the assistant's own fails (`assistant_tts_fallback`): what the call's
/// TTS could not say after its one retry is said by this one, and so is the rest of the call.
/// Stored with the call settings as `{model, config}`, the model telling how to read the config.
#[derive(Debug, Clone, PartialEq)]
pub struct TtsFallback(pub TtsConfig);

impl TtsFallback {
    /// Parses the API's `{"model": …, "config": {…}}` under `field`.
    pub fn parse(value: &Value, field: &str, v: &mut Violations) -> Option<Self> {
        let Some(object) = value.as_object() else {
            v.add(
                field,
                "must be an object: {\"model\": \"cartesia\" or \"sarvam\", \"config\": {…}}",
            );
            return None;
        };
        if let Some(unknown) = object.keys().find(|k| *k != "model" && *k != "config") {
            v.add(format!("{field}.{unknown}"), "is not a known field");
        }
        let model = match object.get("model").and_then(Value::as_str) {
            Some(name) => match TtsModel::parse(name) {
                Some(model) => Some(model),
                None => {
                    v.add(format!("{field}.model"), "must be one of: cartesia, sarvam");
                    None
                }
            },
            None => {
                v.add(format!("{field}.model"), "is required (cartesia or sarvam)");
                None
            }
        };
        let config = object
            .get("config")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let config = TtsConfig::parse(model?, &config, &format!("{field}.config"), v)?;
        Some(Self(config))
    }

    /// As responses show it: the api key masked.
    pub fn to_public_json(&self) -> Value {
        serde_json::json!({"model": self.0.model().as_str(), "config": self.0.to_public_json()})
    }

    /// A masked key sent back keeps the stored fallback's key (same provider only).
    pub fn keep_masked_key_from(&mut self, stored: &TtsFallback) {
        if self.0.model() == stored.0.model() {
            self.0.keep_masked_key_from(&stored.0);
        }
    }
}

impl Serialize for TtsFallback {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({"model": self.0.model().as_str(), "config": &self.0})
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TtsFallback {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let mut v = Violations::new();
        TtsFallback::parse(&value, "tts_fallback", &mut v).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "stored tts_fallback is invalid: {:?}",
                v.into_result().err()
            ))
        })
    }
}

fn string_field<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    field: &str,
    v: &mut Violations,
) -> Option<&'a str> {
    match object.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            v.add(format!("{field}.{name}"), "must be a string");
            None
        }
    }
}

const CARTESIA_FIELDS: [&str; 4] = ["voice_id", "api_key", "model_id", "language"];
const SARVAM_FIELDS: [&str; 4] = ["speaker", "target_language_code", "api_key", "model"];

fn reject_unknown(object: &Map<String, Value>, model: TtsModel, field: &str, v: &mut Violations) {
    let (known, other, other_name) = match model {
        TtsModel::Cartesia => (CARTESIA_FIELDS, SARVAM_FIELDS, "sarvam"),
        TtsModel::Sarvam => (SARVAM_FIELDS, CARTESIA_FIELDS, "cartesia"),
    };
    for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
        let message = if other.contains(&key.as_str()) {
            format!(
                "belongs to a {other_name} configuration, but assistant_tts_model is {}",
                model.as_str()
            )
        } else {
            format!(
                "is not a known field (expected one of: {})",
                known.join(", ")
            )
        };
        v.add(format!("{field}.{key}"), message);
    }
}

fn optional_nonblank(
    object: &Map<String, Value>,
    name: &str,
    field: &str,
    v: &mut Violations,
) -> Option<String> {
    let value = string_field(object, name, field, v)?;
    if value.trim().is_empty() {
        v.add(format!("{field}.{name}"), "must not be empty when given");
        return None;
    }
    Some(value.to_owned())
}

fn parse_cartesia(
    object: &Map<String, Value>,
    field: &str,
    v: &mut Violations,
) -> Option<CartesiaVoice> {
    let before = v.len();
    reject_unknown(object, TtsModel::Cartesia, field, v);
    let voice_id = string_field(object, "voice_id", field, v);
    match voice_id {
        None if !object.contains_key("voice_id") || object["voice_id"].is_null() => {
            let hint = if object.contains_key("speaker") {
                " (this looks like a sarvam configuration: set assistant_tts_model to \"sarvam\")"
            } else {
                ""
            };
            v.add(
                format!("{field}.voice_id"),
                format!("is required for cartesia{hint}"),
            );
        }
        Some(id) if !is_hyphenated_uuid(id) => {
            v.add(format!("{field}.voice_id"), "must be a UUID");
        }
        _ => {}
    }
    let api_key = optional_nonblank(object, "api_key", field, v);
    let model_id = optional_nonblank(object, "model_id", field, v);
    let language = optional_nonblank(object, "language", field, v);
    if let Some(lang) = &language
        && !is_bcp47(lang)
    {
        v.add(
            format!("{field}.language"),
            "must be a language code such as \"en\"",
        );
    }
    (v.len() == before).then(|| CartesiaVoice {
        voice_id: voice_id.unwrap_or_default().to_lowercase(),
        api_key,
        model_id,
        language,
    })
}

fn parse_sarvam(
    object: &Map<String, Value>,
    field: &str,
    v: &mut Violations,
) -> Option<SarvamVoice> {
    let before = v.len();
    reject_unknown(object, TtsModel::Sarvam, field, v);
    let speaker = string_field(object, "speaker", field, v);
    match speaker {
        None if !object.contains_key("speaker") || object["speaker"].is_null() => {
            let hint = if object.contains_key("voice_id") {
                " (this looks like a cartesia configuration: set assistant_tts_model to \"cartesia\")"
            } else {
                ""
            };
            v.add(
                format!("{field}.speaker"),
                format!("is required for sarvam{hint}"),
            );
        }
        Some(s) if s.trim().is_empty() => v.add(format!("{field}.speaker"), "must not be empty"),
        _ => {}
    }
    let language = string_field(object, "target_language_code", field, v);
    if let Some(lang) = language
        && !is_bcp47(lang)
    {
        v.add(
            format!("{field}.target_language_code"),
            "must be a BCP-47 language code such as \"hi-IN\"",
        );
    }
    let api_key = optional_nonblank(object, "api_key", field, v);
    let model = optional_nonblank(object, "model", field, v);
    (v.len() == before).then(|| SarvamVoice {
        speaker: speaker.unwrap_or_default().to_owned(),
        target_language_code: language.unwrap_or(SARVAM_DEFAULT_LANGUAGE).to_owned(),
        api_key,
        model,
    })
}

fn is_hyphenated_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(model: TtsModel, value: Value) -> Result<TtsConfig, Vec<String>> {
        let mut v = Violations::new();
        let parsed = TtsConfig::parse(model, &value, "cfg", &mut v);
        match v.into_result() {
            Ok(()) => Ok(parsed.expect("no violations means a config")),
            Err(errors) => Err(errors
                .into_iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect()),
        }
    }

    #[test]
    fn cartesia_needs_a_uuid_voice() {
        let ok = parse(
            TtsModel::Cartesia,
            json!({"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"}),
        );
        assert!(ok.is_ok());
        let err = parse(TtsModel::Cartesia, json!({"voice_id": "not-a-uuid"})).unwrap_err();
        assert_eq!(err, ["cfg.voice_id: must be a UUID"]);
        let err = parse(TtsModel::Cartesia, json!({})).unwrap_err();
        assert_eq!(err, ["cfg.voice_id: is required for cartesia"]);
    }

    #[test]
    fn a_config_of_the_other_model_is_a_mismatch() {
        let err = parse(TtsModel::Cartesia, json!({"speaker": "meera"})).unwrap_err();
        assert!(
            err.iter()
                .any(|e| e.contains("looks like a sarvam configuration")),
            "{err:?}"
        );
        let err = parse(
            TtsModel::Sarvam,
            json!({"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"}),
        )
        .unwrap_err();
        assert!(
            err.iter()
                .any(|e| e.contains("looks like a cartesia configuration")),
            "{err:?}"
        );
    }

    #[test]
    fn sarvam_defaults_its_language() {
        let TtsConfig::Sarvam(s) = parse(TtsModel::Sarvam, json!({"speaker": "meera"})).unwrap()
        else {
            panic!("sarvam expected")
        };
        assert_eq!(s.target_language_code, "bn-IN");
        let err = parse(
            TtsModel::Sarvam,
            json!({"speaker": "meera", "target_language_code": "hindi"}),
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
    }

    #[test]
    fn api_keys_are_masked_and_round_trip() {
        let stored = parse(
            TtsModel::Sarvam,
            json!({"speaker": "meera", "api_key": "sk_live_1234567890abcd"}),
        )
        .unwrap();
        let shown = stored.to_public_json();
        let shown_key = shown["api_key"].as_str().unwrap();
        assert!(!shown_key.contains("1234567890"), "{shown_key}");
        let mut sent_back = parse(TtsModel::Sarvam, shown).unwrap();
        sent_back.keep_masked_key_from(&stored);
        assert_eq!(sent_back, stored);
    }
}
