// Playing the stage over WHEP (draft-ietf-wish-whep): one recvonly audio transceiver, the offer
// POSTed once ICE gathering is complete (no trickle), the resource DELETEd on stop. With a stage
// token the node sends this participant's mix-minus (everyone else on stage, not them), at
// conversational latency; with a listener ticket, the program.
//
// The session comes back by itself after a drop (jittered backoff, honouring Retry-After) until
// the node says it never will (403: off stage; 404/410: no such or an ended room).

import { Backoff, sleep } from './backoff.js';
import { gatheringComplete } from './whip.js';

// Refusals that another try would get again: no credential or a refused one, no such or an
// ended room, an offer the node cannot take.
const FINAL = new Set([400, 401, 403, 404, 410, 413, 415]);

export class WhepPlayer extends EventTarget {
  constructor(roomId, token, { audible = true } = {}) {
    super();
    this.roomId = roomId;
    this.token = token;
    this.state = 'idle';
    this.stopped = false;
    this.audible = audible;
    this.pc = null;
    this.location = null;
    this.audio = new Audio();
    this.audio.autoplay = true;
    this.ctx = null;
    this.analyser = null;
    // The browser refused to start playback without a user gesture.
    this.blocked = false;
    this.backoff = new Backoff({ baseMs: 500, capMs: 10000 });
  }

  setState(state, detail = {}) {
    if (this.state === state && !detail.reason) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, ...detail } }));
  }

  /** Plays until stopped, reconnecting after drops. */
  async start() {
    const backoff = this.backoff;
    while (!this.stopped) {
      this.setState('connecting');
      let retryAfter = 0;
      try {
        const pc = await this.connect();
        if (!pc) return;
        await closed(pc);
        if (this.stopped) return;
        this.setState('reconnecting', { reason: `connection ${pc.connectionState}` });
      } catch (err) {
        if (this.stopped) return;
        if (FINAL.has(err.status)) {
          this.setState('ended', { reason: err.message });
          return;
        }
        retryAfter = err.retryAfter || 0;
        this.setState('reconnecting', { reason: err.message });
      }
      this.teardown();
      await sleep(backoff.next(retryAfter));
    }
  }

  async connect() {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    this.pc = pc;
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addEventListener('track', (e) => this.attach(e.streams[0] || new MediaStream([e.track])));
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState !== 'connected') return;
      // Only a session that connected counts as a success for the backoff.
      this.backoff.reset();
      this.setState(this.blocked ? 'blocked' : 'playing', this.blocked ? { reason: 'tap to hear the stage' } : {});
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, 3000);
    const resp = await fetch(`/api/rooms/${this.roomId}/whep`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${this.token}` },
      body: pc.localDescription.sdp,
    });
    if (resp.status !== 201) {
      pc.close();
      let message = `WHEP ${resp.status}`;
      try {
        message = (await resp.json()).message || message;
      } catch {
        /* keep the status */
      }
      const err = new Error(message);
      err.status = resp.status;
      err.retryAfter = Number(resp.headers.get('Retry-After')) || 0;
      throw err;
    }
    const location = resp.headers.get('Location');
    this.location = location ? new URL(location, window.location.href).toString() : null;
    if (this.stopped) {
      // Stopped while the offer was in flight: end the session it opened.
      await this.deleteSession();
      pc.close();
      return null;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
    return pc;
  }

  /** Plays the received stream, and taps it for the level meter and tests. */
  attach(stream) {
    this.audio.srcObject = stream;
    this.audio.muted = !this.audible;
    this.audio.play().then(() => {
      this.blocked = false;
    }).catch(() => {
      this.blocked = true;
      this.setState('blocked', { reason: 'tap to hear the stage' });
    });
    if (!this.ctx) {
      this.ctx = new AudioContext({ latencyHint: 'interactive' });
      this.analyser = new AnalyserNode(this.ctx, { fftSize: 32768 });
    }
    if (this.source) this.source.disconnect();
    this.source = this.ctx.createMediaStreamSource(stream);
    this.source.connect(this.analyser);
    this.ctx.resume();
  }

  /** Makes the stage audible or not (the session keeps running either way). */
  setAudible(audible) {
    this.audible = audible;
    this.audio.muted = !audible;
  }

  /** Resumes playback after the browser blocked it (call from a user gesture). */
  resume() {
    this.audio.play().then(() => {
      this.blocked = false;
      if (this.pc && this.pc.connectionState === 'connected') this.setState('playing');
    }).catch(() => {});
    if (this.ctx) this.ctx.resume();
  }

  /** The most recent samples heard (about 0.7 s), and their rate. */
  recentSamples() {
    if (!this.analyser) return { samples: new Float32Array(0), rate: 48000 };
    const samples = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(samples);
    return { samples, rate: this.ctx.sampleRate };
  }

  /** RMS level (0..1) of what is heard now. */
  level() {
    const { samples } = this.recentSamples();
    const tail = samples.subarray(samples.length - 4800);
    let sum = 0;
    for (const s of tail) sum += s * s;
    return tail.length ? Math.sqrt(sum / tail.length) : 0;
  }

  async deleteSession() {
    if (!this.location) return;
    const location = this.location;
    this.location = null;
    try {
      await fetch(location, { method: 'DELETE', headers: { Authorization: `Bearer ${this.token}` } });
    } catch {
      /* the session ends on the server anyway when the peer goes */
    }
  }

  teardown() {
    if (this.pc) {
      this.pc.close();
      // A local close fires no state change: wake the waiting loop.
      this.pc.dispatchEvent(new Event('connectionstatechange'));
    }
    this.pc = null;
    this.location = null;
  }

  async stop() {
    this.stopped = true;
    this.audio.muted = true;
    this.setState('stopped');
    // The resource first: closing the peer first would end the session before the DELETE.
    await this.deleteSession();
    this.teardown();
    this.audio.srcObject = null;
    if (this.ctx) this.ctx.close();
    this.ctx = null;
  }
}

/**
 * Resolves when a peer connection fails or closes, or stays disconnected for 5 s (a brief
 * disconnection is a network blip ICE recovers from).
 */
function closed(pc) {
  return new Promise((resolve) => {
    let grace = null;
    const done = () => {
      pc.removeEventListener('connectionstatechange', check);
      clearTimeout(grace);
      resolve();
    };
    const check = () => {
      const state = pc.connectionState;
      if (state === 'failed' || state === 'closed') done();
      else if (state === 'disconnected' && !grace) {
        grace = setTimeout(() => pc.connectionState === 'disconnected' && done(), 5000);
      } else if (state === 'connected') {
        clearTimeout(grace);
        grace = null;
      }
    };
    pc.addEventListener('connectionstatechange', check);
  });
}

/**
 * Power of each frequency in `samples` relative to the strongest of them, in dB (Goertzel over
 * a Hann window): `{440: 0, 660: -45}` says 660 Hz is 45 dB under 440 Hz.
 */
export function bandsDb(samples, rate, freqs) {
  const n = samples.length;
  const power = freqs.map((f) => {
    const w = (2 * Math.PI * f) / rate;
    const coeff = 2 * Math.cos(w);
    let s1 = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const hann = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1));
      const s0 = samples[i] * hann + coeff * s1 - s2;
      s2 = s1;
      s1 = s0;
    }
    return Math.max(s1 * s1 + s2 * s2 - coeff * s1 * s2, 1e-20);
  });
  const top = Math.max(...power);
  return Object.fromEntries(freqs.map((f, i) => [f, 10 * Math.log10(power[i] / top)]));
}
