//! The analysis of a finished conversation: one structured-output request over the transcript
//! asking for what the assistant's `assistant_analysis` wants (a summary, the owner's structured
//! data, a success verdict), as one document.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::extract::{ExtractError, extract};
use super::settings::AnalysisSettings;
use crate::llm::{ChatMessage, ChatModel};

/// The longest part of the assistant's own prompt given as context.
const MAX_CONTEXT_CHARS: usize = 4_000;

/// Where an analysis stands, as stored and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisStatus {
    /// Running (or the server stopped while it ran).
    Pending,
    Completed,
    /// The model's answers did not match the schema, twice.
    Invalid,
    /// The model could not be asked (an error, a timeout of the request itself).
    Failed,
    /// The webhook stopped waiting for it (the analysis may still complete and be stored).
    Timeout,
    /// Nothing was said, so there was nothing to analyse.
    Skipped,
}

impl AnalysisStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisStatus::Pending => "pending",
            AnalysisStatus::Completed => "completed",
            AnalysisStatus::Invalid => "invalid",
            AnalysisStatus::Failed => "failed",
            AnalysisStatus::Timeout => "timeout",
            AnalysisStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

/// What the analysis found; a part that was not asked for is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Analysis {
    pub summary: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub structured_data: Option<Value>,
    pub success: Option<bool>,
    /// Why the analysis is not `completed`, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Analyses a conversation given as `(role, text)` lines; `context` is the assistant's prompt.
pub async fn analyze(
    llm: &dyn ChatModel,
    settings: &AnalysisSettings,
    context: &str,
    transcript: &[(String, String)],
) -> (AnalysisStatus, Analysis) {
    if !transcript.iter().any(|(role, _)| role == "user") {
        return (AnalysisStatus::Skipped, Analysis::default());
    }
    let schema = combined_schema(settings);
    let messages = vec![
        ChatMessage::System {
            content: instructions(settings, context),
        },
        ChatMessage::User {
            content: transcript
                .iter()
                .map(|(role, text)| format!("{role}: {text}"))
                .collect::<Vec<_>>()
                .join("\n"),
        },
    ];
    match extract(llm, messages, "conversation_analysis", &schema).await {
        Ok(document) => (AnalysisStatus::Completed, parts_of(document)),
        Err(ExtractError::Invalid { errors, last }) => {
            let mut analysis = last.map(parts_of).unwrap_or_default();
            analysis.error = Some(errors.join("; "));
            (AnalysisStatus::Invalid, analysis)
        }
        Err(e) => (
            AnalysisStatus::Failed,
            Analysis {
                error: Some(e.to_string()),
                ..Analysis::default()
            },
        ),
    }
}

/// One schema for everything asked: `{summary, structured_data, success}`, each only if wanted.
fn combined_schema(settings: &AnalysisSettings) -> Value {
    let mut properties = Map::new();
    if settings.summary {
        properties.insert("summary".into(), json!({"type": "string"}));
    }
    if let Some(schema) = &settings.structured_data_schema {
        properties.insert("structured_data".into(), schema.clone());
    }
    if settings.success_criteria.is_some() {
        properties.insert("success".into(), json!({"type": "boolean"}));
    }
    let required: Vec<&String> = properties.keys().collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn instructions(settings: &AnalysisSettings, context: &str) -> String {
    let mut text = String::from(
        "You analyse a finished conversation between an AI assistant and a person (a phone \
         call or a chat); the next message is its transcript, one line per turn. Answer with \
         one JSON document matching the given schema, and nothing else.\n",
    );
    if settings.summary {
        text.push_str(
            "- summary: two or three sentences on what the person wanted and what happened.\n",
        );
    }
    if settings.structured_data_schema.is_some() {
        text.push_str(
            "- structured_data: the data the schema asks for, taken from the conversation only; \
             use null where the conversation does not say and the schema allows it.\n",
        );
    }
    if let Some(criteria) = &settings.success_criteria {
        text.push_str(&format!(
            "- success: true if the conversation met these criteria, else false: {criteria}\n"
        ));
    }
    let context: String = context.chars().take(MAX_CONTEXT_CHARS).collect();
    if !context.trim().is_empty() {
        text.push_str(&format!(
            "\nFor context, the assistant's instructions were:\n{context}\n"
        ));
    }
    text
}

fn parts_of(document: Value) -> Analysis {
    Analysis {
        summary: document
            .get("summary")
            .and_then(Value::as_str)
            .map(str::to_owned),
        structured_data: document.get("structured_data").cloned(),
        success: document.get("success").and_then(Value::as_bool),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_asks_only_for_what_is_wanted() {
        let settings = AnalysisSettings {
            summary: false,
            structured_data_schema: Some(json!({"type": "object"})),
            success_criteria: Some("booked".into()),
        };
        let schema = combined_schema(&settings);
        assert_eq!(schema["required"], json!(["structured_data", "success"]));
        assert!(schema["properties"].get("summary").is_none());
        let text = instructions(&settings, "You book tables.");
        assert!(text.contains("booked") && text.contains("You book tables."));
        assert!(!text.contains("- summary"));
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for status in [
            AnalysisStatus::Pending,
            AnalysisStatus::Completed,
            AnalysisStatus::Invalid,
            AnalysisStatus::Failed,
            AnalysisStatus::Timeout,
            AnalysisStatus::Skipped,
        ] {
            assert_eq!(AnalysisStatus::parse(status.as_str()), Some(status));
        }
    }
}
