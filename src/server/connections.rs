//! The accept loop: HTTP/1.1 connections served by hyper under limits that keep slow or idle
//! clients from holding the server. axum's own `serve` has no header timeout and no connection
//! cap, so 200 sockets that send nothing (or half a header) would stay open forever and one
//! client could use up the process's file descriptors (slowloris).
//!
//! - A new connection must deliver its first request's headers within `header_timeout_secs`.
//! - Between requests (and for a later request's headers) a keep-alive connection waits at most
//!   `idle_timeout_secs` (hyper's header-read timer, which runs whenever a connection waits for a
//!   request head).
//! - At most `max_connections` are served at once. A permit is taken before `accept`, so extra
//!   clients wait in the kernel's backlog instead of costing a descriptor each. The permit lives
//!   inside the socket's I/O object, so an upgraded WebSocket (a call's media stream) holds it
//!   until the socket closes, not only until the upgrade.
//!
//! Each connection is served on one of the core threads (`core_threads.rs`), so a call's tasks
//! stay together on one core.
//!
//! Upgraded sockets are outside these HTTP timers: a media stream has its own (the handshake's
//! `start` deadline and the media inactivity limit).

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

use crate::config::HttpLimits;
use crate::core_threads::{CoreThreads, resolve_count};

/// Serves `app` on `listener` until `shutdown` completes, then lets every connection finish its
/// in-flight request and waits, for at most `drain`, for all of them (upgraded sockets included)
/// to close.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let threads = match CoreThreads::start(resolve_count(limits.connection_threads)) {
        Ok(threads) => Some(threads),
        Err(e) => {
            tracing::error!(error = %e, "connection threads not started; serving on the main runtime");
            None
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: back off a
                    // moment rather than spin on an error that persists.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, stop) = (app.clone(), stop_rx.clone());
        match &threads {
            Some(threads) => threads.spawn_connection(stream, move |stream| {
                serve_connection(stream, permit, app, limits, stop)
            }),
            None => {
                tokio::spawn(serve_connection(stream, permit, app, limits, stop));
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds one permit until its socket closes.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = max - permits.available_permits(),
            "connections still open after the drain; closing them"
        );
    }
}

async fn serve_connection(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let served = Arc::new(AtomicBool::new(false));
    let service = {
        let served = Arc::clone(&served);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            served.store(true, Ordering::Relaxed);
            app.clone().oneshot(request)
        })
    };
    let io = TokioIo::new(Counted {
        stream,
        _permit: permit,
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.idle_timeout_secs.max(1)));
    let mut connection = pin!(builder.serve_connection(io, service).with_upgrades());
    let first_request = tokio::time::sleep(Duration::from_secs(limits.header_timeout_secs.max(1)));
    let mut first_request = pin!(first_request);
    let mut first_request_due = true;
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut first_request, if first_request_due => {
                if !served.load(Ordering::Relaxed) {
                    tracing::debug!("no request headers within the header timeout; closing");
                    return;
                }
                first_request_due = false;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    // Finishes the request in flight, then closes; an idle one closes now.
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A TCP stream that holds a connection permit for as long as it exists.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
