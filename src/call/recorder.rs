//! Writes a call's transcript, its replies' timings and its providers' events (a retry, a
//! fallback model, an apology) as they happen, off the agent's loop: the agent hands each
//! finished turn (each finished reply's timings, each event) to this task and goes on; the task
//! writes them in order. A crash loses at most the turn in progress (and whatever is
//! still in this small queue).

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::store::{ProviderEvent, Store, TurnRecord, TurnTiming};

/// Records waiting to be written; a call produces a few per minute.
const QUEUE: usize = 256;

/// What the agent hands over.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A transcript line.
    Turn(TurnRecord),
    /// A reply's timings, once the reply is over.
    Timing(Box<TurnTiming>),
    /// Something a provider went through.
    ProviderEvent(ProviderEvent),
}

/// The agent's handle for recording turns.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
}

impl Recorder {
    /// Starts the writer task for `call_id`; it ends once every handle is dropped and the queue
    /// is written.
    pub fn spawn(store: Store, call_id: String) -> (Self, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Record>(QUEUE);
        let task = tokio::spawn(async move {
            // This task is the call's only writer of events: it numbers them.
            let mut events = 0;
            while let Some(record) = rx.recv().await {
                match record {
                    Record::Turn(turn) => {
                        if let Err(e) = store.append_turn(&call_id, &turn).await {
                            tracing::error!(call_id, error = %e, seq = turn.seq, "transcript turn not stored");
                        }
                    }
                    Record::Timing(timing) => {
                        if let Err(e) = store.append_turn_timing(&call_id, &timing).await {
                            tracing::error!(call_id, error = %e, turn = timing.turn, "turn timing not stored");
                        }
                    }
                    Record::ProviderEvent(event) => {
                        events += 1;
                        if let Err(e) = store.append_provider_event(&call_id, events, &event).await {
                            tracing::error!(call_id, error = %e, kind = event.kind, "provider event not stored");
                        }
                    }
                }
            }
        }.in_current_span());
        (Self { tx }, task)
    }

    /// A recorder whose records the caller reads (tests, or a channel without a database).
    pub fn channel() -> (Self, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel::<Record>(QUEUE);
        (Self { tx }, rx)
    }

    /// Queues a turn without waiting: the agent's loop must not stall on a slow database. Turns
    /// keep their order; a queue this far behind means the database is failing, and the turn is
    /// logged as lost.
    pub fn record(&self, turn: TurnRecord) {
        if let Err(e) = self.tx.try_send(Record::Turn(turn)) {
            tracing::error!(error = %e, "transcript queue full or closed; turn not stored");
        }
    }

    /// Queues a finished reply's timings, without waiting, as [`Self::record`] does.
    pub fn timing(&self, timing: TurnTiming) {
        if let Err(e) = self.tx.try_send(Record::Timing(Box::new(timing))) {
            tracing::error!(error = %e, "transcript queue full or closed; turn timing not stored");
        }
    }

    /// Queues a provider's event, without waiting, as [`Self::record`] does.
    pub fn provider_event(&self, event: ProviderEvent) {
        if let Err(e) = self.tx.try_send(Record::ProviderEvent(event)) {
            tracing::error!(error = %e, "transcript queue full or closed; provider event not stored");
        }
    }
}
