//! The live calls of this server: the one piece of state shared across calls. It lets the REST
//! API hang up a running call and lets shutdown reach every call; each entry is removed by the
//! guard its call holds, so a call that ends in any way leaves the registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use tokio::sync::mpsc;

use super::io::Control;

/// Every running call's control channel, by call id.
#[derive(Clone, Default)]
pub struct LiveCalls {
    calls: Arc<DashMap<String, mpsc::Sender<Control>>>,
    /// The server is shutting down: calls that live finish, no new one starts here.
    draining: Arc<AtomicBool>,
}

/// Keeps a call registered while it lives.
pub struct Registration {
    calls: LiveCalls,
    call_id: String,
}

impl LiveCalls {
    /// Registers a call; answers the guard and the receiving end of its control channel.
    pub fn register(&self, call_id: &str) -> (Registration, mpsc::Receiver<Control>) {
        let (tx, rx) = mpsc::channel(4);
        self.calls.insert(call_id.to_owned(), tx);
        metrics::gauge!(crate::metrics::LIVE_CALLS).increment(1.0);
        let registration = Registration {
            calls: self.clone(),
            call_id: call_id.to_owned(),
        };
        (registration, rx)
    }

    /// Sends `control` to a live call; answers whether the call is live here.
    pub fn send(&self, call_id: &str, control: Control) -> bool {
        match self.calls.get(call_id) {
            Some(tx) => tx.try_send(control).is_ok() || !tx.is_closed(),
            None => false,
        }
    }

    /// From now on this server takes no new calls (`/readyz` says so); live ones go on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Tells every live call to end (server shutdown).
    pub fn shutdown_all(&self) {
        for entry in self.calls.iter() {
            let _ = entry.value().try_send(Control::Shutdown);
        }
    }

    /// Whether the call's session runs on this server.
    pub fn contains(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.calls.calls.remove(&self.call_id);
        metrics::gauge!(crate::metrics::LIVE_CALLS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_leave_the_registry_when_their_guard_drops() {
        let live = LiveCalls::default();
        let (guard, mut rx) = live.register("c1");
        assert_eq!(live.len(), 1);
        assert!(live.send("c1", Control::HangUp));
        assert_eq!(rx.try_recv().unwrap(), Control::HangUp);
        assert!(!live.send("c2", Control::HangUp));
        drop(guard);
        assert!(live.is_empty());
        assert!(!live.send("c1", Control::HangUp));
    }
}
