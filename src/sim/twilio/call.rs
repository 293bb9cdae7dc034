//! The life of one fake call, on its own task: ring, answer (or not), run the TwiML — which
//! for voxbridge means a `<Connect><Stream>` that starts a simulated caller — and end, with a
//! signed status callback at each step the request subscribed to, and answering-machine
//! detection's verdict while the first stream plays. REST updates (hang-up, redirect) arrive as
//! [`Interrupt`]s.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::amd::{self, Callee, Detector};
use super::twiml_reader::{StreamVerb, Verb, parse_twiml};
use super::webhook::{self, WebhookKind};
use super::{CallOutcome, Direction, Interrupt, SimCall, SimError, StreamRecord, TwilioSim};
use crate::sim::caller::{CallerConfig, CallerEnd, CallerReport, CallerScript, spawn_caller};
use crate::telephony::{CallStatus, StatusCallbackEvent, new_sid};

/// Twilio's default ring time, in seconds.
const DEFAULT_TIMEOUT_SECS: u32 = 60;

/// What the call task needs beyond the call record.
pub(crate) struct CallSetup {
    pub sid: String,
    pub auth_token: String,
    /// What the person (or machine) on the line does when a stream connects.
    pub script: CallerScript,
    /// Who answers, for answering-machine detection.
    pub callee: Callee,
    pub outcome: CallOutcome,
    /// The create request asked for `Method=GET` on its `Url`.
    pub url_method_get: bool,
    /// The create request asked for `StatusCallbackMethod=GET`.
    pub status_callback_get: bool,
    /// The create request asked for `AsyncAmdStatusCallbackMethod=GET`.
    pub amd_callback_get: bool,
}

/// Runs the call to its end.
pub(crate) async fn run(sim: TwilioSim, setup: CallSetup, interrupts: mpsc::Receiver<Interrupt>) {
    let Some(call) = sim.call(&setup.sid) else {
        return;
    };
    let mut run = CallRun {
        sim,
        setup,
        call,
        interrupts,
        sequence: 0,
        answered: None,
        detected: false,
    };
    let status = match run.call.direction {
        Direction::OutboundApi => run.outbound().await,
        Direction::Inbound => run.inbound().await,
    };
    run.finish(status).await;
}

/// How a stream (or a redirect) left the call.
enum After {
    /// Go on with the next verb.
    Continue,
    /// The call is over.
    HungUp,
    /// Run this document instead.
    Document(Vec<Verb>),
}

struct CallRun {
    sim: TwilioSim,
    setup: CallSetup,
    /// The call as created (its static fields).
    call: SimCall,
    interrupts: mpsc::Receiver<Interrupt>,
    /// `SequenceNumber` of the next status callback.
    sequence: u32,
    answered: Option<Instant>,
    /// Answering-machine detection has run (it listens to the call's first stream only).
    detected: bool,
}

impl CallRun {
    async fn outbound(&mut self) -> CallStatus {
        self.fire(StatusCallbackEvent::Initiated, CallStatus::Initiated)
            .await;
        self.set_status(CallStatus::Ringing);
        self.fire(StatusCallbackEvent::Ringing, CallStatus::Ringing)
            .await;
        let ring_limit = Duration::from_secs(
            self.call
                .timeout_secs
                .unwrap_or(DEFAULT_TIMEOUT_SECS)
                .into(),
        );
        match self.setup.outcome {
            CallOutcome::Failed => return CallStatus::Failed,
            CallOutcome::Busy { after } => {
                if self.ring(after.min(ring_limit)).await.is_some() {
                    return CallStatus::Canceled;
                }
                return CallStatus::Busy;
            }
            CallOutcome::NoAnswer { after } => {
                if self.ring(after.min(ring_limit)).await.is_some() {
                    return CallStatus::Canceled;
                }
                return CallStatus::NoAnswer;
            }
            CallOutcome::Answer { after } => {
                if self.ring(after.min(ring_limit)).await.is_some() {
                    return CallStatus::Canceled;
                }
                if after > ring_limit {
                    return CallStatus::NoAnswer;
                }
            }
        }
        self.answer().await;
        let verbs = if let Some(twiml) = self.call.twiml.clone() {
            match parse_twiml(&twiml) {
                Ok(verbs) => verbs,
                Err(e) => {
                    self.error(12100, format!("Document parse failure: {e}"));
                    return CallStatus::Completed;
                }
            }
        } else if let Some(url) = self.call.url.clone() {
            let get = self.setup.url_method_get;
            match self.fetch_twiml(&url, CallStatus::InProgress, get).await {
                Some(verbs) => verbs,
                None => return CallStatus::Completed,
            }
        } else {
            // An ApplicationSid: the fake has no applications to run.
            self.sim.update_call(&self.setup.sid, |c| {
                c.skipped_verbs.push("ApplicationSid".into())
            });
            Vec::new()
        };
        self.execute(verbs).await
    }

