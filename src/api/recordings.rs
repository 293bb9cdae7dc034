//! `GET /call/recording/{call_id}`: a call's recording as `audio/wav`, to its owner only, with
//! single HTTP range requests (`bytes=a-b`, `bytes=a-`, `bytes=-n`) so players can seek in an
//! hour-long call. The file is streamed from disk, never read whole into memory.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::path::ApiPath;
use crate::store::Direction;

/// Read from disk and sent at a time.
const CHUNK: usize = 64 * 1024;

#[utoipa::path(
    get, path = "/call/recording/{call_id}", operation_id = "call_recording", tag = "calls",
    params(
        ("call_id" = String, Path, description = "The UUID of the call"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The whole recording: a two-channel 16-bit PCM WAV, caller left, agent right", content_type = "audio/wav"),
        (status = 206, description = "The requested range (`Content-Range` says which)", content_type = "audio/wav"),
        (status = 401, description = "Invalid or missing Bearer token", body = super::envelope::Envelope<serde_json::Value>),
        (status = 404, description = "No such call, or it has no recording", body = super::envelope::Envelope<serde_json::Value>),
        (status = 416, description = "The range lies outside the recording (`Content-Range: bytes */<size>`)"),
    )
)]
pub async fn recording(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let call = state
        .store
        .get_call(&owner.id, &id)
        .await?
        .filter(|c| c.direction != Direction::Chat)
        .ok_or_else(|| ApiError::NotFound("Call not found".to_owned()))?;
    let no_recording = || ApiError::NotFound("This call has no recording".to_owned());
    let path = state.calls.recordings.path_of(&call.id);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| no_recording())?;
    let size = file.metadata().await.map_err(|_| no_recording())?.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, size));
    let (status, start, len) = match range {
        None | Some(RangeAsked::Ignored) => (StatusCode::OK, 0, size),
        Some(RangeAsked::Bytes { start, end }) => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Some(RangeAsked::Unsatisfiable) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            );
            return Ok(response);
        }
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let body = Body::from_stream(futures_util::stream::unfold(
        (file, len),
        |(mut file, left)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0; CHUNK.min(left as usize)];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), (file, left - n as u64)))
                }
                Err(e) => Some((Err(e), (file, 0))),
            }
        },
    ));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, header_value(&len.to_string()));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {start}-{}/{size}", start + len - 1)),
        );
    }
    Ok(response)
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("digits, spaces and slashes are valid header text")
}

/// What a `Range` header asks of a file of a given size.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsked {
    /// One satisfiable range, inclusive, clamped to the file.
    Bytes { start: u64, end: u64 },
    /// A syntactically valid range wholly past the end (416).
    Unsatisfiable,
    /// Not a single byte range we serve (another unit, several ranges, bad syntax): the whole
    /// file is sent, as RFC 9110 lets a server ignore `Range`.
    Ignored,
}

fn parse_range(header: &str, size: u64) -> RangeAsked {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAsked::Ignored;
    };
    if spec.contains(',') {
        return RangeAsked::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsked::Ignored;
    };
    let number = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            Some(None)
        } else if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok().map(Some)
        } else {
            None
        }
    };
    let (Some(first), Some(last)) = (number(first), number(last)) else {
        return RangeAsked::Ignored;
    };
    match (first, last) {
        // The last n bytes.
        (None, Some(n)) => {
            if n == 0 || size == 0 {
                RangeAsked::Unsatisfiable
            } else {
                RangeAsked::Bytes {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        (Some(start), last) => {
            if last.is_some_and(|last| last < start) {
                RangeAsked::Ignored
            } else if start >= size {
                RangeAsked::Unsatisfiable
            } else {
                RangeAsked::Bytes {
                    start,
                    end: last.map_or(size - 1, |last| last.min(size - 1)),
                }
            }
        }
        (None, None) => RangeAsked::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        use RangeAsked::*;
        let size = 1000;
        assert_eq!(parse_range("bytes=0-99", size), Bytes { start: 0, end: 99 });
        assert_eq!(
            parse_range("bytes=900-", size),
            Bytes {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-100", size),
            Bytes {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-5000", size),
            Bytes { start: 0, end: 999 }
        );
        assert_eq!(
            parse_range("bytes=990-5000", size),
            Bytes {
                start: 990,
                end: 999
            }
        );
        assert_eq!(parse_range("bytes=1000-", size), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", size), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", size), Ignored);
        assert_eq!(parse_range("bytes=0-1,5-9", size), Ignored);
        assert_eq!(parse_range("items=0-1", size), Ignored);
        assert_eq!(parse_range("bytes=a-b", size), Ignored);
        assert_eq!(parse_range("bytes=+1-2", size), Ignored);
    }
}
