// The listener's audio engine: listen WebSocket → WebCodecs AudioDecoder (Opus) → AudioWorklet.
// Reconnects with jittered backoff and resumes from the next sequence number, so a node restart
// or a network blip loses nothing the server still holds.

import { forgetRoom, joinRoom } from './admission.js';
import { Backoff, sleep } from './backoff.js';
import { parseBatch } from './wire.js';

const TAP_SECONDS = 6;

export class Player extends EventTarget {
  constructor(roomId) {
    super();
    this.roomId = roomId;
    this.state = 'idle';
    this.stats = {
      framesReceived: 0,
      framesLost: 0,
      reconnects: 0,
      latencyMs: 0,
      bufferedMs: 0,
      underruns: 0,
      decodeErrors: 0,
    };
    this.nextSeq = null;
    this.ticket = null;
    // Listen URLs whose node dropped this listener lately (a cluster's edge gone away): the
    // next connection takes another of the join's alternates (url → until, ms).
    this.avoid = new Map();
    this.sampleRate = 48000;
    this.stopped = false;
    // Cancels a join in progress (a wait in line, a proof of work) when the listener stops.
    this.abort = new AbortController();
    // The last few seconds of decoded audio, for level meters and tests.
    this.tap = new Float32Array(48000 * TAP_SECONDS);
    this.tapWrite = 0;
  }

