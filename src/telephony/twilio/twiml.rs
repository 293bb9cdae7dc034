//! TwiML documents voxbridge answers Twilio with: connect the call to our media WebSocket
//! (`<Connect><Stream>`), transfer it (`<Dial>`), say something and hang up, or reject it.
//!
//! Every value is XML-escaped here, once, so no caller can break the document with a `&` in a
//! parameter. The stream URL is checked the way Twilio checks it: a query string is refused
//! (Twilio strips or rejects it — data goes in `<Parameter>`s or the path), and the scheme must
//! be `wss` (`ws` is let through for local runs against the fake, which accepts it).

use std::fmt::Write;

use crate::validation::is_e164;

/// A TwiML document could not be built from these values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwimlError {
    #[error("stream URL {url:?} is not usable: {reason}")]
    StreamUrl { url: String, reason: &'static str },
    #[error("{what} contains a character XML cannot carry (U+{code:04X})")]
    InvalidCharacter { what: &'static str, code: u32 },
    #[error("{0}")]
    Invalid(String),
}

/// What `<Connect><Stream>` needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamSpec<'a> {
    /// `wss://host/path` (no query string).
    pub url: &'a str,
    /// Optional stream name, unique per call.
    pub name: Option<&'a str>,
    /// Optional stream status webhook.
    pub status_callback: Option<&'a str>,
    /// `<Parameter>`s: they come back in the `start` message's `customParameters`.
    pub parameters: &'a [(&'a str, &'a str)],
}

/// Where `<Dial>` connects the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialTarget<'a> {
    /// An E.164 number.
    Number(&'a str),
    /// A `sip:` URI.
    Sip(&'a str),
}

/// What `<Dial>` needs.
#[derive(Debug, Clone, Copy)]
pub struct DialSpec<'a> {
    pub target: DialTarget<'a>,
    /// Caller ID shown to the transfer target (E.164); Twilio's default is the original caller.
    pub caller_id: Option<&'a str>,
    /// Seconds to ring the target (Twilio: 5-600, default 30).
    pub timeout_secs: Option<u32>,
    /// Longest bridged call, in seconds.
    pub time_limit_secs: Option<u32>,
}

/// Why `<Reject>` refuses a call: what the caller hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Rejected,
    Busy,
}

/// A TwiML `<Response>` being written, verb by verb.
#[derive(Debug)]
pub struct Twiml {
    xml: String,
}

impl Default for Twiml {
    fn default() -> Self {
        Self::new()
    }
}

impl Twiml {
    /// An empty `<Response>` (no XML declaration: Twilio does not need one and inline `Twiml`
    /// parameters are length-limited).
    pub fn new() -> Self {
        Self {
            xml: String::from("<Response>"),
        }
    }

    /// `<Connect><Stream url=…>` with its parameters: the call's audio flows over our WebSocket
    /// until one side closes it; then the verbs after this one run.
    pub fn connect_stream(mut self, spec: &StreamSpec<'_>) -> Result<Self, TwimlError> {
        check_stream_url(spec.url)?;
        self.xml.push_str("<Connect><Stream url=\"");
        escape_into(&mut self.xml, spec.url, "stream URL")?;
        self.xml.push('"');
        if let Some(name) = spec.name {
            self.xml.push_str(" name=\"");
            escape_into(&mut self.xml, name, "stream name")?;
            self.xml.push('"');
        }
        if let Some(callback) = spec.status_callback {
            crate::validation::check_http_url(callback)
                .map_err(|why| TwimlError::Invalid(format!("stream status callback {why}")))?;
            self.xml.push_str(" statusCallback=\"");
            escape_into(&mut self.xml, callback, "stream status callback")?;
            self.xml.push_str("\" statusCallbackMethod=\"POST\"");
        }
        if spec.parameters.is_empty() {
            self.xml.push_str("/></Connect>");
            return Ok(self);
        }
        self.xml.push('>');
        for (name, value) in spec.parameters {
            if name.is_empty() {
                return Err(TwimlError::Invalid(
                    "stream parameter names must not be empty".to_owned(),
                ));
            }
            self.xml.push_str("<Parameter name=\"");
            escape_into(&mut self.xml, name, "stream parameter name")?;
            self.xml.push_str("\" value=\"");
            escape_into(&mut self.xml, value, "stream parameter value")?;
            self.xml.push_str("\"/>");
        }
        self.xml.push_str("</Stream></Connect>");
        Ok(self)
    }

