//! TeXML, Telnyx's TwiML-compatible answer documents, for inbound calls: `<Connect><Stream>`
//! opens our media socket for the rest of the call, with our call id and one-time token as
//! `<Parameter>`s (they arrive in the stream's `start.custom_parameters`).
//!
//! The attributes that matter: `bidirectionalMode="rtp"` — Telnyx's default is `mp3`, which
//! takes whole files about once a second and silently drops our 20 ms RTP frames — and
//! `bidirectionalCodec="PCMU"` at 8 kHz, so audio passes both ways without transcoding.
//! `track="inbound_track"` streams only the caller (our own voice is not echoed back to the
//! STT). Attribute names are Telnyx's `<Stream>` reference; `<Connect>` around it holds the
//! call on the stream, as Pipecat's Telnyx example and TwiML do.

/// Why a document could not be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TexmlError {
    #[error("the stream URL must be wss:// or ws://, got {0:?}")]
    BadStreamUrl(String),
    #[error("the redirect URL must be http(s)://, got {0:?}")]
    BadRedirectUrl(String),
}

const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Escapes text for an XML attribute or element.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
}

/// `<Connect><Stream>` to `url` with our parameters.
pub fn connect_stream(url: &str, parameters: &[(&str, &str)]) -> Result<String, TexmlError> {
    if !(url.starts_with("wss://") || url.starts_with("ws://")) {
        return Err(TexmlError::BadStreamUrl(url.to_owned()));
    }
    let mut xml = String::with_capacity(320);
    xml.push_str(DECLARATION);
    xml.push_str("<Response><Connect><Stream url=\"");
    escape(&mut xml, url);
    xml.push_str(
        "\" track=\"inbound_track\" bidirectionalMode=\"rtp\" bidirectionalCodec=\"PCMU\" bidirectionalSamplingRate=\"8000\">",
    );
    for (name, value) in parameters {
        xml.push_str("<Parameter name=\"");
        escape(&mut xml, name);
        xml.push_str("\" value=\"");
        escape(&mut xml, value);
        xml.push_str("\"/>");
    }
    xml.push_str("</Stream></Connect></Response>");
    Ok(xml)
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Rejected,
    Busy,
}

/// `<Reject>`: the call is not answered (a busy tone for `Busy`).
pub fn reject(reason: RejectReason) -> String {
    let reason = match reason {
        RejectReason::Rejected => "rejected",
        RejectReason::Busy => "busy",
    };
    format!("{DECLARATION}<Response><Reject reason=\"{reason}\"/></Response>")
}

/// `<Redirect>`: Telnyx asks `url` again for instructions.
pub fn redirect(url: &str) -> Result<String, TexmlError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(TexmlError::BadRedirectUrl(url.to_owned()));
    }
    let mut xml = String::from(DECLARATION);
    xml.push_str("<Response><Redirect method=\"POST\">");
    escape(&mut xml, url);
    xml.push_str("</Redirect></Response>");
    Ok(xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_document_is_bidirectional_rtp_pcmu_with_our_parameters() {
        let xml = connect_stream(
            "wss://agent.example.net/telnyx/media",
            &[("call_id", "call-1"), ("token", "a&b\"c")],
        )
        .unwrap();
        assert_eq!(
            xml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect>"#,
                r#"<Stream url="wss://agent.example.net/telnyx/media" track="inbound_track" bidirectionalMode="rtp" bidirectionalCodec="PCMU" bidirectionalSamplingRate="8000">"#,
                r#"<Parameter name="call_id" value="call-1"/><Parameter name="token" value="a&amp;b&quot;c"/>"#,
                r#"</Stream></Connect></Response>"#
            )
        );
        assert!(connect_stream("https://x/telnyx/media", &[]).is_err());
    }

    #[test]
    fn refusals_and_redirects() {
        assert!(reject(RejectReason::Busy).contains(r#"<Reject reason="busy"/>"#));
        assert!(reject(RejectReason::Rejected).contains(r#"<Reject reason="rejected"/>"#));
        assert!(
            redirect("https://a.example/telnyx/voice?x=1&y=2")
                .unwrap()
                .contains("<Redirect method=\"POST\">https://a.example/telnyx/voice?x=1&amp;y=2</Redirect>")
        );
        assert!(redirect("wss://nope").is_err());
    }
}
