//! Generations: the number of the agent turn an output belongs to. The call session bumps it at
//! every new reply and at every barge-in; each LLM token and TTS chunk carries the generation it
//! was produced for, so anything stale is dropped wherever it is in flight, without locks.

/// A monotonically increasing turn counter, one sequence per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Generation(pub u64);

impl Generation {
    /// The generation after this one.
    #[must_use]
    pub fn next(self) -> Self {
        Generation(self.0 + 1)
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "g{}", self.0)
    }
}
