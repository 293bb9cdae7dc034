//! Plivo XML answers: the bidirectional `<Stream>` that connects a call to our media socket,
//! `<Hangup reason=…>` for a busy or refused call, `<Redirect>` to ask again (draining).
//!
//! The stream asks for μ-law 8 kHz (`contentType`) although Plivo's default is L16: μ-law is
//! what the rest of the call runs on without transcoding. `keepCallAlive` makes the stream the
//! only element executed, so the call lasts as long as our socket, and closing the socket ends
//! it. Our call id and token ride in `extraHeaders` (see `headers.rs`).

use super::headers;

/// The content type of every document.
pub const CONTENT_TYPE: &str = "application/xml";
/// What we ask Plivo to stream (and what we play back).
pub const STREAM_CONTENT_TYPE: &str = "audio/x-mulaw;rate=8000";

/// Why a document could not be written.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("{0} is not a ws:// or wss:// URL")]
    NotWebSocket(String),
    #[error("{0} is not an http(s) URL")]
    NotHttp(String),
    #[error("the call id and token do not fit Plivo's extraHeaders")]
    HeadersTooLong,
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `<Stream>` to `url` with our call id and token.
pub fn stream(url: &str, call_id: &str, token: &str) -> Result<String, XmlError> {
    if !(url.starts_with("wss://") || url.starts_with("ws://")) {
        return Err(XmlError::NotWebSocket(url.to_owned()));
    }
    let extra = headers::encode(call_id, token).ok_or(XmlError::HeadersTooLong)?;
    Ok(format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<Response><Stream bidirectional="true" keepCallAlive="true" audioTrack="inbound" "#,
            r#"contentType="{content_type}" extraHeaders="{extra}">{url}</Stream></Response>"#
        ),
        content_type = STREAM_CONTENT_TYPE,
        extra = escape(&extra),
        url = escape(url),
    ))
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupReason {
    Busy,
    Rejected,
}

/// `<Hangup reason=…>`: the caller hears busy, or the call is refused.
pub fn hangup(reason: HangupReason) -> String {
    let reason = match reason {
        HangupReason::Busy => "busy",
        HangupReason::Rejected => "rejected",
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup reason="{reason}"/></Response>"#
    )
}

/// `<Redirect>`: Plivo fetches `url` again for new instructions.
pub fn redirect(url: &str) -> Result<String, XmlError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(XmlError::NotHttp(url.to_owned()));
    }
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Redirect method="POST">{}</Redirect></Response>"#,
        escape(url)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_bidirectional_mulaw_and_carries_our_ids() {
        let doc = stream("wss://vb.example.com/plivo/media", "c-1", "vst_x").unwrap();
        assert!(doc.contains(r#"bidirectional="true""#), "{doc}");
        assert!(doc.contains(r#"keepCallAlive="true""#));
        assert!(doc.contains(r#"audioTrack="inbound""#));
        assert!(doc.contains(r#"contentType="audio/x-mulaw;rate=8000""#));
        assert!(doc.contains(">wss://vb.example.com/plivo/media</Stream>"));
        let extra = doc
            .split(r#"extraHeaders=""#)
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        assert_eq!(
            headers::decode(extra),
            (Some("c-1".to_owned()), Some("vst_x".to_owned()))
        );
        assert!(stream("https://vb.example.com/x", "c", "t").is_err());
    }

    #[test]
    fn refusals_and_redirects() {
        assert!(hangup(HangupReason::Busy).contains(r#"<Hangup reason="busy"/>"#));
        assert!(hangup(HangupReason::Rejected).contains(r#"reason="rejected""#));
        let doc = redirect("https://vb.example.com/plivo/voice?a=1&b=2").unwrap();
        assert!(doc.contains(">https://vb.example.com/plivo/voice?a=1&amp;b=2</Redirect>"));
        assert!(redirect("ftp://x").is_err());
    }
}
