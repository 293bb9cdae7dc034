// voxbridge playback (AudioWorklet): a queue of the agent's PCM16 chunks played at the context's
// rate. `flush` empties it at once (barge-in). Every ~20 ms it reports how many samples have been
// played in total (flushed ones count as played, so that playback marks placed at sample
// positions come back for flushed audio too, as Twilio's do) and the loudness of what it played.

class VoxbridgePlayback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // Int16Array chunks
    this.offset = 0; // read position in queue[0]
    this.played = 0; // samples played or flushed since the start
    this.buffered = 0;
    this.blocks = 0;
    this.sumSquares = 0;
    this.counted = 0;
    this.maxRms = 0;
    this.port.onmessage = (event) => {
      const message = event.data;
      if (message.type === 'audio') {
        const chunk = new Int16Array(message.samples);
        this.queue.push(chunk);
        this.buffered += chunk.length;
      } else if (message.type === 'flush') {
        const flushed = this.buffered;
        this.played += flushed;
        this.queue = [];
        this.offset = 0;
        this.buffered = 0;
        // The loudness window starts again: the next report measures only what plays after.
        this.sumSquares = 0;
        this.counted = 0;
        this.port.postMessage({ type: 'flushed', flushed, played: this.played });
      }
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.queue.length > 0) {
      const chunk = this.queue[0];
      const n = Math.min(out.length - i, chunk.length - this.offset);
      for (let k = 0; k < n; k++) {
        const s = chunk[this.offset + k] / 0x8000;
        out[i + k] = s;
        this.sumSquares += s * s;
      }
      this.counted += n;
      i += n;
      this.offset += n;
      this.played += n;
      this.buffered -= n;
      if (this.offset === chunk.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    for (; i < out.length; i++) out[i] = 0;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    // Report about every 20 ms (blocks are 128 samples).
    this.blocks++;
    if (this.blocks * 128 >= sampleRate / 50) {
      const rms = this.counted > 0 ? Math.sqrt(this.sumSquares / this.counted) : 0;
      if (rms > this.maxRms) this.maxRms = rms;
      this.port.postMessage({
        type: 'progress',
        played: this.played,
        buffered: this.buffered,
        rms,
        maxRms: this.maxRms,
      });
      this.blocks = 0;
      this.sumSquares = 0;
      this.counted = 0;
    }
    return true;
  }
}

registerProcessor('voxbridge-playback', VoxbridgePlayback);
