// voxbridge microphone capture (AudioWorklet): the microphone's float samples at the context's
// rate become PCM16 frames of 20 ms, posted (transferred, not copied) to the page, which sends
// them as binary WebSocket messages. The node outputs silence; it is connected to the
// destination only so that the browser keeps running it.

class VoxbridgeCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frameSamples = (options.processorOptions && options.processorOptions.frameSamples) || 960;
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.frameSamples) {
        this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
        this.frame = new Int16Array(this.frameSamples);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor('voxbridge-capture', VoxbridgeCapture);
