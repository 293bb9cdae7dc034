//! Twilio: Programmable Voice webhooks (form-encoded, signed with `X-Twilio-Signature`), TwiML
//! answers (`<Connect><Stream>` with our call id and token as `<Parameter>`s), the Calls REST
//! API (place, hang up, redirect to a `<Dial>` to transfer) and Media Streams (JSON frames,
//! μ-law 8 kHz, passed to the call without transcoding).

pub mod control;
pub mod rest;
pub mod signature;
pub mod stream;
pub mod twiml;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;

use self::control::TwilioCallControl;
use self::rest::{CreateCall, TwilioCredentials, TwilioError, TwilioRest};
use self::signature::{SIGNATURE_HEADER, validate_signature};
use self::twiml::{RejectReason, StreamSpec, Twiml, connect_stream, reject};
use super::provider::{
    Answer, BadWebhook, CallControl, Callback, CallbackEvent, Document, InboundCall, MediaProtocol,
    PlaceCall, RestFuture, SocketLimits, StreamStart, TelephonyError, TelephonyProvider,
    TrunkFields, Webhook,
};
use super::{StatusCallbackEvent, Trunk, is_sid};
use crate::call::voicemail::AnsweredBy;
use crate::store::CallStatus;
use crate::validation::Violations;

/// Twilio's API in production.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Twilio's control plane.
pub struct Twilio {
    rest: TwilioRest,
}

