//! Runs a connected call from its first frame to its record: loads the assistant and its tools,
//! connects STT and TTS in parallel, starts the reader, writer and agent tasks, and when the agent
//! ends, closes the stream, stores the outcome and queues the end-of-call report. Transports call
//! [`run_call`] once their handshake has identified the call; nothing here knows which transport
//! it is.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;

use super::first_frames::FirstFrames;
use super::io::{AnsweredBy, CallControl, Control, EndReason};
use super::reader::{caller_vad, run_reader};
use super::recorder::Recorder;
use super::session::{CallIo, CallSetup, FallbackVoice, run_agent};
use super::writer::run_writer;
use super::{CallServices, providers};
use crate::agent::tools::Toolbox;
use crate::assistant::{Assistant, HttpTool};
use crate::catalog::tools::CatalogTools;
use crate::store::{CallRecord, CallStatus};
use crate::transport::{CallEvent, MediaSink, MediaSource};

/// How long the far end has to answer our close before its socket is dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// How many reader events may wait for the agent.
const MEDIA_QUEUE: usize = 64;
/// Audio chunks and marks that may wait for the writer.
const WRITER_QUEUE: usize = 32;
/// Transcript lines and the end event that may wait for the writer.
const EVENT_QUEUE: usize = 32;
/// The model's retries and fallbacks that may wait for the agent (at most two per completion).
const LLM_NOTICE_QUEUE: usize = 16;

/// Runs the call to its end. Never panics on provider or transport failures: they end the call
/// with a reason.
pub async fn run_call<S: MediaSource, K: MediaSink>(
    services: CallServices,
    call: CallRecord,
    source: S,
    mut sink: K,
    call_control: Option<Arc<dyn CallControl>>,
) {
    let span = tracing::info_span!("call", call_id = %call.id);
    async move {
        let (registration, control) = services.live.register(&call.id);
        // From here until its end is stored, the call is this node's: controls sent to it from
        // other nodes come here, and if this node dies a survivor ends it.
        let held = match services.store.hold_call(&call.id, &services.node.id).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "the call is not marked as this node's");
                false
            }
        };
        if call.rendered_voicemail_message.is_some() {
            replay_answered_by(&services, &call.id).await;
        }
        let ended = match load_assistant(&services, &call).await {
            Some((assistant, tools)) => {
                connect_and_talk(
                    &services,
                    &call,
                    &assistant,
                    tools,
                    source,
                    sink,
                    control,
                    call_control,
                )
                .await
            }
            None => {
                tracing::error!("the call's assistant is gone; closing the stream");
                close_early(&mut sink, EndReason::ProviderError).await;
                Ended::before_talking()
            }
        };
        // Registered until its end reason is stored: a status callback meanwhile leaves the
        // reason to the session.
        finish(&services, &call, ended, held).await;
        drop(registration);
    }
    .instrument(span)
    .await
}