    async fn inbound(&mut self) -> CallStatus {
        self.fire(StatusCallbackEvent::Initiated, CallStatus::Initiated)
            .await;
        self.fire(StatusCallbackEvent::Ringing, CallStatus::Ringing)
            .await;
        let Some(url) = self.call.url.clone() else {
            return CallStatus::Failed;
        };
        let Some(verbs) = self.fetch_twiml(&url, CallStatus::Ringing, false).await else {
            // Twilio answers and apologises when the application fails.
            self.answer().await;
            self.sim.update_call(&self.setup.sid, |c| {
                c.said
                    .push("We are sorry, an application error has occurred. Goodbye.".into())
            });
            return CallStatus::Completed;
        };
        if let Some(Verb::Reject(reason)) = verbs.first() {
            let reason = reason.clone();
            self.sim
                .update_call(&self.setup.sid, |c| c.rejected = Some(reason));
            return CallStatus::Busy;
        }
        self.answer().await;
        self.execute(verbs).await
    }

    /// Rings for `duration`; answers the interrupt that cut it short (a hang-up or cancel).
    async fn ring(&mut self, duration: Duration) -> Option<Interrupt> {
        let deadline = Instant::now() + duration;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return None,
                interrupt = self.interrupts.recv() => match interrupt {
                    Some(i @ (Interrupt::HangUp | Interrupt::Cancel)) => return Some(i),
                    // Redirects are refused by the REST layer before answer.
                    Some(_) => {}
                    None => {
                        tokio::time::sleep_until(deadline).await;
                        return None;
                    }
                },
            }
        }
    }

    async fn answer(&mut self) {
        self.answered = Some(Instant::now());
        let now = super::rfc2822_now();
        self.sim.update_call(&self.setup.sid, |c| {
            c.status = CallStatus::InProgress;
            c.start_time = Some(now);
        });
        self.fire(StatusCallbackEvent::Answered, CallStatus::InProgress)
            .await;
    }

    fn set_status(&self, status: CallStatus) {
        self.sim.update_call(&self.setup.sid, |c| c.status = status);
    }

    fn error(&self, code: u32, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(call = %self.setup.sid, code, %message, "fake Twilio call error");
        self.sim.update_call(&self.setup.sid, |c| {
            c.errors.push(SimError { code, message })
        });
    }

    /// The parameters every call webhook carries.
    fn call_params(&self, status: CallStatus) -> Vec<(String, String)> {
        let c = &self.call;
        [
            ("AccountSid", c.account_sid.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", c.sid.as_str()),
            ("CallStatus", status.as_str()),
            ("Called", c.to.as_str()),
            ("Caller", c.from.as_str()),
            ("Direction", c.direction.as_str()),
            ("From", c.from.as_str()),
            ("To", c.to.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Sends the status callback of `event`, if the call subscribed to it.
    async fn fire(&mut self, event: StatusCallbackEvent, status: CallStatus) {
        let Some(url) = self.call.status_callback.clone() else {
            return;
        };
        let events = &self.call.status_callback_events;
        let wanted = if events.is_empty() {
            event == StatusCallbackEvent::Completed
        } else {
            events.contains(&event)
        };
        if !wanted {
            return;
        }
        let mut params = self.call_params(status);
        params.push(("CallbackSource".into(), "call-progress-events".into()));
        params.push(("SequenceNumber".into(), self.sequence.to_string()));
        params.push(("Timestamp".into(), super::rfc2822_now()));
        if event == StatusCallbackEvent::Completed
            && let Some(answered) = self.answered
        {
            params.push((
                "CallDuration".into(),
                whole_seconds(answered.elapsed()).to_string(),
            ));
        }
        self.sequence += 1;
        let sent = webhook::send(
            self.sim.http(),
            WebhookKind::Status,
            &self.setup.sid,
            self.setup.status_callback_get,
            &url,
            &self.setup.auth_token,
            params,
        )
        .await;
        self.sim.update(|s| s.webhooks.push(sent));
    }

    /// Asks `url` for TwiML (a voice webhook); records Twilio's errors when that fails.
    async fn fetch_twiml(&mut self, url: &str, status: CallStatus, get: bool) -> Option<Vec<Verb>> {
        let sent = webhook::send(
            self.sim.http(),
            WebhookKind::Voice,
            &self.setup.sid,
            get,
            url,
            &self.setup.auth_token,
            self.call_params(status),
        )
        .await;
        let result = match (&sent.error, sent.status) {
            (Some(e), _) => Err((11200, format!("HTTP retrieval failure: {e}"))),
            (None, Some(code)) if !(200..300).contains(&code) => Err((
                11200,
                format!("HTTP retrieval failure: {url} answered {code}"),
            )),
            _ => {
                let xml = sent
                    .content_type
                    .as_deref()
                    .and_then(|ct| ct.split(';').next())
                    .is_some_and(|ct| matches!(ct.trim(), "text/xml" | "application/xml"));
                if xml {
                    parse_twiml(&sent.body)
                        .map_err(|e| (12100, format!("Document parse failure: {e}")))
                } else {
                    Err((
                        12300,
                        format!(
                            "Invalid Content-Type {:?}: TwiML must be text/xml",
                            sent.content_type
                        ),
                    ))
                }
            }
        };
        self.sim.update(|s| s.webhooks.push(sent));
        match result {
            Ok(verbs) => Some(verbs),
            Err((code, message)) => {
                self.error(code, message);
                None
            }
        }
    }

    /// Runs a TwiML document (and whatever it is redirected to) to its end.
    async fn execute(&mut self, verbs: Vec<Verb>) -> CallStatus {
        let mut document = verbs;
        loop {
            let mut next = None;
            for verb in std::mem::take(&mut document) {
                if let Ok(interrupt) = self.interrupts.try_recv() {
                    match self.on_interrupt(interrupt).await {
                        After::Continue => {}
                        After::HungUp => return CallStatus::Completed,
                        After::Document(verbs) => {
                            next = Some(verbs);
                            break;
                        }
                    }
                }
                let after = match verb {
                    Verb::Connect(stream) => self.stream(stream).await,
                    Verb::Say(text) => {
                        self.sim.update_call(&self.setup.sid, |c| c.said.push(text));
                        After::Continue
                    }
                    Verb::Pause(secs) => self.pause(Duration::from_secs(secs.into())).await,
                    Verb::Dial(dial) => {
                        // The bridged leg is not simulated: it ends at once and TwiML goes on.
                        self.sim
                            .update_call(&self.setup.sid, |c| c.dials.push(dial));
                        After::Continue
                    }
                    Verb::Hangup | Verb::Reject(_) => After::HungUp,
                    Verb::Redirect(url) => {
                        match self.fetch_twiml(&url, CallStatus::InProgress, false).await {
                            Some(verbs) => After::Document(verbs),
                            None => After::HungUp,
                        }
                    }
                    Verb::Play(_) => self.skip("Play"),
                    Verb::Other(name) => self.skip(&name),
                };
                match after {
                    After::Continue => {}
                    After::HungUp => return CallStatus::Completed,
                    After::Document(verbs) => {
                        next = Some(verbs);
                        break;
                    }
                }
            }
            match next {
                Some(verbs) => document = verbs,
                // The end of the document ends the call.
                None => return CallStatus::Completed,
            }
        }
    }

    fn skip(&self, verb: &str) -> After {
        let verb = verb.to_owned();
        self.sim
            .update_call(&self.setup.sid, |c| c.skipped_verbs.push(verb));
        After::Continue
    }

    async fn pause(&mut self, duration: Duration) -> After {
        let deadline = Instant::now() + duration;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return After::Continue,
                Some(interrupt) = self.interrupts.recv() => match self.on_interrupt(interrupt).await {
                    After::Continue => {}
                    other => return other,
                },
            }
        }
    }

    /// A REST update while no stream is running.
    async fn on_interrupt(&mut self, interrupt: Interrupt) -> After {
        match interrupt {
            Interrupt::HangUp => After::HungUp,
            // `canceled` only stops calls that are not answered yet.
            Interrupt::Cancel => After::Continue,
            Interrupt::Redirect(twiml) => match parse_twiml(&twiml) {
                Ok(verbs) => After::Document(verbs),
                Err(e) => {
                    self.error(12100, format!("Document parse failure: {e}"));
                    After::HungUp
                }
            },
            Interrupt::RedirectUrl(url) => {
                match self.fetch_twiml(&url, CallStatus::InProgress, false).await {
                    Some(verbs) => After::Document(verbs),
                    None => After::HungUp,
                }
            }
        }
    }

    /// `<Connect><Stream>`: runs a simulated caller against the stream URL until one side ends.
    async fn stream(&mut self, stream: StreamVerb) -> After {
        if let Err((code, message)) = check_stream_url(&stream.url, self.sim.config().require_wss) {
            self.error(code, message);
            return After::Continue;
        }
        let stream_sid = new_sid("MZ");
        let record = StreamRecord {
            url: stream.url.clone(),
            stream_sid: stream_sid.clone(),
            parameters: stream.parameters.clone(),
        };
        self.sim
            .update_call(&self.setup.sid, |c| c.streams.push(record));
        let limit = self
            .call
            .time_limit_secs
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or(self.sim.config().max_call_duration);
        let elapsed = self.answered.map(|t| t.elapsed()).unwrap_or_default();
        let config = CallerConfig {
            url: stream.url,
            protocol: crate::sim::caller::wire::CallerProtocol::twilio(),
            account_sid: self.call.account_sid.clone(),
            call_sid: self.call.sid.clone(),
            stream_sid,
            custom_parameters: stream.parameters,
            script: self.setup.script.clone(),
            record: self.sim.config().record,
            max_duration: limit.saturating_sub(elapsed),
            connect_timeout: Duration::from_secs(10),
            signing_token: Some(self.setup.auth_token.clone()),
        };
        let caller = spawn_caller(config);
        let control = caller.control();
        let mut progress = caller.progress();
        let mut detector = self.detector();
        let mut caller_playing = true;
        let finished = caller.finished();
        tokio::pin!(finished);
        let mut after_stream = None;
        let far_future = Instant::now() + Duration::from_secs(86_400);
        let report = loop {
            let amd_deadline = detector.as_ref().and_then(Detector::deadline);
            tokio::select! {
                report = &mut finished => break report,
                changed = progress.changed(), if amd_deadline.is_some() && caller_playing => {
                    if changed.is_err() {
                        // The caller is done; its report is on its way.
                        caller_playing = false;
                        continue;
                    }
                    let heard = *progress.borrow_and_update();
                    if let Some(verdict) = detector.as_mut().and_then(|d| d.on_progress(heard)) {
                        self.answered_by(verdict);
                    }
                }
                () = tokio::time::sleep_until(amd_deadline.unwrap_or(far_future)), if amd_deadline.is_some() => {
                    let heard = *progress.borrow();
                    if let Some(verdict) = detector.as_mut().and_then(|d| d.on_timeout(heard)) {
                        self.answered_by(verdict);
                    }
                }
                Some(interrupt) = self.interrupts.recv() => match interrupt {
                    Interrupt::HangUp => {
                        control.hang_up();
                        after_stream = Some(After::HungUp);
                    }
                    Interrupt::Cancel => {}
                    Interrupt::Redirect(twiml) => {
                        control.redirect();
                        after_stream = Some(match parse_twiml(&twiml) {
                            Ok(verbs) => After::Document(verbs),
                            Err(e) => {
                                self.error(12100, format!("Document parse failure: {e}"));
                                After::HungUp
                            }
                        });
                    }
                    Interrupt::RedirectUrl(url) => {
                        control.redirect();
                        let report = (&mut finished).await;
                        self.record_report(report.clone());
                        return match self.fetch_twiml(&url, CallStatus::InProgress, false).await {
                            Some(verbs) => After::Document(verbs),
                            None => After::HungUp,
                        };
                    }
                },
            }
        };
        let caller_hung_up = matches!(
            report.end,
            Some(CallerEnd::ScriptHangUp | CallerEnd::MaxDuration)
        );
        self.record_report(report);
        match after_stream {
            Some(after) => after,
            None if caller_hung_up => After::HungUp,
            // The server closed the socket (or it broke): TwiML goes on after </Connect>.
            None => After::Continue,
        }
    }

    /// The detection to run on this stream, if the call asked for one and none has run.
    fn detector(&mut self) -> Option<Detector> {
        let mode = self.call.machine_detection?;
        if std::mem::replace(&mut self.detected, true) {
            return None;
        }
        let timeout = self
            .call
            .machine_detection_timeout_secs
            .unwrap_or(amd::DEFAULT_TIMEOUT_SECS);
        let mut detector = Detector::new(
            mode,
            self.setup.callee.clone(),
            self.setup.script.speech_count(),
            Duration::from_secs(timeout.into()),
            self.answered.unwrap_or_else(Instant::now),
        );
        // A fax is known before anything plays.
        if let Some(verdict) = detector.on_progress(Default::default()) {
            self.answered_by(verdict);
        }
        Some(detector)
    }

    /// Records the verdict and, for asynchronous detection, posts it signed to the callback on
    /// a task of its own: the call goes on while the application answers.
    fn answered_by(&self, verdict: &'static str) {
        self.sim.update_call(&self.setup.sid, |c| {
            c.answered_by = Some(verdict.to_owned())
        });
        let Some(url) = self
            .call
            .async_amd_callback
            .clone()
            .filter(|_| self.call.async_amd)
        else {
            return;
        };
        let duration = self.answered.map(|t| t.elapsed()).unwrap_or_default();
        let params = vec![
            ("AccountSid".to_owned(), self.call.account_sid.clone()),
            ("AnsweredBy".to_owned(), verdict.to_owned()),
            ("CallSid".to_owned(), self.call.sid.clone()),
            (
                "MachineDetectionDuration".to_owned(),
                duration.as_millis().to_string(),
            ),
        ];
        let sim = self.sim.clone();
        let sid = self.setup.sid.clone();
        let token = self.setup.auth_token.clone();
        let get = self.setup.amd_callback_get;
        tokio::spawn(async move {
            let sent = webhook::send(
                sim.http(),
                WebhookKind::Amd,
                &sid,
                get,
                &url,
                &token,
                params,
            )
            .await;
            sim.update(|s| s.webhooks.push(sent));
        });
    }

    fn record_report(&self, report: CallerReport) {
        let mut errors: Vec<SimError> = report
            .protocol_errors
            .iter()
            .map(|e| SimError {
                code: e.code,
                message: format!("Stream - Protocol - Invalid Message: {}", e.detail),
            })
            .collect();
        if let Some(CallerEnd::ConnectFailed(why)) = &report.end {
            errors.push(SimError {
                code: 31920,
                message: format!("Stream - WebSocket - Handshake Error: {why}"),
            });
        }
        self.sim.update_call(&self.setup.sid, |c| {
            c.errors.extend(errors);
            c.caller_reports.push(report);
        });
    }

    /// Records the end and sends the final callback; then the call is finished.
    async fn finish(&mut self, status: CallStatus) {
        let now = super::rfc2822_now();
        let duration = self.answered.map(|t| whole_seconds(t.elapsed()));
        self.sim.update_call(&self.setup.sid, |c| {
            c.status = status;
            c.end_time = Some(now);
            c.duration_secs = duration;
            c.ending = true;
        });
        self.fire(StatusCallbackEvent::Completed, status).await;
        let sid = self.setup.sid.clone();
        self.sim.update(|s| {
            s.controls.remove(&sid);
            if let Some(&i) = s.call_index.get(&sid) {
                s.calls[i].finished = true;
            }
        });
    }
}

/// Seconds, rounded to the nearest (Twilio reports whole seconds).
fn whole_seconds(d: Duration) -> u64 {
    (d.as_millis() as u64 + 500) / 1000
}

/// What Twilio refuses in a `<Stream url>`.
fn check_stream_url(url: &str, require_wss: bool) -> Result<(), (u32, String)> {
    let parsed = url::Url::parse(url).map_err(|e| {
        (
            31920,
            format!("Stream - WebSocket - Invalid URL {url:?}: {e}"),
        )
    })?;
    match parsed.scheme() {
        "wss" => {}
        "ws" if !require_wss => {}
        other => {
            return Err((
                31922,
                format!("Stream - WebSocket - Invalid URL scheme {other:?}: use wss"),
            ));
        }
    }
    if url.contains('?') {
        return Err((
            31920,
            format!(
                "Stream - WebSocket - query strings are not allowed in the stream URL {url:?}: \
                 use <Parameter>"
            ),
        ));
    }
    Ok(())
}
