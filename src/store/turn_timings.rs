//! Per-reply timings of a call (or a chat): when each stage of an agent's reply happened, its
//! interruptions and its tool calls, as one JSON document per reply in `call_turn_timings`. The
//! call's recorder writes a reply's document once, when the reply is over; call and chat details
//! serve them as `turns[]` and the end-of-call report summarises them.
//!
//! Times are milliseconds from the start of the call (the same clock as the transcript's
//! `offset_ms`), so a timeline can draw them without knowing wall-clock time.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Store, StoreError, now_timestamp};

/// When each stage of a reply happened, in milliseconds from the call's start; null when the
/// stage did not happen (a fixed line has no caller speech or LLM, a reply cut before its audio
/// has no first frame).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TurnStamps {
    /// The local VAD heard the caller stop speaking.
    pub caller_stopped_ms: Option<i64>,
    /// The STT's final closed the caller's turn.
    pub stt_final_ms: Option<i64>,
    /// The LLM request went out.
    pub llm_request_ms: Option<i64>,
    /// The LLM's first token came back.
    pub llm_first_token_ms: Option<i64>,
    /// The first phrase went to the TTS.
    pub first_phrase_ms: Option<i64>,
    /// The TTS's first audio of the reply came.
    pub tts_first_audio_ms: Option<i64>,
    /// The writer sent the reply's first frame to the far end.
    pub first_frame_ms: Option<i64>,
    /// The far end echoed the reply's first mark (its first word was played).
    pub first_mark_ms: Option<i64>,
}

/// How long each stage took, in milliseconds: the gap between consecutive stamps. Null when
/// either end is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TurnStages {
    /// End of the caller's speech → STT final.
    pub stt_final_ms: Option<i64>,
    /// LLM request → first token.
    pub llm_first_token_ms: Option<i64>,
    /// First token → first phrase to the TTS (tool rounds before any words land here).
    pub first_phrase_ms: Option<i64>,
    /// First phrase → first TTS audio.
    pub tts_first_audio_ms: Option<i64>,
    /// First TTS audio → first frame sent.
    pub first_frame_ms: Option<i64>,
    /// First frame sent → first mark echoed (transport and playback of the first word).
    pub first_mark_ms: Option<i64>,
}

impl TurnStages {
    /// The stages by name, in order (the names the report's summary and the inspector use).
    pub fn named(&self) -> [(&'static str, Option<i64>); 6] {
        [
            ("stt_final", self.stt_final_ms),
            ("llm_first_token", self.llm_first_token_ms),
            ("first_phrase", self.first_phrase_ms),
            ("tts_first_audio", self.tts_first_audio_ms),
            ("first_frame", self.first_frame_ms),
            ("first_mark", self.first_mark_ms),
        ]
    }
}

/// The caller's sound over the reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TurnInterruption {
    /// The caller's first sound over the agent reached the agent.
    pub onset_ms: i64,
    /// The agent's audio was cleared (here and at the far end); null when nothing was playing.
    pub cleared_ms: Option<i64>,
    /// Words confirmed it: the reply was cut. Null for a false interruption.
    pub confirmed_ms: Option<i64>,
    /// Nothing confirmed it (a cough, an "uh-huh"): the reply went on from the first unheard
    /// word.
    pub resumed_ms: Option<i64>,
    /// What the caller had heard of the reply when it was cut (confirmed interruptions only).
    pub heard: Option<String>,
}

/// A tool the model called during the reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TurnTool {
    pub name: String,
    /// The arguments as the model wrote them (cut to 2,000 characters).
    pub arguments: String,
    /// Size of the result the model read, in bytes.
    pub result_bytes: i64,
    /// The start of the result (up to 500 characters), for a glance.
    pub result_preview: String,
    /// When the tool was called.
    pub started_ms: i64,
    pub duration_ms: i64,
    /// The error the tool answered with, if it failed.
    pub error: Option<String>,
}

/// One reply of the agent's, as `turns[]` of call and chat details serve it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TurnTiming {
    /// The reply's number in the call, from 1.
    pub turn: i64,
    /// `model` (the model's answer) or `line` (a fixed line: the greeting, a silence prompt, a
    /// goodbye).
    pub source: String,
    /// How it ended: `heard` (to its end), `interrupted` (cut by the caller), `taken_back` (the
    /// caller went on before hearing any of it) or `call_ended`.
    pub outcome: String,
    /// When the reply's turn began: the end of the caller's speech when known, otherwise when
    /// the reply was asked for.
    pub started_ms: i64,
    /// When it was over.
    pub ended_ms: i64,
    pub stamps: TurnStamps,
    pub stages: TurnStages,
    /// From the turn's first stamp to its last (the end of the caller's speech to the first
    /// mark echoed, for a whole answer).
    pub total_ms: Option<i64>,
    pub interruptions: Vec<TurnInterruption>,
    pub tools: Vec<TurnTool>,
}

