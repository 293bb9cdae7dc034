//! The session of an HTTP (non-streaming-input) TTS provider: text is collected per generation
//! until its last piece, then one synthesis runs while the next turn's text collects. The
//! provider-specific part is only "text in, audio stream out" ([`Synthesize`]); ordering,
//! cancellation (dropping the request), stall deadlines and whole-sample output live here once.

use std::collections::VecDeque;
use std::sync::Arc;
use tracing::Instrument;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::output::TtsOutput;
use super::sample_carry::SampleCarry;
use super::{TtsCommand, TtsError, TtsEvent, TtsSession, TtsTimeouts};
use crate::audio::Encoding;
use crate::audio::playout::PlayoutItem;
use crate::generation::Generation;

/// One provider request: the audio of `text` in the session's output format, as it arrives.
pub(crate) trait Synthesize: Send + Sync + 'static {
    fn synthesize(&self, text: String) -> BoxStream<'static, Result<Bytes, TtsError>>;
}

/// Starts the session task.
pub(crate) fn spawn(
    provider: Arc<dyn Synthesize>,
    encoding: Encoding,
    timeouts: TtsTimeouts,
    playout: Option<mpsc::Sender<PlayoutItem>>,
) -> TtsSession {
    let (session, commands, events) = TtsSession::channels(playout);
    let driver = Driver {
        provider,
        encoding,
        timeouts,
        events,
        collecting: VecDeque::new(),
        running: None,
        retired: None,
    };
    tokio::spawn(driver.run(commands).in_current_span());
    session
}

/// Text of a generation not yet sent.
struct Collecting {
    generation: Generation,
    text: String,
    last: bool,
}

/// The request in flight.
struct Running {
    generation: Generation,
    audio: BoxStream<'static, Result<Bytes, TtsError>>,
    carry: SampleCarry,
    deadline: Instant,
}

struct Driver {
    provider: Arc<dyn Synthesize>,
    encoding: Encoding,
    timeouts: TtsTimeouts,
    events: TtsOutput,
    collecting: VecDeque<Collecting>,
    running: Option<Running>,
    retired: Option<Generation>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<TtsCommand>) {
        loop {
            let deadline = self.running.as_ref().map(|r| r.deadline);
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(TtsCommand::Speak { generation, text, last }) => {
                        self.speak(generation, text, last);
                    }
                    Some(TtsCommand::Cancel { generation }) => self.cancel(generation),
                    None => break,
                },
                item = next_audio(&mut self.running) => self.on_audio(item).await,
                () = sleep_until(deadline), if deadline.is_some() => {
                    if let Some(running) = self.running.take() {
                        let error = TtsError::Stalled("the provider stopped sending audio".into());
                        self.emit(TtsEvent::Failed { generation: Some(running.generation), error }).await;
                    }
                }
            }
            self.start_next().await;
            if self.events.is_closed() {
                break;
            }
        }
    }

    fn speak(&mut self, generation: Generation, text: String, last: bool) {
        if self
            .running
            .as_ref()
            .is_some_and(|r| r.generation == generation)
        {
            warn!(%generation, "tts: text after the last piece of a turn dropped");
            return;
        }
        if let Some(turn) = self
            .collecting
            .iter_mut()
            .find(|t| t.generation == generation)
        {
            if turn.last {
                warn!(%generation, "tts: text after the last piece of a turn dropped");
                return;
            }
            turn.text.push_str(&text);
            turn.last = last;
        } else if self.retired.is_some_and(|r| generation <= r) {
            debug!(%generation, "tts: text for a finished or cancelled turn dropped");
            return;
        } else {
            // A newer turn means the older ones get no more text: speak what they have.
            for older in &mut self.collecting {
                older.last = true;
            }
            self.collecting.push_back(Collecting {
                generation,
                text,
                last,
            });
        }
        if last {
            self.retire(generation);
        }
    }

    fn cancel(&mut self, generation: Generation) {
        self.retire(generation);
        self.collecting.retain(|t| t.generation != generation);
        if self
            .running
            .as_ref()
            .is_some_and(|r| r.generation == generation)
        {
            // Dropping the stream aborts the request: nothing of it is read any more.
            self.running = None;
        }
    }

    async fn start_next(&mut self) {
        while self.running.is_none() && self.collecting.front().is_some_and(|t| t.last) {
            let Some(turn) = self.collecting.pop_front() else {
                return;
            };
            if turn.text.trim().is_empty() {
                self.events.done(turn.generation).await;
                continue;
            }
            self.running = Some(Running {
                generation: turn.generation,
                audio: self.provider.synthesize(turn.text),
                carry: SampleCarry::new(self.encoding),
                deadline: Instant::now() + self.timeouts.http_first_byte,
            });
        }
    }

    async fn on_audio(&mut self, item: Option<Result<Bytes, TtsError>>) {
        let Some(running) = &mut self.running else {
            return;
        };
        let generation = running.generation;
        match item {
            Some(Ok(chunk)) => {
                running.deadline = Instant::now() + self.timeouts.http_stall;
                let audio = running.carry.push(chunk);
                if !audio.is_empty() {
                    self.events.audio(generation, audio).await;
                }
            }
            Some(Err(error)) => {
                self.running = None;
                self.emit(TtsEvent::Failed {
                    generation: Some(generation),
                    error,
                })
                .await;
            }
            None => {
                self.running = None;
                self.events.done(generation).await;
            }
        }
    }

    async fn emit(&mut self, event: TtsEvent) {
        self.events.send(event).await;
    }

    fn retire(&mut self, generation: Generation) {
        self.retired = Some(self.retired.map_or(generation, |r| r.max(generation)));
    }
}

