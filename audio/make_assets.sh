#!/usr/bin/env bash
# Regenerates every committed audio asset under audio/ (except the Silero model, see
# models/README.md). Needs Debian's espeak-ng and sox (`apt-get install -y espeak-ng sox`) and
# python3 (only to write a raw file holding every 16-bit value).
#
# Ground truth for the VAD tests is exact by construction: each utterance is synthesised, trimmed
# at -40 dBFS (1 % of full scale) on both ends, and concatenated with silence of known length, so
# its edges are known to the sample. They are written to edges.csv (one row per speech segment).
#
# sox runs with -D (no dither) and -R (repeatable noise), so the output is the same on every run
# with the same sox and espeak-ng versions (made with sox 14.4.2, espeak-ng 1.51).
set -euo pipefail
cd "$(dirname "$0")"

SOX="sox -D -R -V1"
VOICE="en-us"
WPM=165
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# say TEXT RATE OUT: speech trimmed at -40 dBFS on both ends, normalised to -6 dBFS peak, mono 16-bit.
say() {
    espeak-ng -v "$VOICE" -s "$WPM" -w "$TMP/raw.wav" "$1"
    $SOX "$TMP/raw.wav" -r "$2" -c 1 -b 16 "$3" \
        silence 1 0.005 1% reverse silence 1 0.005 1% reverse gain -n -6
}
# silence SECONDS RATE OUT
silence() { $SOX -n -r "$2" -c 1 -b 16 "$3" trim 0 "$1"; }
# samples FILE
samples() { soxi -s "$1"; }

echo "path,start_ms,end_ms" > edges.csv
# edge FILE START_SAMPLE END_SAMPLE RATE: appends one speech segment in milliseconds.
edge() { echo "$1,$(( $2 * 1000 / $4 )),$(( $3 * 1000 / $4 ))" >> edges.csv; }

# --- VAD clips: silence 0.6 s, utterance A, silence 0.9 s, utterance B, silence 0.6 s ----------
mkdir -p vad
for rate in 8000 16000; do
    k=$(( rate / 1000 ))k
    say "Hello, I would like to change my reservation." "$rate" "$TMP/a.wav"
    say "Can you call me back tomorrow morning?" "$rate" "$TMP/b.wav"
    silence 0.6 "$rate" "$TMP/s06.wav"
    silence 0.9 "$rate" "$TMP/s09.wav"
    $SOX "$TMP/s06.wav" "$TMP/a.wav" "$TMP/s09.wav" "$TMP/b.wav" "$TMP/s06.wav" "vad/speech_$k.wav"
    a=$(samples "$TMP/a.wav"); b=$(samples "$TMP/b.wav"); s6=$(samples "$TMP/s06.wav"); s9=$(samples "$TMP/s09.wav")
    for name in speech noisy_speech; do
        edge "vad/${name}_$k.wav" "$s6" $(( s6 + a )) "$rate"
        edge "vad/${name}_$k.wav" $(( s6 + a + s9 )) $(( s6 + a + s9 + b )) "$rate"
    done
    seconds=$(soxi -D "vad/speech_$k.wav")
    # Noisy speech: pink noise about 10 dB under the speech (speech RMS ~ -23 dBFS while talking,
    # noise ~ -34 dBFS).
    $SOX -n -r "$rate" -c 1 -b 16 "$TMP/noise.wav" synth "$seconds" pinknoise vol 0.1
    $SOX -m -v 1 "vad/speech_$k.wav" -v 1 "$TMP/noise.wav" "vad/noisy_speech_$k.wav"
    # Digital silence and a low noise floor (pink noise ~ -44 dBFS: line hiss, a quiet room).
    silence 3 "$rate" "vad/silence_$k.wav"
    $SOX -n -r "$rate" -c 1 -b 16 "vad/low_noise_$k.wav" synth 3 pinknoise vol 0.03
done

# --- G.711 references: sox's encoder and decoder on speech and on every possible input --------
mkdir -p g711
say "The quick brown fox jumps over the lazy dog." 8000 g711/speech_8k.wav
$SOX g711/speech_8k.wav -t ul g711/speech_8k.ulaw
$SOX g711/speech_8k.wav -t al g711/speech_8k.alaw
python3 -c 'import struct,sys; sys.stdout.buffer.write(struct.pack("<65536h", *range(-32768, 32768)))' > "$TMP/all.s16"
$SOX -t s16 -r 8000 -c 1 "$TMP/all.s16" -t ul g711/every_pcm16.ulaw
$SOX -t s16 -r 8000 -c 1 "$TMP/all.s16" -t al g711/every_pcm16.alaw
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)))' > "$TMP/codes.raw"
$SOX -t ul -r 8000 -c 1 "$TMP/codes.raw" -t s16 g711/every_code_ulaw.s16
$SOX -t al -r 8000 -c 1 "$TMP/codes.raw" -t s16 g711/every_code_alaw.s16

# --- Simulated caller (8 kHz, 0.3 s of silence before and 0.4 s after each sound) -------------
mkdir -p caller
silence 0.3 8000 "$TMP/lead.wav"
silence 0.4 8000 "$TMP/tail.wav"
lead=$(samples "$TMP/lead.wav")
caller() { # NAME: wraps $TMP/body.wav with silence and records its edge
    $SOX "$TMP/lead.wav" "$TMP/body.wav" "$TMP/tail.wav" "caller/$1.wav"
    edge "caller/$1.wav" "$lead" $(( lead + $(samples "$TMP/body.wav") )) 8000
}
say "Hi, I'd like to book a table for two." 8000 "$TMP/body.wav"; caller book_table
say "Yes, tomorrow at seven please." 8000 "$TMP/body.wav"; caller tomorrow_at_seven
say "Thank you, goodbye." 8000 "$TMP/body.wav"; caller thank_you_goodbye
say "uh-huh" 8000 "$TMP/body.wav"; caller backchannel_uh_huh
# A cough-like burst: band-limited noise, 10 ms attack, fast decay, 250 ms long. Not speech.
$SOX -n -r 8000 -c 1 -b 16 "$TMP/body.wav" synth 0.25 brownnoise synth 0.25 whitenoise amod \
    sinc 200-3000 fade q 0.01 0.25 0.2 gain -n -6
caller cough

echo "assets written; edges in edges.csv"
