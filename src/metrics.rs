//! Prometheus metrics (`GET /metrics`): live calls, calls by end reason, per-stage latency of a
//! reply, provider errors, the LLM's retries, fallbacks, failures and apologies, barge-ins,
//! skipped frames and webhook deliveries. Recording is a few
//! atomic operations; the text is rendered only when scraped.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Calls whose session is running.
pub const LIVE_CALLS: &str = "voxbridge_live_calls";
/// Calls ended, by `reason`.
pub const CALLS_ENDED: &str = "voxbridge_calls_ended_total";
/// Inbound calls refused, by `reason` (`limit`: the owner's concurrent-call limit).
pub const CALLS_REFUSED: &str = "voxbridge_calls_refused_total";
/// Server processes sharing the database found lost (no heartbeat) by this one.
pub const NODES_LOST: &str = "voxbridge_nodes_lost_total";
/// Controls sent to calls held by other nodes, by `outcome` (`live`, `not_live`, `timeout`).
pub const RELAYED_CONTROLS: &str = "voxbridge_relayed_controls_total";
/// Seconds spent in each `stage` of a reply: `stt_final` (end of user speech → STT final),
/// `llm_first_token` (turn end → first LLM token), `tts_first_audio` (first phrase sent → first
/// TTS audio), `first_frame_out` (first TTS audio → first frame written), `voice_to_voice`
/// (end of user speech → first frame written).
pub const STAGE_LATENCY: &str = "voxbridge_stage_latency_seconds";
/// Provider failures, by `provider` and `kind`.
pub const PROVIDER_ERRORS: &str = "voxbridge_provider_errors_total";
/// LLM completions asked again of the same model after a failure before their first token, by
/// the `kind` of that failure (`unavailable`, `rate_limited`, `first_token_timeout`...).
pub const LLM_RETRIES: &str = "voxbridge_llm_retries_total";
/// LLM completions handed to the assistant's fallback model, by the `kind` of the failure that
/// caused it.
pub const LLM_FALLBACKS: &str = "voxbridge_llm_fallbacks_total";
/// LLM completions that failed for good (after the retry and the fallback), by the `kind` of
/// the last failure.
pub const LLM_FAILURES: &str = "voxbridge_llm_failures_total";
/// Call replies the model failed before saying anything, replaced by the assistant's apology.
pub const LLM_APOLOGIES: &str = "voxbridge_llm_apologies_total";
/// TTS utterances that failed mid-reply and had their unsaid words sent again.
pub const TTS_RETRIES: &str = "voxbridge_tts_retries_total";
/// Switches to an assistant's fallback voice after its own failed a reply twice, by `outcome`
/// (`connected`, `failed`).
pub const TTS_FALLBACKS: &str = "voxbridge_tts_fallbacks_total";
/// Interruptions of the agent by the caller.
pub const BARGE_INS: &str = "voxbridge_barge_ins_total";
/// Replies stopped at the caller's first sound and resumed because no words confirmed it.
pub const BARGE_IN_RESUMES: &str = "voxbridge_barge_in_resumes_total";
/// Voicemail messages left on answering machines (heard to their end).
pub const VOICEMAILS: &str = "voxbridge_voicemails_total";
/// Inbound media frames skipped as malformed, oversized or out of order.
pub const FRAMES_SKIPPED: &str = "voxbridge_inbound_frames_skipped_total";
/// Webhook attempts, by `outcome` (`delivered`, `retry`, `failed`).
pub const WEBHOOK_ATTEMPTS: &str = "voxbridge_webhook_attempts_total";
/// Caller audio frames the STT could not take in time (its queue was full).
pub const STT_FRAMES_DROPPED: &str = "voxbridge_stt_frames_dropped_total";
/// Recorded frames left out because the recording task was behind (a slow disk).
pub const RECORDING_FRAMES_DROPPED: &str = "voxbridge_recording_frames_dropped_total";
/// Recordings that stopped early because writing failed (a full disk).
pub const RECORDINGS_FAILED: &str = "voxbridge_recordings_failed_total";
/// Text chats created.
pub const CHATS_CREATED: &str = "voxbridge_chats_created_total";
/// Messages answered in text chats.
pub const CHAT_MESSAGES: &str = "voxbridge_chat_messages_total";
/// Text chats ended, by `reason`.
pub const CHATS_ENDED: &str = "voxbridge_chats_ended_total";
/// Conversations of the conversations API created, by `function`.
pub const CONVERSATIONS_CREATED: &str = "voxbridge_conversations_created_total";
/// Messages answered in conversations of the conversations API.
pub const CONVERSATION_MESSAGES: &str = "voxbridge_conversation_messages_total";
/// Cases that became complete in conversations of the conversations API.
pub const CONVERSATION_CASES_COMPLETED: &str = "voxbridge_conversation_cases_completed_total";
/// Sales assistant answers, by whether they recommended products (`recommended`: true/false).
pub const SALES_REPLIES: &str = "voxbridge_sales_replies_total";
/// Conversation analyses finished, by `status` (`completed`, `invalid`, `failed`, `skipped`).
pub const ANALYSES: &str = "voxbridge_analyses_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and answers its handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5,
            5.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(STAGE_LATENCY.to_owned()), &buckets)
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); ours still renders what
        // reaches it, and the server keeps working either way.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_gauge!(LIVE_CALLS, "Calls whose session is running");
    metrics::describe_counter!(CALLS_ENDED, "Calls ended, by reason");
    metrics::describe_counter!(CALLS_REFUSED, "Inbound calls refused, by reason");
    metrics::describe_counter!(
        NODES_LOST,
        "Server processes sharing the database found lost by this one"
    );
    metrics::describe_counter!(
        RELAYED_CONTROLS,
        "Controls sent to calls held by other nodes, by outcome"
    );
    metrics::describe_histogram!(
        STAGE_LATENCY,
        metrics::Unit::Seconds,
        "Latency of each stage of a reply"
    );
    metrics::describe_counter!(PROVIDER_ERRORS, "Provider failures, by provider and kind");
    metrics::describe_counter!(
        LLM_RETRIES,
        "LLM completions asked again of the same model, by the kind of failure"
    );
    metrics::describe_counter!(
        LLM_FALLBACKS,
        "LLM completions handed to the fallback model, by the kind of failure"
    );
    metrics::describe_counter!(
        LLM_FAILURES,
        "LLM completions that failed for good (after retry and fallback), by kind"
    );
    metrics::describe_counter!(
        LLM_APOLOGIES,
        "Call replies the model failed before a word, replaced by the apology"
    );
    metrics::describe_counter!(BARGE_INS, "Interruptions of the agent by the caller");
    metrics::describe_counter!(
        BARGE_IN_RESUMES,
        "Replies stopped at the caller's first sound and resumed: no words confirmed it"
    );
    metrics::describe_counter!(
        TTS_RETRIES,
        "TTS utterances that failed mid-reply and had their unsaid words sent again"
    );
    metrics::describe_counter!(
        TTS_FALLBACKS,
        "Switches to the assistant's fallback voice after its own failed a reply twice"
    );
    metrics::describe_counter!(
        VOICEMAILS,
        "Voicemail messages left on answering machines (heard to their end)"
    );
    metrics::describe_counter!(CHATS_CREATED, "Text chats created");
    metrics::describe_counter!(CHAT_MESSAGES, "Messages answered in text chats");
    metrics::describe_counter!(CHATS_ENDED, "Text chats ended, by reason");
    metrics::describe_counter!(CONVERSATIONS_CREATED, "Conversations created, by function");
    metrics::describe_counter!(CONVERSATION_MESSAGES, "Messages answered in conversations");
    metrics::describe_counter!(
        CONVERSATION_CASES_COMPLETED,
        "Cases completed in conversations"
    );
    metrics::describe_counter!(ANALYSES, "Conversation analyses finished, by status");
    metrics::describe_counter!(
        SALES_REPLIES,
        "Sales assistant answers, by whether they recommended products"
    );
    metrics::describe_counter!(FRAMES_SKIPPED, "Inbound media frames skipped");
    metrics::describe_counter!(WEBHOOK_ATTEMPTS, "Webhook delivery attempts, by outcome");
    metrics::describe_counter!(
        STT_FRAMES_DROPPED,
        "Caller audio frames the STT could not take in time"
    );
}

/// Records one stage's latency.
pub fn stage(stage: &'static str, seconds: f64) {
    metrics::histogram!(STAGE_LATENCY, "stage" => stage).record(seconds);
}

/// The Prometheus text of every metric.
pub fn render() -> String {
    install().render()
}