  setState(state, detail) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, ...detail } }));
  }

  /** Starts playback; call from a user gesture (browsers only start audio after one). */
  async start() {
    this.ctx = new AudioContext({ sampleRate: 48000, latencyHint: 'interactive' });
    await this.ctx.audioWorklet.addModule('/web/js/worklet.js');
    this.node = new AudioWorkletNode(this.ctx, 'tribune-output', {
      outputChannelCount: [2],
      processorOptions: { targetMs: 80, maxMs: 400 },
    });
    this.node.port.onmessage = (e) => {
      this.stats.bufferedMs = e.data.bufferedMs;
      this.stats.underruns = e.data.underruns;
    };
    // Through a gain, so the page can silence the program (a listener on stage hears their
    // mix-minus instead) without stopping it.
    this.gain = new GainNode(this.ctx, { gain: this.outputMuted ? 0 : 1 });
    this.node.connect(this.gain).connect(this.ctx.destination);
    await this.ctx.resume();
    this.decoder = this.makeDecoder();
    this.run();
  }

  makeDecoder() {
    const decoder = new AudioDecoder({
      output: (data) => this.onAudio(data),
      error: () => {
        this.stats.decodeErrors += 1;
      },
    });
    decoder.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1 });
    return decoder;
  }

  onAudio(data) {
    const n = data.numberOfFrames;
    const pcm = new Float32Array(n);
    data.copyTo(pcm, { planeIndex: 0, format: 'f32-planar' });
    data.close();
    for (let i = 0; i < n; i++) this.tap[(this.tapWrite + i) % this.tap.length] = pcm[i];
    this.tapWrite += n;
    this.node.port.postMessage(pcm, [pcm.buffer]);
  }

  /** Silences (or restores) the program's output; it keeps playing, ready to be heard again. */
  setOutputMuted(muted) {
    this.outputMuted = muted;
    if (this.gain) this.gain.gain.setTargetAtTime(muted ? 0 : 1, this.ctx.currentTime, 0.01);
  }

  /** The most recent `count` decoded samples, oldest first. */
  recentSamples(count = 48000 * 2) {
    const n = Math.min(count, this.tapWrite, this.tap.length);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      out[i] = this.tap[(this.tapWrite - n + i) % this.tap.length];
    }
    return out;
  }

  /** Joins (or, after a drop, resumes with the listen ticket) and reports the waiting room. */
  join() {
    return joinRoom(this.roomId, {
      signal: this.abort.signal,
      onStatus: (detail) => this.dispatchEvent(new CustomEvent('admission', { detail })),
    });
  }

  async run() {
    const backoff = new Backoff();
    while (!this.stopped) {
      try {
        if (!this.ticket) this.setState('connecting');
        // Every (re)connection goes through join: the first one may wait in line, every later
        // one brings the saved listen ticket, which the node never queues and answers with a
        // fresh ticket (so one that expired during a long session does not fail the socket).
        this.ticket = await this.join();
        const reason = await this.connectOnce(backoff);
        if (reason === 'ended' || reason === 'removed') forgetRoom(this.roomId);
        if (reason === 'ended' || reason === 'removed' || reason === 'replaced' || this.stopped) return;
      } catch (err) {
        if (this.stopped) return;
        if (err.status === 404 || err.status === 410) {
          forgetRoom(this.roomId);
          this.setState('ended', { reason: err.message });
          return;
        }
      }
      this.stats.reconnects += 1;
      this.setState('reconnecting');
      await sleep(backoff.next());
    }
  }

  /** Where to listen: the node the join chose, or an alternate if that one dropped us lately. */
  listenUrl() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const here = `${scheme}://${location.host}/api/rooms/${this.roomId}/listen?ticket=${encodeURIComponent(this.ticket.ticket)}`;
    // This page's own node keeps the page's scheme (behind a TLS proxy the join's answer may
    // say ws:// for it).
    const sameHost = (u) => {
      try { return new URL(u).host === location.host; } catch { return false; }
    };
    const offered = [this.ticket.listen_url, ...(this.ticket.alternates || [])]
      .filter((u) => typeof u === 'string' && /^wss?:\/\//.test(u))
      .map((u) => (sameHost(u) ? here : u));
    const now = Date.now();
    for (const [u, until] of this.avoid) if (until < now) this.avoid.delete(u);
    const base = (u) => u.split('/api/')[0];
    return offered.find((u) => !this.avoid.has(base(u))) || offered[0] || here;
  }

  connectOnce(backoff) {
    return new Promise((resolve) => {
      let url = this.listenUrl();
      if (this.nextSeq !== null) url += `&from=${this.nextSeq}`;
      const ws = new WebSocket(url);
      let opened = false;
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      ws.onopen = () => {
        opened = true;
        backoff.reset();
        this.setState('live');
      };
      ws.onmessage = (e) => {
        if (typeof e.data === 'string') {
          try {
            this.dispatchEvent(new CustomEvent('room', { detail: JSON.parse(e.data) }));
          } catch {
            /* a malformed event is ignored; audio goes on */
          }
          return;
        }
        this.onBatch(e.data);
      };
      ws.onclose = (e) => {
        if (e.code === 1000) {
          this.setState('ended', { reason: e.reason });
          resolve('ended');
        } else if (e.code === 4001) {
          this.setState('removed', { reason: e.reason });
          resolve('removed');
        } else if (e.code === 4002) {
          // This ticket is listening elsewhere (another tab took it over): do not fight back.
          this.setState('ended', { reason: 'listening in another window' });
          resolve('replaced');
        } else {
          // Dropped (or never reached): that node may be gone; an alternate next time.
          if (e.code !== 4000 || !opened) this.avoid.set(url.split('/api/')[0], Date.now() + 10000);
          resolve('retry');
        }
      };
    });
  }

  onBatch(buffer) {
    let records;
    try {
      records = parseBatch(buffer);
    } catch {
      this.stats.decodeErrors += 1;
      return;
    }
    const nowUs = Date.now() * 1000;
    for (const r of records) {
      if (this.nextSeq !== null && r.seq < this.nextSeq) continue;
      if (this.nextSeq !== null) this.stats.framesLost += r.seq - this.nextSeq;
      this.nextSeq = r.seq + 1;
      this.stats.framesReceived += 1;
      this.stats.latencyMs = (nowUs - r.captureUs) / 1000;
      if (this.decoder.state === 'closed') this.decoder = this.makeDecoder();
      this.decoder.decode(
        new EncodedAudioChunk({ type: 'key', timestamp: r.seq * 20000, data: r.payload }),
      );
    }
  }

  statsText() {
    const s = this.stats;
    return `${s.framesReceived} frames · ${s.framesLost} lost · ~${Math.round(s.latencyMs)} ms behind live · buffer ${Math.round(s.bufferedMs)} ms` +
      (s.reconnects ? ` · ${s.reconnects} reconnects` : '');
  }

  stop() {
    this.stopped = true;
    this.abort.abort(new Error('stopped'));
    if (this.ws) this.ws.close(1000);
    if (this.ctx) this.ctx.close();
    this.setState('stopped');
  }
}

/** Dominant frequency (Hz) of mono 48 kHz samples, scanning 50..4000 Hz with Goertzel. */
export function dominantFrequency(samples, rate = 48000) {
  let best = 0;
  let bestPower = 0;
  const n = samples.length;
  for (let f = 50; f <= 4000; f += 1) {
    const w = (2 * Math.PI * f) / rate;
    const coeff = 2 * Math.cos(w);
    let s1 = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const s0 = samples[i] + coeff * s1 - s2;
      s2 = s1;
      s1 = s0;
    }
    const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if (power > bestPower) {
      bestPower = power;
      best = f;
    }
  }
  return bestPower > 0 ? best : null;
}