async fn next_audio(running: &mut Option<Running>) -> Option<Result<Bytes, TtsError>> {
    match running {
        Some(running) => running.audio.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The first bytes of an error body, for the error message.
pub(crate) async fn error_body(response: reqwest::Response) -> String {
    let body = response.text().await.unwrap_or_default();
    let mut end = body.len().min(512);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_owned()
}

/// A reqwest failure before any response.
pub(crate) fn request_error(error: &reqwest::Error) -> TtsError {
    if error.is_timeout() {
        TtsError::Stalled(format!("request timed out: {error}"))
    } else {
        TtsError::Unavailable(format!("request failed: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Echoes the text's bytes back in odd-sized pieces, or never answers.
    struct Echo {
        requests: Mutex<Vec<String>>,
        hang: bool,
    }

    impl Synthesize for Echo {
        fn synthesize(&self, text: String) -> BoxStream<'static, Result<Bytes, TtsError>> {
            self.requests.lock().unwrap().push(text.clone());
            if self.hang {
                return stream::pending().boxed();
            }
            let bytes = Bytes::from(text.into_bytes());
            let pieces: Vec<_> = (0..bytes.len())
                .step_by(3)
                .map(|i| Ok(bytes.slice(i..(i + 3).min(bytes.len()))))
                .collect();
            stream::iter(pieces).boxed()
        }
    }

    fn echo(hang: bool) -> Arc<Echo> {
        Arc::new(Echo {
            requests: Mutex::new(Vec::new()),
            hang,
        })
    }

    async fn speak(session: &TtsSession, g: u64, text: &str, last: bool) {
        session
            .commands
            .send(TtsCommand::Speak {
                generation: Generation(g),
                text: text.into(),
                last,
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn one_request_per_turn_with_whole_samples() {
        let provider = echo(false);
        let mut session = spawn(
            provider.clone(),
            Encoding::Pcm16,
            TtsTimeouts::default(),
            None,
        );
        speak(&session, 1, "Hello, ", false).await;
        speak(&session, 1, "world!!", true).await;
        let mut audio = Vec::new();
        loop {
            match session.events.recv().await.unwrap() {
                TtsEvent::Audio { audio: a, .. } => {
                    assert_eq!(a.len() % 2, 0);
                    audio.extend_from_slice(&a);
                }
                TtsEvent::Done { generation, .. } => {
                    assert_eq!(generation, Generation(1));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(audio, b"Hello, world!!");
        assert_eq!(*provider.requests.lock().unwrap(), ["Hello, world!!"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_answers_fails_the_turn() {
        let provider = echo(true);
        let mut session = spawn(provider, Encoding::Mulaw, TtsTimeouts::default(), None);
        speak(&session, 1, "Hello", true).await;
        match session.events.recv().await.unwrap() {
            TtsEvent::Failed {
                generation: Some(Generation(1)),
                error: TtsError::Stalled(_),
            } => {}
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_turns_are_not_spoken() {
        let provider = echo(false);
        let mut session = spawn(
            provider.clone(),
            Encoding::Mulaw,
            TtsTimeouts::default(),
            None,
        );
        speak(&session, 1, "never", false).await;
        session
            .commands
            .send(TtsCommand::Cancel {
                generation: Generation(1),
            })
            .await
            .unwrap();
        speak(&session, 1, " said", true).await;
        speak(&session, 2, "ok", true).await;
        let mut seen = Vec::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), session.events.recv()).await
        {
            seen.push(event);
        }
        assert!(matches!(
            seen.last(),
            Some(TtsEvent::Done {
                generation: Generation(2),
                ..
            })
        ));
        assert!(seen.iter().all(|e| !matches!(
            e,
            TtsEvent::Audio {
                generation: Generation(1),
                ..
            }
        )));
        assert_eq!(*provider.requests.lock().unwrap(), ["ok"]);
    }
}
