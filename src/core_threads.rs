//! Core threads: a few single-threaded runtimes, one per core, each on its own thread. The
//! server serves every accepted connection on one — and so every task of a call on it: the
//! reader, the writer, the agent, the STT and TTS sessions and their provider sockets. The sim
//! fakes serve their connections the same way, and the load generator runs its callers there.
//!
//! Why not tokio's work-stealing runtime for them: a call is ~200 wake-ups a second between
//! tasks that talk only to each other, and on the shared runtime each of those could land on
//! either worker. An idle worker is woken (a futex, a context switch) to steal work it mostly
//! does not find, and a call's tasks bounce between cores' caches. Measured at 300 calls on the
//! 2-core box: 0.063 CPU s per call-minute with two work-stealing workers, 0.054 with one. Here a
//! call stays on the thread that accepted it, and the threads share nothing but the state every
//! request shares anyway (`Arc`s). The main runtime keeps the accept loop and background work
//! (webhooks, sweeps, cluster liveness).
//!
//! A connection goes to the thread with the fewest connections open, so long media sockets
//! spread evenly whatever the mix of short HTTP requests between them.
//!
//! The threads are built with a size and go with the value: dropping [`CoreThreads`] stops them,
//! and whatever still runs on them is dropped.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// More threads than this is a misconfiguration, not a plan: each is an OS thread with its own
/// runtime.
const MAX_THREADS: usize = 256;

/// How many threads to start for a configured count: `0` means one per core.
pub fn resolve_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n.min(MAX_THREADS),
    }
}

/// The running threads. Dropping this stops them: connections still open on them are dropped.
pub struct CoreThreads {
    threads: Vec<CoreThread>,
    /// The next thread [`next_handle`](Self::next_handle) gives.
    next: AtomicUsize,
}

struct CoreThread {
    handle: Handle,
    /// Connections open on this thread.
    open: Arc<AtomicUsize>,
    /// Dropped to stop the thread.
    _stop: oneshot::Sender<()>,
}

/// Counts a connection against its thread for as long as it is served.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CoreThreads {
    /// Starts `count` threads (at least one), each running a single-threaded runtime with I/O
    /// and timers.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut threads = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("voxbridge-core-{index}"))
                .spawn(move || {
                    // Runs the spawned connections until the server lets go of the thread; the
                    // runtime is dropped here, off any async context.
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            threads.push(CoreThread {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
                _stop: stop,
            });
        }
        Ok(Self {
            threads,
            next: AtomicUsize::new(0),
        })
    }

    /// The threads' runtimes in turn: `handle.enter()` makes `tokio::spawn` start tasks there.
    pub fn next_handle(&self) -> &Handle {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        &self.threads[index].handle
    }

    /// Serves `stream` with `serve` on the thread with the fewest open connections.
    pub fn spawn_connection<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let thread = self
            .threads
            .iter()
            .min_by_key(|t| t.open.load(Ordering::Relaxed))
            .expect("at least one thread");
        // The socket moves to the chosen thread's reactor: taken off this runtime's here, and
        // registered with the other's there.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accepted socket could not be handed over");
                return;
            }
        };
        thread.open.fetch_add(1, Ordering::Relaxed);
        let open = OpenConnection(Arc::clone(&thread.open));
        thread.handle.spawn(async move {
            let _open = open;
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(e) => tracing::warn!(error = %e, "accepted socket could not be registered"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_spread_over_the_threads_and_are_served_there() {
        let threads = CoreThreads::start(2).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (names_tx, mut names_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            let (stream, _) = listener.accept().await.unwrap();
            let names = names_tx.clone();
            threads.spawn_connection(stream, move |mut stream| async move {
                use tokio::io::AsyncWriteExt;
                let name = std::thread::current().name().unwrap_or("").to_owned();
                names.send(name).unwrap();
                // Held open, so the next connection goes to the other thread.
                stream.write_all(b"x").await.unwrap();
                std::future::pending::<()>().await;
            });
            // Counted once served, so wait for this one before the next.
            let _ = names_rx.recv().await;
        }
        let open: Vec<usize> = threads
            .threads
            .iter()
            .map(|t| t.open.load(Ordering::Relaxed))
            .collect();
        assert_eq!(open, [2, 2], "two held connections on each thread");
        // The served socket works from its new thread.
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        clients[3].read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"x");
    }

    #[tokio::test]
    async fn handles_take_turns_and_spawn_on_their_thread() {
        let threads = CoreThreads::start(2).unwrap();
        let mut names = Vec::new();
        for _ in 0..4 {
            let handle = threads.next_handle().clone();
            let task = {
                let _entered = handle.enter();
                tokio::spawn(async { std::thread::current().name().unwrap_or("").to_owned() })
            };
            names.push(task.await.unwrap());
        }
        assert_eq!(
            names,
            [
                "voxbridge-core-0",
                "voxbridge-core-1",
                "voxbridge-core-0",
                "voxbridge-core-1"
            ]
        );
    }

    #[tokio::test]
    async fn a_closed_connection_stops_counting() {
        let threads = CoreThreads::start(1).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let (done_tx, done_rx) = oneshot::channel();
        threads.spawn_connection(stream, move |_stream| async move {
            let _ = done_tx.send(());
        });
        done_rx.await.unwrap();
        for _ in 0..100 {
            if threads.threads[0].open.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the connection still counts as open");
    }
}