impl Twilio {
    pub fn new(http: reqwest::Client, base_url: Option<&str>) -> Self {
        Self {
            rest: TwilioRest::with_client(http, base_url.unwrap_or(DEFAULT_BASE_URL)),
        }
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn twiml(body: String) -> Document {
    Document {
        content_type: "text/xml",
        body,
    }
}

fn refused(error: TwilioError) -> TelephonyError {
    match error {
        TwilioError::Api {
            status,
            code,
            message,
            ..
        } => TelephonyError::Refused {
            provider: "Twilio",
            status,
            code: code.map(|c| c.to_string()),
            message,
        },
        TwilioError::InvalidRequest(message) => TelephonyError::Invalid {
            provider: "Twilio",
            message,
        },
        other => TelephonyError::Unreachable {
            provider: "Twilio",
            message: other.to_string(),
        },
    }
}

impl TelephonyProvider for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn check_trunk(&self, trunk: &Trunk, fields: TrunkFields, v: &mut Violations) {
        if !trunk.account_sid.is_empty() && !is_sid("AC", &trunk.account_sid) {
            v.add(
                fields.account,
                "must be a Twilio Account SID: AC followed by 32 hex digits",
            );
        }
        let token = &trunk.auth_token;
        let hex32 = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
        if !token.is_empty() && !hex32 {
            v.add(fields.secret, "must be a Twilio Auth Token: 32 hex digits");
        }
        if !trunk.options.is_empty() {
            v.add(fields.options, "Twilio trunks take no options");
        }
    }

    fn inbound_call(&self, request: &Webhook<'_>) -> Result<InboundCall, BadWebhook> {
        let fields = request.form();
        match (
            field(&fields, "To"),
            field(&fields, "From"),
            field(&fields, "CallSid"),
        ) {
            (Some(to), Some(from), Some(sid)) => Ok(InboundCall {
                to: to.to_owned(),
                from: from.to_owned(),
                provider_call_id: sid.to_owned(),
            }),
            _ => Err(BadWebhook("To, From and CallSid are required".to_owned())),
        }
    }

    fn verify_webhook(&self, trunk: &Trunk, request: &Webhook<'_>) -> bool {
        request.header(SIGNATURE_HEADER).is_some_and(|signature| {
            validate_signature(&trunk.auth_token, request.url, &request.form(), signature)
        })
    }

    fn answer(&self, answer: Answer<'_>) -> Result<Document, BadWebhook> {
        let bad = |e: twiml::TwimlError| BadWebhook(format!("TwiML not built: {e}"));
        Ok(twiml(match answer {
            Answer::Stream(stream) => connect_stream(&StreamSpec {
                url: stream.url,
                name: None,
                status_callback: None,
                parameters: &[("call_id", stream.call_id), ("token", stream.token)],
            })
            .map_err(bad)?,
            Answer::Busy => reject(RejectReason::Busy),
            Answer::Reject => reject(RejectReason::Rejected),
            Answer::AskAgain { url } => Twiml::new().redirect(url).map_err(bad)?.finish(),
        }))
    }

    fn callback(&self, request: &Webhook<'_>) -> Result<Callback, BadWebhook> {
        let fields = request.form();
        let provider_call_id = field(&fields, "CallSid").map(str::to_owned);
        let event = if let Some(answered_by) = field(&fields, "AnsweredBy") {
            CallbackEvent::AnsweredBy(
                AnsweredBy::parse(answered_by)
                    .ok_or_else(|| BadWebhook("unknown AnsweredBy".to_owned()))?,
            )
        } else {
            CallbackEvent::Status(
                field(&fields, "CallStatus")
                    .and_then(CallStatus::parse)
                    .ok_or_else(|| BadWebhook("unknown CallStatus".to_owned()))?,
            )
        };
        Ok(Callback {
            provider_call_id,
            event,
        })
    }

    fn place_call(&self, trunk: &Trunk, call: PlaceCall<'_>) -> RestFuture<String> {
        let document = match self.answer(Answer::Stream(call.stream)) {
            Ok(document) => document.body,
            Err(e) => {
                return Box::pin(std::future::ready(Err(TelephonyError::Invalid {
                    provider: "Twilio",
                    message: format!("{e} (check public_url)"),
                })));
            }
        };
        let rest = self.rest.clone();
        let credentials = TwilioCredentials::from(trunk);
        let (to, from) = (call.to.to_owned(), call.from.to_owned());
        let status_callback = call.status_callback.to_owned();
        let amd_callback = call.amd_callback.map(str::to_owned);
        let (ring, limit) = (call.ring_timeout_secs, call.time_limit_secs);
        Box::pin(async move {
            rest.create_call(
                &credentials,
                &CreateCall {
                    to: &to,
                    from: &from,
                    twiml: &document,
                    status_callback: Some(&status_callback),
                    status_callback_events: &StatusCallbackEvent::ALL,
                    timeout_secs: Some(ring),
                    time_limit_secs: Some(limit),
                    amd_callback: amd_callback.as_deref(),
                },
            )
            .await
            .map(|call| call.sid)
            .map_err(refused)
        })
    }

    fn hang_up(&self, trunk: &Trunk, provider_call_id: &str) -> RestFuture<()> {
        let rest = self.rest.clone();
        let credentials = TwilioCredentials::from(trunk);
        let sid = provider_call_id.to_owned();
        Box::pin(async move {
            rest.hang_up(&credentials, &sid)
                .await
                .map(|_| ())
                .map_err(refused)
        })
    }

    fn call_control(
        &self,
        trunk: &Trunk,
        provider_call_id: &str,
        our_number: Option<String>,
    ) -> Option<Arc<dyn CallControl>> {
        Some(Arc::new(TwilioCallControl {
            rest: self.rest.clone(),
            credentials: TwilioCredentials::from(trunk),
            call_sid: provider_call_id.to_owned(),
            caller_id: our_number,
        }))
    }
}

/// Twilio Media Streams.
pub struct TwilioMedia;

impl MediaProtocol for TwilioMedia {
    type Source = stream::TwilioSource;
    type Sink = stream::TwilioSink;

    const LIMITS: SocketLimits = SocketLimits {
        max_message_bytes: 4 * stream::MAX_FRAME_BYTES,
    };

    async fn accept(
        socket: WebSocket,
        inactivity: Duration,
    ) -> Result<(StreamStart, Self::Source, Self::Sink), String> {
        let (mut start, source, sink) = stream::accept(socket, inactivity)
            .await
            .map_err(|e| e.to_string())?;
        let start = StreamStart {
            call_id: start.custom_parameters.remove("call_id"),
            token: start.custom_parameters.remove("token"),
            provider_call_id: Some(start.call_sid).filter(|sid| !sid.is_empty()),
            stream_id: start.stream_sid,
        };
        Ok((start, source, sink))
    }
}
