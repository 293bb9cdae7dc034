//! The shapes v1 answers carry, in the seed's camelCase: an assistant (general or advanced),
//! its teams, and a page of assistants.

use serde::Serialize;
use utoipa::ToSchema;

use crate::assistant::v1::{AssistantType, Team, V1Assistant, WorkflowType};

/// A team of an assistant.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamResponse {
    pub id: String,
    pub name: String,
    pub workflow_type: WorkflowType,
}

impl From<&Team> for TeamResponse {
    fn from(team: &Team) -> Self {
        Self {
            id: team.id.clone(),
            name: team.name.clone(),
            workflow_type: team.workflow_type,
        }
    }
}

/// An assistant as every route shows it. A general assistant has no MCP servers or extensions,
/// and, as in the seed's `GetGeneralAssistantResponse`, shows neither list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssistantResponse {
    pub id: String,
    /// The `x-user-id` that created it.
    pub user_id: String,
    pub name: String,
    pub assistant_type: AssistantType,
    pub description: String,
    pub system_prompt: String,
    pub provider: String,
    pub model_name: String,
    pub temperature: f32,
    pub ask_human: bool,
    pub interrupt: bool,
    pub main_unit: WorkflowType,
    pub support_units: Vec<WorkflowType>,
    /// Advanced assistants only: ids of the tenant's MCP servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_ids: Option<Vec<String>>,
    /// Advanced assistants only: ids of the tenant's HTTP tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_ids: Option<Vec<String>>,
    /// The main unit's team, then one per support unit.
    pub teams: Vec<TeamResponse>,
    /// UTC, to the second: `2024-01-01T00:00:00Z`.
    pub created_at: String,
}

impl From<&V1Assistant> for AssistantResponse {
    fn from(a: &V1Assistant) -> Self {
        let (core, p) = (&a.core, &a.profile);
        let advanced = p.assistant_type == AssistantType::AdvancedAssistant;
        Self {
            id: core.id.clone(),
            user_id: p.user_id.clone(),
            name: core.name.clone(),
            assistant_type: p.assistant_type,
            description: core.description.clone(),
            system_prompt: core.prompt.clone(),
            provider: p.provider.clone(),
            model_name: core.settings.llm.model.clone().unwrap_or_default(),
            temperature: core.settings.llm.temperature,
            ask_human: p.ask_human,
            interrupt: p.interrupt,
            main_unit: p.main_unit,
            support_units: p.support_units.clone(),
            mcp_ids: advanced.then(|| core.settings.mcp_ids.clone()),
            extension_ids: advanced.then(|| core.tool_ids.clone()),
            teams: p.teams.iter().map(TeamResponse::from).collect(),
            created_at: seed_timestamp(&core.created_at),
        }
    }
}

/// `data` of `GET /get-all`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetAssistantsResponse {
    pub assistants: Vec<AssistantResponse>,
    pub page_number: i64,
    pub max_per_page: i64,
    /// Pages at this size (0 when there are no assistants).
    pub total_page: i64,
}

/// A stored timestamp (`2024-01-15T10:00:00.000000`) as the seed shows it
/// (`2024-01-15T10:00:00Z`).
pub fn seed_timestamp(stored: &str) -> String {
    let seconds = stored.split('.').next().unwrap_or(stored);
    format!("{seconds}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_shown_to_the_second_in_utc() {
        assert_eq!(
            seed_timestamp("2024-01-15T10:00:00.123456"),
            "2024-01-15T10:00:00Z"
        );
    }
}
