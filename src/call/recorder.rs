//! Writes a call's transcript as it happens, off the agent's loop: the agent hands each finished
//! turn to this task and goes on; the task writes turns in order. A crash loses at most the turn
//! in progress (and whatever is still in this small queue).

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::store::{Store, TurnRecord};

/// Turns waiting to be written; a call produces a few per minute.
const QUEUE: usize = 256;

/// The agent's handle for recording turns.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<TurnRecord>,
}

impl Recorder {
    /// Starts the writer task for `call_id`; it ends once every handle is dropped and the queue
    /// is written.
    pub fn spawn(store: Store, call_id: String) -> (Self, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<TurnRecord>(QUEUE);
        let task = tokio::spawn(async move {
            while let Some(turn) = rx.recv().await {
                if let Err(e) = store.append_turn(&call_id, &turn).await {
                    tracing::error!(call_id, error = %e, seq = turn.seq, "transcript turn not stored");
                }
            }
        }.in_current_span());
        (Self { tx }, task)
    }

    /// A recorder whose turns the caller reads (tests, or a channel without a database).
    pub fn channel() -> (Self, mpsc::Receiver<TurnRecord>) {
        let (tx, rx) = mpsc::channel::<TurnRecord>(QUEUE);
        (Self { tx }, rx)
    }

    /// Queues a turn without waiting: the agent's loop must not stall on a slow database. Turns
    /// keep their order; a queue this far behind means the database is failing, and the turn is
    /// logged as lost.
    pub fn record(&self, turn: TurnRecord) {
        if let Err(e) = self.tx.try_send(turn) {
            tracing::error!(error = %e, "transcript queue full or closed; turn not stored");
        }
    }
}
