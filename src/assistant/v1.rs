//! What a v1 assistant (seed 001) has beyond the core [`Assistant`]: the user inside the tenant
//! it belongs to, its type, the provider it names, its units and the teams built from them.
//!
//! The core row carries everything the agent reads (prompt, model, temperature, HTTP tools as
//! `extensionIds`, MCP servers), so a v1 assistant is chatted with through the same text channel
//! as a voice assistant; this profile is what only the seed's API shows.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Assistant;

/// `AssistantType`: a pre-configured general assistant (one per user) or a customised one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssistantType {
    GeneralAssistant,
    AdvancedAssistant,
}

impl AssistantType {
    pub const ALL: [AssistantType; 2] = [
        AssistantType::GeneralAssistant,
        AssistantType::AdvancedAssistant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AssistantType::GeneralAssistant => "general_assistant",
            AssistantType::AdvancedAssistant => "advanced_assistant",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The unit that leads: a general assistant chats, an advanced one leads a hierarchy.
    pub fn main_unit(self) -> WorkflowType {
        match self {
            AssistantType::GeneralAssistant => WorkflowType::Chatbot,
            AssistantType::AdvancedAssistant => WorkflowType::Hierarchical,
        }
    }
}

/// `WorkflowType`: the kinds of unit (team) an assistant is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowType {
    Chatbot,
    Ragbot,
    Searchbot,
    Sequential,
    Hierarchical,
    Workflow,
}

impl WorkflowType {
    pub const ALL: [WorkflowType; 6] = [
        WorkflowType::Chatbot,
        WorkflowType::Ragbot,
        WorkflowType::Searchbot,
        WorkflowType::Sequential,
        WorkflowType::Hierarchical,
        WorkflowType::Workflow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowType::Chatbot => "chatbot",
            WorkflowType::Ragbot => "ragbot",
            WorkflowType::Searchbot => "searchbot",
            WorkflowType::Sequential => "sequential",
            WorkflowType::Hierarchical => "hierarchical",
            WorkflowType::Workflow => "workflow",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The name of a support team of this kind, as the seed names them ("RAG Team", "Search
    /// Team"); the main unit's team is always "Main Team".
    pub fn team_name(self) -> &'static str {
        match self {
            WorkflowType::Chatbot => "Chatbot Team",
            WorkflowType::Ragbot => "RAG Team",
            WorkflowType::Searchbot => "Search Team",
            WorkflowType::Sequential => "Sequential Team",
            WorkflowType::Hierarchical => "Hierarchical Team",
            WorkflowType::Workflow => "Workflow Team",
        }
    }
}

/// The name of the main unit's team.
pub const MAIN_TEAM_NAME: &str = "Main Team";

/// One team of an assistant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub workflow_type: WorkflowType,
}

/// The v1 fields of an assistant (its `v1_assistants` row and teams).
#[derive(Debug, Clone, PartialEq)]
pub struct V1Profile {
    /// The `x-user-id` of its creator, a user inside the tenant (the API key's owner).
    pub user_id: String,
    pub assistant_type: AssistantType,
    /// A provider name the server knows (see [`crate::llm::providers`]).
    pub provider: String,
    pub ask_human: bool,
    pub interrupt: bool,
    pub main_unit: WorkflowType,
    pub support_units: Vec<WorkflowType>,
    /// The main unit's team first, then one per support unit in their order.
    pub teams: Vec<Team>,
}

/// A whole v1 assistant: the core the agent reads, and the profile.
#[derive(Debug, Clone, PartialEq)]
pub struct V1Assistant {
    pub core: Assistant,
    pub profile: V1Profile,
}

/// The teams of `main` and `support`: the main unit's team, then one per support unit. A team
/// that already exists for the same place and kind keeps its id, so updating the support units
/// does not rename the teams that stayed.
pub fn build_teams(main: WorkflowType, support: &[WorkflowType], existing: &[Team]) -> Vec<Team> {
    let new_id = || uuid::Uuid::new_v4().to_string();
    let main_team = existing
        .first()
        .filter(|t| t.name == MAIN_TEAM_NAME && t.workflow_type == main)
        .cloned()
        .unwrap_or_else(|| Team {
            id: new_id(),
            name: MAIN_TEAM_NAME.to_owned(),
            workflow_type: main,
        });
    let mut teams = vec![main_team];
    for &unit in support {
        let kept = existing
            .iter()
            .skip(1)
            .find(|t| t.workflow_type == unit && teams.iter().all(|k| k.id != t.id));
        teams.push(kept.cloned().unwrap_or_else(|| Team {
            id: new_id(),
            name: unit.team_name().to_owned(),
            workflow_type: unit,
        }));
    }
    teams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teams_are_the_main_unit_then_one_per_support_unit() {
        let teams = build_teams(
            WorkflowType::Hierarchical,
            &[WorkflowType::Ragbot, WorkflowType::Searchbot],
            &[],
        );
        let shown: Vec<(&str, WorkflowType)> = teams
            .iter()
            .map(|t| (t.name.as_str(), t.workflow_type))
            .collect();
        assert_eq!(
            shown,
            [
                ("Main Team", WorkflowType::Hierarchical),
                ("RAG Team", WorkflowType::Ragbot),
                ("Search Team", WorkflowType::Searchbot),
            ]
        );
    }

    #[test]
    fn teams_that_stay_keep_their_ids() {
        let before = build_teams(
            WorkflowType::Chatbot,
            &[WorkflowType::Ragbot, WorkflowType::Searchbot],
            &[],
        );
        let after = build_teams(
            WorkflowType::Chatbot,
            &[WorkflowType::Searchbot, WorkflowType::Workflow],
            &before,
        );
        assert_eq!(after[0].id, before[0].id, "main team");
        assert_eq!(after[1].id, before[2].id, "search team");
        assert!(before.iter().all(|t| t.id != after[2].id), "new team");
    }

    #[test]
    fn enums_read_their_seed_names() {
        for t in AssistantType::ALL {
            assert_eq!(AssistantType::parse(t.as_str()), Some(t));
        }
        for w in WorkflowType::ALL {
            assert_eq!(WorkflowType::parse(w.as_str()), Some(w));
        }
        assert_eq!(WorkflowType::parse("Ragbot"), None);
    }
}
