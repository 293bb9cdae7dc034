//! The end-of-call report's compact latency summary: for each stage of the agent's replies (and
//! their totals), the median and the worst over the call, plus how many replies were cut by the
//! caller and how many tools ran. The per-reply detail stays in the call's details (`turns[]`).

use serde_json::{Map, Value, json};

use crate::store::TurnTiming;

/// `latency` of the end-of-call report.
pub fn summary(timings: &[TurnTiming]) -> Value {
    let mut stages = Map::new();
    let names = timings
        .first()
        .map(|t| t.stages.named().map(|(name, _)| name))
        .unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        let values: Vec<i64> = timings
            .iter()
            .filter_map(|t| t.stages.named()[i].1)
            .collect();
        if let Some(stat) = stat(values) {
            stages.insert((*name).to_owned(), stat);
        }
    }
    if let Some(stat) = stat(timings.iter().filter_map(|t| t.total_ms).collect()) {
        stages.insert("total".to_owned(), stat);
    }
    json!({
        "turns": timings.len(),
        "interrupted": timings.iter().filter(|t| t.outcome == "interrupted").count(),
        "tool_calls": timings.iter().map(|t| t.tools.len()).sum::<usize>(),
        "stages": stages,
    })
}

/// `{p50_ms, max_ms, count}` of some durations; `None` for none. The median is the lower
/// middle value, so it is always one that happened.
fn stat(mut values: Vec<i64>) -> Option<Value> {
    values.sort_unstable();
    let max = *values.last()?;
    let p50 = values[(values.len() - 1) / 2];
    Some(json!({ "p50_ms": p50, "max_ms": max, "count": values.len() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TurnStamps;

    fn reply(stopped: i64, first_token: i64, outcome: &str) -> TurnTiming {
        let mut t = TurnTiming {
            outcome: outcome.to_owned(),
            stamps: TurnStamps {
                caller_stopped_ms: Some(stopped),
                stt_final_ms: Some(stopped + 100),
                llm_request_ms: Some(stopped + 100),
                llm_first_token_ms: Some(first_token),
                ..TurnStamps::default()
            },
            ..TurnTiming::default()
        };
        t.derive_stages();
        t
    }

    #[test]
    fn each_stage_has_its_median_and_worst() {
        let timings = [
            reply(0, 400, "heard"),
            reply(1000, 1900, "interrupted"),
            reply(5000, 5300, "heard"),
        ];
        let s = summary(&timings);
        assert_eq!(s["turns"], 3);
        assert_eq!(s["interrupted"], 1);
        assert_eq!(
            s["stages"]["llm_first_token"],
            json!({"p50_ms": 300, "max_ms": 800, "count": 3})
        );
        assert_eq!(s["stages"]["stt_final"]["max_ms"], 100);
        assert!(
            s["stages"].get("first_mark").is_none(),
            "a stage that never happened is left out"
        );
        assert_eq!(summary(&[])["stages"], json!({}));
    }
}