    /// `<Dial>`: bridges the caller to another number or SIP endpoint (a transfer).
    pub fn dial(mut self, spec: &DialSpec<'_>) -> Result<Self, TwimlError> {
        self.xml.push_str("<Dial");
        if let Some(caller_id) = spec.caller_id {
            if !is_e164(caller_id) {
                return Err(TwimlError::Invalid(format!(
                    "dial caller ID {caller_id:?} is not an E.164 number"
                )));
            }
            let _ = write!(self.xml, " callerId=\"{caller_id}\"");
        }
        if let Some(secs) = spec.timeout_secs {
            let _ = write!(self.xml, " timeout=\"{secs}\"");
        }
        if let Some(secs) = spec.time_limit_secs {
            let _ = write!(self.xml, " timeLimit=\"{secs}\"");
        }
        self.xml.push('>');
        match spec.target {
            DialTarget::Number(number) => {
                if !is_e164(number) {
                    return Err(TwimlError::Invalid(format!(
                        "dial target {number:?} is not an E.164 number"
                    )));
                }
                let _ = write!(self.xml, "<Number>{number}</Number>");
            }
            DialTarget::Sip(uri) => {
                if !(uri.starts_with("sip:") || uri.starts_with("sips:")) {
                    return Err(TwimlError::Invalid(format!(
                        "dial target {uri:?} is not a sip: URI"
                    )));
                }
                self.xml.push_str("<Sip>");
                escape_into(&mut self.xml, uri, "SIP URI")?;
                self.xml.push_str("</Sip>");
            }
        }
        self.xml.push_str("</Dial>");
        Ok(self)
    }

    /// `<Say>`: Twilio's own text-to-speech (for fallbacks when our pipeline is unavailable).
    pub fn say(mut self, text: &str) -> Result<Self, TwimlError> {
        self.xml.push_str("<Say>");
        escape_into(&mut self.xml, text, "spoken text")?;
        self.xml.push_str("</Say>");
        Ok(self)
    }

    /// `<Redirect method="POST">`: Twilio requests `url` for the call's next instructions (a
    /// draining node sends an inbound call back through the load balancer to another one).
    pub fn redirect(mut self, url: &str) -> Result<Self, TwimlError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(TwimlError::Invalid(format!(
                "redirect URL {url:?} is not absolute"
            )));
        }
        self.xml.push_str("<Redirect method=\"POST\">");
        escape_into(&mut self.xml, url, "redirect URL")?;
        self.xml.push_str("</Redirect>");
        Ok(self)
    }

    /// `<Hangup/>`: ends the call.
    pub fn hangup(mut self) -> Self {
        self.xml.push_str("<Hangup/>");
        self
    }

    /// `<Reject>`: refuses an inbound call without answering it (nothing is billed).
    pub fn reject(mut self, reason: RejectReason) -> Self {
        self.xml.push_str(match reason {
            RejectReason::Rejected => "<Reject/>",
            RejectReason::Busy => "<Reject reason=\"busy\"/>",
        });
        self
    }

    /// The finished document.
    pub fn finish(mut self) -> String {
        self.xml.push_str("</Response>");
        self.xml
    }
}

/// `<Response><Connect><Stream …/></Connect></Response>`.
pub fn connect_stream(spec: &StreamSpec<'_>) -> Result<String, TwimlError> {
    Ok(Twiml::new().connect_stream(spec)?.finish())
}

/// `<Response><Dial>…</Dial></Response>`: the document a live call is redirected to for a
/// transfer.
pub fn dial(spec: &DialSpec<'_>) -> Result<String, TwimlError> {
    Ok(Twiml::new().dial(spec)?.finish())
}

/// `<Response><Say>text</Say><Hangup/></Response>`.
pub fn say_and_hangup(text: &str) -> Result<String, TwimlError> {
    Ok(Twiml::new().say(text)?.hangup().finish())
}

/// `<Response><Reject/></Response>`: the answer to an inbound call voxbridge will not take.
pub fn reject(reason: RejectReason) -> String {
    Twiml::new().reject(reason).finish()
}

fn check_stream_url(url: &str) -> Result<(), TwimlError> {
    let refuse = |reason| {
        Err(TwimlError::StreamUrl {
            url: url.to_owned(),
            reason,
        })
    };
    // Looked at on the text too: the URL parser turns `wss://h/p?` into an empty query.
    if url.contains('?') {
        return refuse("a query string is not allowed: pass data as <Parameter>s");
    }
    if url.contains('#') {
        return refuse("a fragment is not allowed");
    }
    // The parser would read `wss:///media` as host "media".
    if url
        .split_once("://")
        .is_none_or(|(_, rest)| rest.starts_with('/') || rest.is_empty())
    {
        return refuse("no host");
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return refuse("not an absolute URL");
    };
    if !matches!(parsed.scheme(), "wss" | "ws") {
        return refuse("the scheme must be wss");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return refuse("no host");
    }
    Ok(())
}

