//! A call's transcript as the agent writes it: turns numbered in order, offsets from the call's
//! start, and a caller's turn that was taken back to be merged with what followed (they only
//! paused) stored again in its place rather than twice. Writes go to the [`Recorder`], off the
//! agent's loop.

use tokio::time::Instant;

use super::recorder::Recorder;
use crate::store::TurnRecord;

pub struct Transcript {
    recorder: Recorder,
    started: Instant,
    seq: i64,
    /// Where the caller's last turn is.
    last_user: Option<i64>,
    /// Where the caller's next turn goes: the place of one taken back.
    retaken: Option<i64>,
}

impl Transcript {
    pub fn new(recorder: Recorder, started: Instant) -> Self {
        Self {
            recorder,
            started,
            seq: 0,
            last_user: None,
            retaken: None,
        }
    }

    /// A turn of the agent's, a tool's, or anything else, after the last one.
    pub fn record(&mut self, role: &str, text: &str, at: Instant, interrupted: bool) {
        self.seq += 1;
        self.write(self.seq, role, text, at, interrupted);
    }

    /// A turn of the caller's: after the last one, or in the place of the one taken back.
    pub fn user(&mut self, text: &str, at: Instant) {
        let seq = match self.retaken.take() {
            Some(seq) => seq,
            None => {
                self.seq += 1;
                self.seq
            }
        };
        self.write(seq, "user", text, at, false);
        self.last_user = Some(seq);
    }

    /// The caller's last turn was taken back (its reply never heard): the next one replaces
    /// it. Nothing was recorded after it, since its reply was not heard.
    pub fn user_taken_back(&mut self) {
        self.retaken = self.last_user;
    }

    fn write(&self, seq: i64, role: &str, text: &str, at: Instant, interrupted: bool) {
        let offset = at.saturating_duration_since(self.started).as_millis();
        self.recorder.record(TurnRecord {
            seq,
            role: role.to_owned(),
            text: text.to_owned(),
            offset_ms: i64::try_from(offset).unwrap_or(i64::MAX),
            interrupted,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_turn_taken_back_is_stored_again_in_its_place() {
        let (recorder, mut rx) = Recorder::channel();
        let start = Instant::now();
        let mut t = Transcript::new(recorder, start);
        t.record("assistant", "Hello", start, false);
        t.user("A table", start);
        t.user_taken_back();
        t.user("A table for two", start);
        t.record("assistant", "Done", start, false);
        let seqs: Vec<(i64, String)> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|record| match record {
                crate::call::recorder::Record::Turn(turn) => Some((turn.seq, turn.text)),
                _ => None,
            })
            .collect();
        assert_eq!(
            seqs,
            [
                (1, "Hello".to_owned()),
                (2, "A table".to_owned()),
                (2, "A table for two".to_owned()),
                (3, "Done".to_owned())
            ]
        );
    }
}