impl TurnTiming {
    /// Fills `stages` and `total_ms` from `stamps`.
    pub fn derive_stages(&mut self) {
        let s = &self.stamps;
        let gap = |from: Option<i64>, to: Option<i64>| Some((to? - from?).max(0));
        self.stages = TurnStages {
            stt_final_ms: gap(s.caller_stopped_ms, s.stt_final_ms),
            llm_first_token_ms: gap(s.llm_request_ms, s.llm_first_token_ms),
            first_phrase_ms: gap(s.llm_first_token_ms, s.first_phrase_ms),
            tts_first_audio_ms: gap(s.first_phrase_ms, s.tts_first_audio_ms),
            first_frame_ms: gap(s.tts_first_audio_ms, s.first_frame_ms),
            first_mark_ms: gap(s.first_frame_ms, s.first_mark_ms),
        };
        let all = [
            s.caller_stopped_ms,
            s.stt_final_ms,
            s.llm_request_ms,
            s.llm_first_token_ms,
            s.first_phrase_ms,
            s.tts_first_audio_ms,
            s.first_frame_ms,
            s.first_mark_ms,
        ];
        // What the caller waits for: up to the first frame sent (voice to voice, as the server
        // sees it). The first mark comes back only after the first word has played, so it says
        // when the far end heard it, not how long the server took; without a frame (a chat, a
        // reply cut before its audio) the last stamp ends the wait.
        let first = all.iter().flatten().min();
        let last = s
            .first_frame_ms
            .or_else(|| all.iter().flatten().max().copied());
        self.total_ms = first.zip(last).map(|(a, b)| b - a);
    }
}

impl Store {
    /// Stores a reply's timings (again, if its number was stored before).
    pub async fn append_turn_timing(
        &self,
        call_id: &str,
        timing: &TurnTiming,
    ) -> Result<(), StoreError> {
        let document = serde_json::to_string(timing).expect("plain structs serialise");
        sqlx::query(
            "INSERT INTO call_turn_timings (call_id, turn, timing, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (call_id, turn) DO UPDATE SET timing = excluded.timing",
        )
        .bind(call_id)
        .bind(timing.turn)
        .bind(document)
        .bind(now_timestamp())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The number of the call's last recorded reply (0 before the first).
    pub async fn last_turn_timing(&self, call_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(turn), 0) AS n FROM call_turn_timings WHERE call_id = $1",
        )
        .bind(call_id)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// A call's reply timings, in order.
    pub async fn turn_timings(&self, call_id: &str) -> Result<Vec<TurnTiming>, StoreError> {
        let rows = sqlx::query(
            "SELECT turn, timing FROM call_turn_timings WHERE call_id = $1 ORDER BY turn",
        )
        .bind(call_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let document: String = r.try_get("timing")?;
                serde_json::from_str(&document)
                    .map_err(|e| StoreError::Corrupt(format!("turn timing of call {call_id}: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_the_gaps_between_stamps_and_the_total_spans_them() {
        let mut t = TurnTiming {
            stamps: TurnStamps {
                caller_stopped_ms: Some(1000),
                stt_final_ms: Some(1300),
                llm_request_ms: Some(1300),
                llm_first_token_ms: Some(1700),
                first_phrase_ms: Some(1750),
                tts_first_audio_ms: Some(1900),
                first_frame_ms: Some(1905),
                first_mark_ms: None,
            },
            ..TurnTiming::default()
        };
        t.derive_stages();
        assert_eq!(t.stages.stt_final_ms, Some(300));
        assert_eq!(t.stages.llm_first_token_ms, Some(400));
        assert_eq!(t.stages.first_phrase_ms, Some(50));
        assert_eq!(t.stages.tts_first_audio_ms, Some(150));
        assert_eq!(t.stages.first_frame_ms, Some(5));
        assert_eq!(t.stages.first_mark_ms, None);
        assert_eq!(t.total_ms, Some(905));
    }
}