/// Appends `text` escaped for an XML attribute value or element content. Tabs and line breaks
/// become character references (an attribute would otherwise turn them into spaces); other
/// control characters cannot appear in XML 1.0 at all.
fn escape_into(out: &mut String, text: &str, what: &'static str) -> Result<(), TwimlError> {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err(TwimlError::InvalidCharacter {
                    what,
                    code: c as u32,
                });
            }
            c => out.push(c),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_stream_with_parameters() {
        let xml = connect_stream(&StreamSpec {
            url: "wss://voice.example.com/twilio/media/call_7f3a",
            parameters: &[("call_id", "call_7f3a"), ("token", "a&b<c>\"d'")],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            xml,
            "<Response><Connect><Stream url=\"wss://voice.example.com/twilio/media/call_7f3a\">\
             <Parameter name=\"call_id\" value=\"call_7f3a\"/>\
             <Parameter name=\"token\" value=\"a&amp;b&lt;c&gt;&quot;d&apos;\"/>\
             </Stream></Connect></Response>"
        );
    }

    #[test]
    fn connect_stream_without_parameters_and_with_options() {
        let xml = Twiml::new()
            .connect_stream(&StreamSpec {
                url: "ws://127.0.0.1:8080/twilio/media",
                name: Some("agent-leg"),
                status_callback: Some("https://voice.example.com/twilio/stream-status"),
                parameters: &[],
            })
            .unwrap()
            .say("The agent has disconnected. Goodbye.")
            .unwrap()
            .finish();
        assert_eq!(
            xml,
            "<Response><Connect><Stream url=\"ws://127.0.0.1:8080/twilio/media\" \
             name=\"agent-leg\" \
             statusCallback=\"https://voice.example.com/twilio/stream-status\" \
             statusCallbackMethod=\"POST\"/></Connect>\
             <Say>The agent has disconnected. Goodbye.</Say></Response>"
        );
    }

    #[test]
    fn stream_urls_are_checked_like_twilio_does() {
        for bad in [
            "wss://voice.example.com/media?token=abc",
            "wss://voice.example.com/media?",
            "wss://voice.example.com/media#x",
            "https://voice.example.com/media",
            "/relative/media",
            "wss:///media",
        ] {
            let err = connect_stream(&StreamSpec {
                url: bad,
                ..Default::default()
            })
            .unwrap_err();
            assert!(matches!(err, TwimlError::StreamUrl { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn control_characters_are_refused_and_line_breaks_kept() {
        let err = say_and_hangup("bell \u{7}").unwrap_err();
        assert_eq!(
            err,
            TwimlError::InvalidCharacter {
                what: "spoken text",
                code: 7
            }
        );
        assert_eq!(
            say_and_hangup("one\ntwo").unwrap(),
            "<Response><Say>one&#10;two</Say><Hangup/></Response>"
        );
    }

    #[test]
    fn dial_for_transfers() {
        let xml = dial(&DialSpec {
            target: DialTarget::Number("+14155550123"),
            caller_id: Some("+14155550100"),
            timeout_secs: Some(20),
            time_limit_secs: None,
        })
        .unwrap();
        assert_eq!(
            xml,
            "<Response><Dial callerId=\"+14155550100\" timeout=\"20\">\
             <Number>+14155550123</Number></Dial></Response>"
        );
        let sip = dial(&DialSpec {
            target: DialTarget::Sip("sip:agent@pbx.example.com?x=1&y=2"),
            caller_id: None,
            timeout_secs: None,
            time_limit_secs: Some(600),
        })
        .unwrap();
        assert!(
            sip.contains("<Sip>sip:agent@pbx.example.com?x=1&amp;y=2</Sip>"),
            "{sip}"
        );
        assert!(sip.contains("timeLimit=\"600\""));
        assert!(
            dial(&DialSpec {
                target: DialTarget::Number("4155550123"),
                caller_id: None,
                timeout_secs: None,
                time_limit_secs: None,
            })
            .is_err()
        );
    }

    #[test]
    fn redirect_for_a_draining_node() {
        let doc = Twiml::new()
            .redirect("https://voice.example.com/twilio/voice?a=1&b=2")
            .unwrap()
            .finish();
        assert_eq!(
            doc,
            "<Response><Redirect method=\"POST\">https://voice.example.com/twilio/voice?a=1&amp;b=2</Redirect></Response>"
        );
        assert!(Twiml::new().redirect("/twilio/voice").is_err());
    }

    #[test]
    fn reject_and_hangup() {
        assert_eq!(
            reject(RejectReason::Busy),
            "<Response><Reject reason=\"busy\"/></Response>"
        );
        assert_eq!(
            reject(RejectReason::Rejected),
            "<Response><Reject/></Response>"
        );
    }
}
