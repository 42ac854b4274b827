// AudioWorklet output with a small jitter buffer: the main thread posts decoded 48 kHz mono
// Float32 chunks; this plays them at the audio clock, re-buffering after an underrun and
// dropping the oldest audio when the buffer grows too deep (so latency cannot creep up).

const CAPACITY = 48000 * 4;

class TribuneOutput extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetSamples = Math.round(((opts.targetMs || 80) / 1000) * sampleRate);
    this.maxSamples = Math.round(((opts.maxMs || 400) / 1000) * sampleRate);
    this.buf = new Float32Array(CAPACITY);
    this.read = 0;
    this.write = 0;
    this.playing = false;
    this.underruns = 0;
    this.dropped = 0;
    this.ticks = 0;
    this.port.onmessage = (e) => this.push(e.data);
  }

  get buffered() {
    return this.write - this.read;
  }

  push(samples) {
    if (samples === 'reset') {
      this.read = this.write = 0;
      this.playing = false;
      return;
    }
    for (let i = 0; i < samples.length; i++) {
      this.buf[(this.write + i) % CAPACITY] = samples[i];
    }
    this.write += samples.length;
    if (this.buffered > this.maxSamples) {
      // Too deep: skip ahead to the target depth.
      const skip = this.buffered - this.targetSamples;
      this.read += skip;
      this.dropped += skip;
    }
    if (!this.playing && this.buffered >= this.targetSamples) this.playing = true;
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (this.playing) {
      const n = Math.min(out.length, this.buffered);
      for (let i = 0; i < n; i++) out[i] = this.buf[(this.read + i) % CAPACITY];
      for (let i = n; i < out.length; i++) out[i] = 0;
      this.read += n;
      if (n < out.length) {
        this.playing = false;
        this.underruns += 1;
      }
    } else {
      out.fill(0);
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (++this.ticks % 50 === 0) {
      this.port.postMessage({
        bufferedMs: (this.buffered / sampleRate) * 1000,
        underruns: this.underruns,
        droppedMs: (this.dropped / sampleRate) * 1000,
      });
    }
    return true;
  }
}

registerProcessor('tribune-output', TribuneOutput);