/// Answering-machine detection's verdict may have come before the call was registered (a short
/// greeting, a slow connect): the callback then could only store it. Read after registering, so
/// a verdict is either found here or sent live by its callback (or both: the voicemail takes the
/// first).
async fn replay_answered_by(services: &CallServices, call_id: &str) {
    match services.store.get_call_any_owner(call_id).await {
        Ok(Some(call)) => {
            if let Some(answered_by) = call.answered_by.as_deref().and_then(AnsweredBy::parse) {
                services
                    .live
                    .send(call_id, Control::AnsweredBy(answered_by));
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "answered_by not read"),
    }
}

async fn load_assistant(
    services: &CallServices,
    call: &CallRecord,
) -> Option<(Assistant, Vec<HttpTool>)> {
    match services
        .store
        .assistant_with_tools(&call.owner_id, &call.assistant_id)
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "cannot load the assistant");
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn connect_and_talk<S: MediaSource, K: MediaSink>(
    services: &CallServices,
    call: &CallRecord,
    assistant: &Assistant,
    tools: Vec<HttpTool>,
    source: S,
    mut sink: K,
    control: mpsc::Receiver<super::io::Control>,
    call_control: Option<Arc<dyn CallControl>>,
) -> Ended {
    let config = &services.config;
    let format = sink.format();
    // The model's retries and fallbacks go to the agent, which records them on the call's clock.
    let (notices_tx, notices_rx) = mpsc::channel(LLM_NOTICE_QUEUE);
    let llm = match providers::language_model(
        config,
        assistant,
        &services.http,
        &services.egress,
        Some(notices_tx),
    ) {
        Ok(llm) => llm,
        Err(e) => {
            tracing::error!(error = %e, "llm misconfigured");
            close_early(&mut sink, EndReason::ProviderError).await;
            return Ended::before_talking();
        }
    };
    let (stt, stt_params) = providers::speech_to_text(config, assistant, format);
    // The writer's queue exists before the TTS connects: the TTS puts its audio straight in it.
    let (items_tx, items_rx) = mpsc::channel(WRITER_QUEUE);
    let (tts, tts_params) =
        providers::text_to_speech(config, &assistant.tts, format, items_tx.clone());
    // The fallback voice connects only if the call's own fails: most calls never need it.
    let fallback_voice = assistant.settings.tts_fallback.as_ref().map(|fallback| {
        let (client, params) =
            providers::text_to_speech(config, &fallback.0, format, items_tx.clone());
        FallbackVoice {
            model: fallback.0.model().as_str(),
            connect: client.connect(params),
        }
    });
    // All connect at once: the greeting waits only for the slowest (an MCP server's list has
    // its own bound, and a failing server only costs its tools).
    let events = sink.wants_events();
    let (stt, tts, mcp, catalog) = tokio::join!(
        stt.connect(stt_params),
        tts.connect(tts_params),
        mcp_toolset(services, assistant),
        catalog_tools(services, assistant, events)
    );
    let (stt, tts) = match (stt, tts) {
        (Ok(stt), Ok(tts)) => (stt, tts),
        (stt, tts) => {
            if let Err(e) = &stt {
                tracing::error!(error = %e, "stt did not connect");
                metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => "stt", "kind" => "connect").increment(1);
            }
            if let Err(e) = &tts {
                tracing::error!(error = %e, "tts did not connect");
                metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => "tts", "kind" => "connect").increment(1);
            }
            close_early(&mut sink, EndReason::ProviderError).await;
            return Ended::before_talking();
        }
    };
    let vad = match caller_vad(format, assistant.settings.vad) {
        Ok(vad) => vad.with_pause_after(assistant.settings.turn.end_of_turn_silence_ms),
        Err(e) => {
            tracing::error!(error = %e, "no vad for this audio format");
            close_early(&mut sink, EndReason::ProviderError).await;
            return Ended::before_talking();
        }
    };
    if let Err(e) = services
        .store
        .advance_call_status(&call.id, CallStatus::InProgress, None)
        .await
    {
        tracing::warn!(error = %e, "call status not stored");
    }

    let (media_tx, media_rx) = mpsc::channel(MEDIA_QUEUE);
    let (control_tx, control_rx) = mpsc::channel(8);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    // Both sides of a recording are stamped on one clock, started as the call's audio starts.
    let (caller_tap, agent_tap, recording) = match assistant.settings.recording {
        true => {
            let r = services
                .recordings
                .start(&call.id, format, tokio::time::Instant::now());
            (Some(r.caller), Some(r.agent), Some(r.task))
        }
        false => (None, None, None),
    };
    let reader = tokio::spawn(
        run_reader(
            source,
            format,
            stt.input.clone(),
            services.config.stt_chunk_ms.clamp(20, 250),
            vad,
            media_tx,
            caller_tap,
        )
        .in_current_span(),
    );
    let first_frames = Arc::new(FirstFrames::new(tokio::time::Instant::now()));
    let writer = tokio::spawn(
        run_writer(
            sink,
            items_rx,
            control_rx,
            events_rx,
            agent_tap,
            Some(Arc::clone(&first_frames)),
        )
        .in_current_span(),
    );
    let (recorder, recorder_task) = Recorder::spawn(services.store.clone(), call.id.clone());

    let setup = CallSetup {
        call_id: call.id.clone(),
        system_prompt: call.rendered_prompt.clone(),
        start_instruction: call.rendered_start_instruction.clone(),
        first_message_mode: assistant.settings.first_message_mode,
        silence_timeout: Duration::from_secs(u64::from(assistant.settings.silence_timeout_secs)),
        max_duration: Duration::from_secs(u64::from(assistant.settings.max_call_duration_secs)),
        interruption: assistant.settings.interruption.clone(),
        turn: assistant.settings.turn,
        keypad: assistant.settings.dtmf.clone(),
        toolbox: Toolbox::new(tools, call_control.is_some())
            .with_mcp(mcp)
            .with_catalog(catalog),
        temperature: assistant.settings.llm.temperature,
        max_tokens: assistant.settings.llm.max_tokens,
        output_format: format,
        events,
        voicemail_message: call.rendered_voicemail_message.clone(),
        llm_apology: assistant
            .settings
            .llm
            .apology
            .clone()
            .unwrap_or_else(|| super::session::LLM_FAILED.to_owned()),
    };
    let io = CallIo {
        media: media_rx,
        stt,
        tts,
        llm,
        writer: items_tx,
        writer_control: control_tx,
        events: events_tx,
        control,
        recorder,
        first_frames,
        egress: services.egress.clone(),
        call_control,
        llm_notices: notices_rx,
        fallback_voice,
    };
    let outcome = run_agent(setup, io).await;
    tracing::info!(
        reason = outcome.reason.as_str(),
        duration_ms = outcome.duration.as_millis() as u64,
        barge_ins = outcome.barge_ins,
        "call ended"
    );
    // The agent closed the writer; the reader ends when the far end answers the close (a
    // socket dropped before that would be reset under the far end's last frames).
    let _ = writer.await;
    let mut reader = reader;
    if tokio::time::timeout(CLOSE_GRACE, &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
    // Every turn is stored before the report is built from the store.
    let _ = recorder_task.await;
    // And the recording is complete (its taps went with the reader and writer), so the
    // report's link serves the whole call.
    if let Some(recording) = recording {
        let _ = recording.await;
    }
    Ended {
        reason: outcome.reason,
        talked: true,
    }
}

