//! Sub-millisecond timers for the fakes' configured delays.
//!
//! tokio's timer wheel has millisecond ticks: a deadline is rounded up to the next tick and the
//! driver parks with a whole-millisecond timeout, so a `sleep(200 ms)` ends 0.5–2 ms late. A
//! fake that is 150 ms + "about a millisecond" makes a load test charge that millisecond to the
//! server, three times per turn. These timers are kept by one OS thread that sleeps on a condvar
//! (futex with a nanosecond timeout) until the earliest deadline, then wakes the waiting task:
//! they end within ~0.1 ms of their deadline and cost nothing while nothing is due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

use tokio::sync::oneshot;
use tokio::time::Instant;

struct Due {
    at: std::time::Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Due>>,
    seq: u64,
}

struct Wheel {
    queue: Mutex<Queue>,
    changed: Condvar,
}

fn wheel() -> &'static Wheel {
    static WHEEL: OnceLock<&'static Wheel> = OnceLock::new();
    WHEEL.get_or_init(|| {
        let wheel: &'static Wheel = Box::leak(Box::new(Wheel {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("sim-timer".into())
            .spawn(move || run(wheel))
            .expect("the timer thread starts");
        wheel
    })
}

fn run(wheel: &'static Wheel) {
    let mut queue = wheel.queue.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let now = std::time::Instant::now();
        while queue.heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(due)) = queue.heap.pop() {
                // The waiter may have gone (a reset or a closed stream): nothing to do.
                let _ = due.wake.send(());
            }
        }
        queue = match queue.heap.peek() {
            Some(Reverse(next)) => {
                let wait = next.at.saturating_duration_since(now);
                wheel
                    .changed
                    .wait_timeout(queue, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => wheel
                .changed
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

fn register(deadline: Instant) -> oneshot::Receiver<()> {
    let (wake, woken) = oneshot::channel();
    let at = deadline.into_std();
    if at <= std::time::Instant::now() {
        let _ = wake.send(());
        return woken;
    }
    let wheel = wheel();
    let mut queue = wheel.queue.lock().unwrap_or_else(PoisonError::into_inner);
    queue.seq += 1;
    let seq = queue.seq;
    let earliest = queue.heap.peek().is_none_or(|Reverse(d)| at < d.at);
    queue.heap.push(Reverse(Due { at, seq, wake }));
    drop(queue);
    if earliest {
        wheel.changed.notify_one();
    }
    woken
}

/// Whether tokio's clock is the real one. Under a paused test clock (`start_paused`, or time
/// advanced by hand) these timers would wait for real time to reach virtual deadlines, so tokio's
/// own timers are used instead.
fn clock_is_real() -> bool {
    let tokio_now = Instant::now().into_std();
    let real_now = std::time::Instant::now();
    let skew = real_now
        .saturating_duration_since(tokio_now)
        .max(tokio_now.saturating_duration_since(real_now));
    skew < std::time::Duration::from_millis(1)
}

/// Waits until `deadline`, to within a fraction of a millisecond.
pub async fn sleep_until(deadline: Instant) {
    if clock_is_real() {
        let _ = register(deadline).await;
    } else {
        tokio::time::sleep_until(deadline).await;
    }
}

/// Waits for `duration`, to within a fraction of a millisecond.
pub async fn sleep(duration: std::time::Duration) {
    sleep_until(Instant::now() + duration).await;
}

/// A timer that can be re-armed, for `select!` loops: `wait` never completes while disarmed.
#[derive(Debug, Default)]
pub struct Deadline {
    armed: Option<Armed>,
}

#[derive(Debug)]
enum Armed {
    Precise(oneshot::Receiver<()>),
    /// A paused test clock: tokio's timer.
    Tokio(std::pin::Pin<Box<tokio::time::Sleep>>),
}

impl Deadline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires at `deadline` (replacing any earlier arming).
    pub fn reset(&mut self, deadline: Instant) {
        self.armed = Some(if clock_is_real() {
            Armed::Precise(register(deadline))
        } else {
            Armed::Tokio(Box::pin(tokio::time::sleep_until(deadline)))
        });
    }

    pub fn disarm(&mut self) {
        self.armed = None;
    }

    /// Completes at the armed deadline, then disarms.
    pub async fn wait(&mut self) {
        match self.armed.as_mut() {
            Some(Armed::Precise(woken)) => {
                let _ = woken.await;
            }
            Some(Armed::Tokio(sleep)) => sleep.as_mut().await,
            None => std::future::pending().await,
        }
        self.armed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn ends_on_time_in_order_and_rearms() {
        let start = Instant::now();
        let (a, b) = tokio::join!(
            async {
                sleep(Duration::from_millis(30)).await;
                Instant::now()
            },
            async {
                sleep(Duration::from_millis(10)).await;
                Instant::now()
            }
        );
        assert!(b < a);
        assert!(a - start >= Duration::from_millis(30));
        assert!(b - start >= Duration::from_millis(10));

        let mut deadline = Deadline::new();
        deadline.reset(Instant::now() + Duration::from_secs(3600));
        deadline.reset(Instant::now() + Duration::from_millis(5));
        tokio::time::timeout(Duration::from_secs(5), deadline.wait())
            .await
            .expect("the re-armed deadline fires");
        let never = tokio::time::timeout(Duration::from_millis(20), deadline.wait()).await;
        assert!(never.is_err(), "a fired deadline is disarmed");
        sleep_until(Instant::now() - Duration::from_millis(1)).await;
    }
}
