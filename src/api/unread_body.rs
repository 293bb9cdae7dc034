//! `Connection: close` on an answer given before the request's body was read to its end (a 401
//! from the key check, a 404 for an unknown id, a refusal before the body mattered). The server
//! drops such a connection rather than read a body nobody wants, and a keep-alive client that
//! already sent its next request into it would see that request fail (`IncompleteMessage`):
//! saying so in the answer keeps the client from reusing the connection. Requests without a body
//! pass untouched, and a body read to its end costs one flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;

/// Runs the request, then closes the connection if its body was left unread.
pub async fn close_if_unread(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > 0);
    if !has_body {
        return next.run(request).await;
    }
    let read_to_end = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let flag = Arc::clone(&read_to_end);
    let tracked = futures_util::stream::unfold(
        (body.into_data_stream(), Some(flag)),
        |(mut data, flag)| async move {
            match data.next().await {
                Some(chunk) => Some((chunk, (data, flag))),
                None => {
                    if let Some(flag) = flag {
                        flag.store(true, Ordering::Relaxed);
                    }
                    None
                }
            }
        },
    );
    let mut response = next
        .run(Request::from_parts(parts, Body::from_stream(tracked)))
        .await;
    if !read_to_end.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