/// How a call's session ended.
struct Ended {
    reason: EndReason,
    /// The call got as far as talking (its providers connected): a provider failing after that
    /// ends a completed call, not a failed one.
    talked: bool,
}

impl Ended {
    fn before_talking() -> Self {
        Self {
            reason: EndReason::ProviderError,
            talked: false,
        }
    }
}

/// The tools of the assistant's MCP servers.
pub(crate) async fn mcp_toolset(
    services: &CallServices,
    assistant: &Assistant,
) -> Arc<crate::mcp::McpToolset> {
    let ids = &assistant.settings.mcp_ids;
    let servers = if ids.is_empty() {
        Vec::new()
    } else {
        match services
            .store
            .mcp_servers_by_ids(&assistant.owner_id, ids)
            .await
        {
            Ok(servers) => servers,
            Err(e) => {
                tracing::warn!(error = %e, "mcp servers not loaded");
                Vec::new()
            }
        }
    };
    if servers.is_empty() {
        return Arc::new(crate::mcp::McpToolset::empty(services.mcp.clone()));
    }
    Arc::new(services.mcp.toolset(servers).await)
}

/// The product tools of the assistant's linked catalog, if it has products; `can_show` where the
/// far end shows recommendations (the widget), else search only.
pub(crate) async fn catalog_tools(
    services: &CallServices,
    assistant: &Assistant,
    can_show: bool,
) -> Option<CatalogTools> {
    let business_id = assistant.settings.catalog_business_id.as_deref()?;
    CatalogTools::if_stocked(&services.store, &assistant.owner_id, business_id, can_show).await
}

/// Closes a stream whose call ends before its tasks started, telling a far end that shows events
/// why (the writer does that for a call that ran).
async fn close_early<K: MediaSink>(sink: &mut K, reason: EndReason) {
    if sink.wants_events() {
        let end = CallEvent::End {
            reason: reason.as_str(),
        };
        let _ = sink.send_event(&end).await;
    }
    let _ = sink.close().await;
}

/// Stores the end of the call and queues its report (unless the call was `held` as this node's
/// and a survivor took it over as lost meanwhile: that survivor reported it).
async fn finish(services: &CallServices, call: &CallRecord, ended: Ended, held: bool) {
    let reason = ended.reason;
    metrics::counter!(crate::metrics::CALLS_ENDED, "reason" => reason.as_str()).increment(1);
    let store = &services.store;
    if let Err(e) = store.set_end_reason(&call.id, reason.as_str()).await {
        tracing::error!(error = %e, "end reason not stored");
    }
    // A call whose providers never connected never started: it failed. One that talked and then
    // lost a provider completed (its end reason says why).
    let status = if !ended.talked {
        CallStatus::Failed
    } else {
        CallStatus::Completed
    };
    if let Err(e) = store
        .advance_call_status(&call.id, status, Some(reason.as_str()))
        .await
    {
        tracing::error!(error = %e, "final status not stored");
    }
    // Let go only after the reason is stored: until then, a status callback on any node leaves
    // the reason to this session. A survivor that took the call as lost has reported it.
    if !held {
        queue_report(services, &call.id).await;
        return;
    }
    match store.release_call(&call.id, &services.node.id).await {
        Ok(true) => queue_report(services, &call.id).await,
        Ok(false) => tracing::warn!("the call was taken over as lost; its report went out"),
        Err(e) => {
            tracing::error!(error = %e, "the call was not released");
            queue_report(services, &call.id).await;
        }
    }
}

pub use super::report::queue_report;
