//! Which telephony provider the load generator's calls come through (`--provider`): its fake
//! rings the server's inbound path as the real provider would (Twilio's signed voice webhook
//! and TwiML, Plivo's signed answer URL and XML, Exotel's applet URL and stream URL), and runs a
//! simulated caller per call in that provider's stream protocol. Each call ends as the caller's
//! report, or why there was none.

use std::time::Duration;

use serde_json::{Value, json};

use crate::sim::caller::{CallerReport, CallerScript, RecordOptions};
use crate::sim::exotel::{self, ExotelSim};
use crate::sim::plivo::{self, PlivoSim};
use crate::sim::twilio::{self, InboundCall, TwilioSim, TwilioSimConfig};

/// The provider's name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadProvider {
    #[default]
    Twilio,
    Plivo,
    Exotel,
}

impl LoadProvider {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "twilio" => LoadProvider::Twilio,
            "plivo" => LoadProvider::Plivo,
            "exotel" => LoadProvider::Exotel,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LoadProvider::Twilio => "twilio",
            LoadProvider::Plivo => "plivo",
            LoadProvider::Exotel => "exotel",
        }
    }

    /// `POST /trunk/create` for this provider's fake account, calling from `number`.
    pub fn trunk_body(self, number: &str) -> Value {
        match self {
            LoadProvider::Twilio => json!({"trunk_name": "Load test", "trunk_provider": "twilio",
                "trunk_account_sid": twilio::DEFAULT_ACCOUNT_SID, "trunk_auth_token": twilio::DEFAULT_AUTH_TOKEN,
                "trunk_default_caller_number": number}),
            LoadProvider::Plivo => json!({"trunk_name": "Load test", "trunk_provider": "plivo",
                "trunk_account_sid": plivo::DEFAULT_AUTH_ID, "trunk_auth_token": plivo::DEFAULT_AUTH_TOKEN,
                "trunk_default_caller_number": number}),
            LoadProvider::Exotel => json!({"trunk_name": "Load test", "trunk_provider": "exotel",
                "trunk_account_sid": exotel::DEFAULT_ACCOUNT_SID, "trunk_auth_token": exotel::DEFAULT_API_TOKEN,
                "trunk_default_caller_number": number,
                "trunk_options": {"api_key": exotel::DEFAULT_API_KEY, "stream_secret": EXOTEL_STREAM_SECRET}}),
        }
    }
}

/// The stream secret of the load test's Exotel trunk (its applet URL carries it).
const EXOTEL_STREAM_SECRET: &str = "loadtest-exotel-stream-secret-01";

/// One call as the load test sees it at its end.
#[derive(Debug, Clone)]
pub struct EndedCall {
    /// What the caller saw; `None` when no stream ever started.
    pub report: Option<CallerReport>,
    /// Why there was no stream.
    pub failure: String,
}

/// The fake provider ringing the server.
pub enum Ringer {
    Twilio(TwilioSim),
    Plivo(PlivoSim),
    Exotel(ExotelSim),
}

impl Ringer {
    pub fn new(provider: LoadProvider, number: &str, max_call: Duration) -> Self {
        let record = RecordOptions {
            frames: true,
            audio: false,
        };
        match provider {
            LoadProvider::Twilio => {
                let sim = TwilioSim::new(TwilioSimConfig {
                    record,
                    max_call_duration: max_call,
                    ..TwilioSimConfig::default()
                });
                sim.add_number(twilio::DEFAULT_ACCOUNT_SID, number);
                Ringer::Twilio(sim)
            }
            LoadProvider::Plivo => {
                let sim = PlivoSim::new(record);
                sim.set_max_call_duration(max_call);
                Ringer::Plivo(sim)
            }
            LoadProvider::Exotel => {
                let sim = ExotelSim::new(record);
                sim.set_max_call_duration(max_call);
                Ringer::Exotel(sim)
            }
        }
    }

    /// Rings `to` on the server at `node` from `from`; answers the provider's call id.
    pub fn ring(
        &self,
        node: &str,
        from: &str,
        to: &str,
        script: CallerScript,
    ) -> Result<String, String> {
        match self {
            Ringer::Twilio(sim) => sim
                .simulate_inbound_call(InboundCall {
                    voice_url: format!("{node}/twilio/voice"),
                    account_sid: twilio::DEFAULT_ACCOUNT_SID.to_owned(),
                    from: from.to_owned(),
                    to: to.to_owned(),
                    script: Some(script),
                    status_callback: None,
                    status_callback_events: vec![],
                })
                .map_err(|e| e.to_string()),
            Ringer::Plivo(sim) => Ok(sim.simulate_inbound_call(
                &format!("{node}/plivo/voice"),
                plivo::DEFAULT_AUTH_ID,
                from,
                to,
                Some(script),
            )),
            Ringer::Exotel(sim) => Ok(sim.simulate_inbound_call(
                &format!("{node}/exotel/voice?secret={EXOTEL_STREAM_SECRET}"),
                exotel::DEFAULT_ACCOUNT_SID,
                from,
                to,
                Some(script),
            )),
        }
    }

    /// Waits for the call to end; `None` if it did not within `patience`.
    pub async fn ended(&self, id: &str, patience: Duration) -> Option<EndedCall> {
        match self {
            Ringer::Twilio(sim) => {
                let call = sim.wait_for_call_end(id, patience).await?;
                let failure = match (&call.rejected, call.errors.first()) {
                    (Some(reason), _) => format!("rejected: {reason}"),
                    (None, Some(e)) => format!("Twilio error {}: {}", e.code, e.message),
                    (None, None) => "no media stream".to_owned(),
                };
                Some(EndedCall {
                    report: call.caller_reports.into_iter().next(),
                    failure,
                })
            }
            Ringer::Plivo(sim) => {
                let call = sim.wait_for_call_end(id, patience).await?;
                let failure = match call.answers.first() {
                    Some(xml) => format!("no stream in the answer: {xml}"),
                    None => "the answer URL failed".to_owned(),
                };
                Some(EndedCall {
                    report: call.reports.into_iter().next(),
                    failure,
                })
            }
            Ringer::Exotel(sim) => {
                let call = sim.wait_for_call_end(id, patience).await?;
                Some(EndedCall {
                    report: call.reports.into_iter().next(),
                    failure: "the applet URL gave no stream".to_owned(),
                })
            }
        }
    }
}
