//! TTS clients against the protocol-faithful fakes (`voxbridge::sim`), and the fakes against
//! hand-written wrong requests.

mod cartesia;
mod cartesia_bytes;
mod fakes;
mod sarvam;
mod sarvam_rest;

use std::time::Duration;

use axum::Router;
use tokio::sync::mpsc;
use voxbridge::generation::Generation;
use voxbridge::tts::{TtsCommand, TtsError, TtsEvent, TtsSession, TtsTimeouts, WordTiming};

/// Serves `router` on a loopback port; returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// Deadlines short enough for tests (the defaults are in the unit tests of `health`).
pub fn fast_timeouts() -> TtsTimeouts {
    TtsTimeouts {
        connect: Duration::from_secs(2),
        send: Duration::from_secs(1),
        busy_ping_after: Duration::from_millis(150),
        idle_ping_after: Duration::from_secs(20),
        pong: Duration::from_millis(150),
        turn_idle: Duration::from_secs(3),
        http_first_byte: Duration::from_secs(3),
        http_stall: Duration::from_secs(1),
    }
}

pub async fn speak(session: &TtsSession, generation: u64, text: &str, last: bool) {
    session
        .commands
        .send(TtsCommand::Speak {
            generation: Generation(generation),
            text: text.to_owned(),
            last,
        })
        .await
        .unwrap();
}

pub async fn cancel(session: &TtsSession, generation: u64) {
    session
        .commands
        .send(TtsCommand::Cancel {
            generation: Generation(generation),
        })
        .await
        .unwrap();
}

/// The next event; a test fails rather than hangs if none comes.
pub async fn next_event(events: &mut mpsc::Receiver<TtsEvent>) -> TtsEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("no tts event within 10 s")
        .expect("tts session ended")
}

pub fn generation_of(event: &TtsEvent) -> Option<Generation> {
    match event {
        TtsEvent::Audio { generation, .. }
        | TtsEvent::Started { generation }
        | TtsEvent::Words { generation, .. }
        | TtsEvent::Done { generation, .. } => Some(*generation),
        TtsEvent::Failed { generation, .. } => *generation,
    }
}

/// Every event up to and including the `Done`/`Failed` of `generation`.
pub async fn events_until_end(
    events: &mut mpsc::Receiver<TtsEvent>,
    generation: u64,
) -> Vec<TtsEvent> {
    let mut seen = Vec::new();
    loop {
        let event = next_event(events).await;
        let end = matches!(
            &event,
            TtsEvent::Done { generation: g, .. } | TtsEvent::Failed { generation: Some(g), .. }
                if g.0 == generation
        );
        seen.push(event);
        if end {
            return seen;
        }
    }
}

/// What one generation produced.
#[derive(Debug)]
pub struct Turn {
    pub audio: Vec<u8>,
    pub chunk_lens: Vec<usize>,
    pub words: Vec<WordTiming>,
    pub end: Result<(), TtsError>,
}

impl Turn {
    pub fn of(events: &[TtsEvent], generation: u64) -> Self {
        let mut turn = Turn {
            audio: Vec::new(),
            chunk_lens: Vec::new(),
            words: Vec::new(),
            end: Err(TtsError::Protocol("no end".into())),
        };
        for event in events
            .iter()
            .filter(|e| generation_of(e) == Some(Generation(generation)))
        {
            match event {
                TtsEvent::Audio { audio, .. } => {
                    turn.chunk_lens.push(audio.len());
                    turn.audio.extend_from_slice(audio);
                }
                TtsEvent::Words { words, .. } => turn.words.extend(words.iter().cloned()),
                // Only sessions that write to a call's writer announce audio this way.
                TtsEvent::Started { .. } => {}
                TtsEvent::Done { .. } => turn.end = Ok(()),
                TtsEvent::Failed { error, .. } => turn.end = Err(error.clone()),
            }
        }
        turn
    }

    /// Collects `generation` to its end.
    pub async fn collect(events: &mut mpsc::Receiver<TtsEvent>, generation: u64) -> Self {
        let seen = events_until_end(events, generation).await;
        Self::of(&seen, generation)
    }
}

/// Samples the synthetic voice produces for `text` at `rate` (65 ms per character).
pub fn samples_for(text: &str, rate: u32) -> usize {
    text.chars().count() * (rate as usize * 65 / 1000)
}

/// RMS of μ-law audio, decoded.
pub fn mulaw_rms(audio: &[u8]) -> f64 {
    let sum: f64 = audio
        .iter()
        .map(|&b| f64::from(voxbridge::audio::g711::mulaw_decode(b)).powi(2))
        .sum();
    (sum / audio.len().max(1) as f64).sqrt()
}

/// Asserts that after the first event of `later`, nothing of `earlier` was delivered.
pub fn assert_nothing_of_after(events: &[TtsEvent], earlier: u64, later: u64) {
    let first_later = events
        .iter()
        .position(|e| generation_of(e) == Some(Generation(later)))
        .expect("the later generation produced events");
    let leaked: Vec<_> = events[first_later..]
        .iter()
        .filter(|e| generation_of(e) == Some(Generation(earlier)))
        .collect();
    assert!(
        leaked.is_empty(),
        "events of g{earlier} after g{later} started: {leaked:?}"
    );
}
