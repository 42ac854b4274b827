// The listener's LL-HLS engine, for browsers without WebCodecs (or when asked for with
// ?transport=hls): the room's live.m3u8 in an <audio> element, through hls.js (MSE) or the
// browser's native HLS player. Same surface as Player (player.js): state events
// connecting / live / reconnecting / ended, `room` events, `stats`, `recentSamples()`.

import { forgetRoom, joinRoom } from './admission.js';
import { api } from './api.js';
import { Backoff, sleep } from './backoff.js';
import { loadHlsJs } from './transport.js';

const ROOM_POLL_MS = 3000;

/** The playlist URL from the join answer, on this page's scheme (an https page cannot fetch http). */
export function playlistUrl(hlsUrl, page = location) {
  const url = new URL(hlsUrl, page.href);
  if (page.protocol === 'https:' && url.protocol === 'http:') url.protocol = 'https:';
  return url.href;
}

export class HlsPlayer extends EventTarget {
  /** engine: 'hlsjs' or 'native'; lowLatency: hls.js lowLatencyMode (off only to compare). */
  constructor(roomId, { engine = 'hlsjs', lowLatency = true } = {}) {
    super();
    this.roomId = roomId;
    this.engine = engine;
    this.lowLatency = lowLatency;
    this.state = 'idle';
    this.ticket = null;
    this.stopped = false;
    // Cancels a join in progress (a wait in line, a proof of work) when the listener stops.
    this.abort = new AbortController();
    this.sampleRate = 48000;
    this.stats = {
      transport: engine,
      currentTime: 0,
      latencyMs: null,
      bufferedMs: 0,
      stalls: 0,
      reconnects: 0,
      mediaErrors: 0,
    };
  }

  setState(state, detail) {
    if (this.state === state || this.state === 'ended' || this.stopped) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, ...detail } }));
  }

  /** Starts playback; call from a user gesture (the audio graph and play() need one). */
  async start() {
    this.audio = new Audio();
    // Our HLS answers carry ACAO: *, so even a playlist on another host (a CDN) stays readable
    // by Web Audio instead of being muted as cross-origin media.
    this.audio.crossOrigin = 'anonymous';
    this.audio.preload = 'auto';
    if (this.engine === 'hlsjs') this.tapAudio();
    this.watchMedia();
    this.setState('connecting');
    try {
      // May wait in line or solve a proof of work first. Only this first join: the playlist
      // and its parts need no ticket, so a reconnect below never goes back into the queue.
      this.ticket = await joinRoom(this.roomId, {
        signal: this.abort.signal,
        onStatus: (detail) => this.dispatchEvent(new CustomEvent('admission', { detail })),
      });
    } catch (err) {
      if (this.stopped) return;
      if (err.status === 404 || err.status === 410) {
        forgetRoom(this.roomId);
        this.setState('ended', { reason: err.message });
        return;
      }
      throw err;
    }
    this.url = playlistUrl(this.ticket.hls_url);
    if (this.engine === 'hlsjs') this.Hls = await loadHlsJs();
    this.attach();
    this.pollRoom();
    this.statsTimer = setInterval(() => this.updateStats(), 250);
  }

  /** Silences (or restores) the program's output; it keeps playing, ready to be heard again. */
  setOutputMuted(muted) {
    this.outputMuted = muted;
    if (this.audio) this.audio.muted = muted;
  }

  /**
   * Routes the element through Web Audio so the page can analyse what is played (the level and
   * the tests' frequency check), as the WebSocket player does from its decoder. Not for native
   * HLS: Safari feeds Web Audio silence from an HLS element.
   */
  tapAudio() {
    this.ctx = new AudioContext({ sampleRate: 48000 });
    this.sampleRate = this.ctx.sampleRate;
    this.analyser = new AnalyserNode(this.ctx, { fftSize: 32768 });
    this.ctx.createMediaElementSource(this.audio).connect(this.analyser);
    this.analyser.connect(this.ctx.destination);
    this.ctx.resume();
  }

  attach() {
    if (this.engine === 'native') {
      this.audio.src = this.url;
    } else {
      const hls = new this.Hls({
        lowLatencyMode: this.lowLatency,
        // A listener never seeks back: keep little behind the playhead.
        backBufferLength: 10,
      });
      hls.on(this.Hls.Events.ERROR, (_event, data) => this.onHlsError(hls, data));
      hls.loadSource(this.url);
      hls.attachMedia(this.audio);
      this.hls = hls;
    }
    this.audio.play().catch(() => {
      /* refused before a gesture or interrupted by a reload: 'playing' will tell */
    });
  }

  watchMedia() {
    const a = this.audio;
    a.addEventListener('playing', () => {
      this.liveSince = Date.now();
      this.setState('live');
    });
    // The buffer ran dry: the audio stopped until more arrives, which is what a listener
    // experiences as the connection dropping.
    a.addEventListener('waiting', () => {
      if (this.state !== 'live') return;
      this.stats.stalls += 1;
      this.setState('reconnecting');
    });
    // The playlist got EXT-X-ENDLIST (the room ended) and everything in it was played.
    a.addEventListener('ended', () => this.setState('ended'));
    a.addEventListener('error', () => {
      // (Emptying the element in detach() reports an error too: not one to retry.)
      if (this.engine === 'native' && a.getAttribute('src')) this.retry();
    });
  }

  onHlsError(hls, data) {
    if (!data.fatal) return; // hls.js retries those itself
    if (data.type === this.Hls.ErrorTypes.MEDIA_ERROR && this.stats.mediaErrors < 3) {
      this.stats.mediaErrors += 1;
      hls.recoverMediaError();
      return;
    }
    this.retry();
  }

  /** Drops the player and starts a fresh one after a backoff, unless the room is gone. */
  async retry() {
    if (this.retrying || this.stopped) return;
    this.retrying = true;
    this.stats.reconnects += 1;
    this.setState('reconnecting');
    this.backoff ??= new Backoff();
    // Back off afresh only after a spell of good playback: a player that fails right after
    // 'playing' (Chromium's own HLS player does, on our fMP4 Opus) must not retry in a tight loop.
    if (this.liveSince && Date.now() - this.liveSince > 5000) this.backoff.reset();
    this.liveSince = 0;
    this.detach();
    await sleep(this.backoff.next());
    this.retrying = false;
    if (this.stopped || (await this.checkRoom()) === 'ended') return;
    this.attach();
  }

  detach() {
    if (this.hls) this.hls.destroy();
    this.hls = null;
    this.audio.removeAttribute('src');
    this.audio.load();
  }

  /** Room title, state and counts by polling: the HLS path has no event WebSocket. */
  async checkRoom() {
    try {
      const room = await api.room(this.roomId);
      this.dispatchEvent(new CustomEvent('room', { detail: { type: 'room', ...room } }));
      // Let the buffered tail play out; 'ended' from the element may come first.
      if (room.state === 'ended') setTimeout(() => this.setState('ended'), 3000);
      return room.state;
    } catch (err) {
      if (err.status === 404) {
        this.setState('ended', { reason: err.message });
        return 'ended';
      }
      return null;
    }
  }

  async pollRoom() {
    while (!this.stopped && this.state !== 'ended') {
      await this.checkRoom();
      await sleep(ROOM_POLL_MS);
    }
  }

  updateStats() {
    const a = this.audio;
    this.stats.currentTime = a.currentTime;
    const b = a.buffered;
    this.stats.bufferedMs = b.length ? Math.max(0, (b.end(b.length - 1) - a.currentTime) * 1000) : 0;
    // EXT-X-PROGRAM-DATE-TIME is the capture time of the program (server clock), so "now minus
    // the date of what is playing" is glass-to-ear up to the audio output's own buffer.
    let date = null;
    if (this.hls) date = this.hls.playingDate;
    else if (typeof a.getStartDate === 'function') {
      const start = a.getStartDate().getTime();
      if (Number.isFinite(start)) date = new Date(start + a.currentTime * 1000);
    }
    this.stats.latencyMs = date ? Date.now() - date.getTime() : null;
  }

  /** The most recent `count` played samples (at most the analyser's window), oldest first. */
  recentSamples(count = 48000) {
    if (!this.analyser) return new Float32Array(0);
    const buf = new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(buf);
    return buf.subarray(Math.max(0, buf.length - count));
  }

  statsText() {
    const s = this.stats;
    const behind = s.latencyMs === null ? '' : ` · ~${(s.latencyMs / 1000).toFixed(1)} s behind live`;
    return `${s.currentTime.toFixed(1)} s played${behind} · buffer ${Math.round(s.bufferedMs)} ms` +
      (s.stalls ? ` · ${s.stalls} stalls` : '') + (s.reconnects ? ` · ${s.reconnects} reconnects` : '');
  }

  stop() {
    this.stopped = true;
    this.abort.abort(new Error('stopped'));
    clearInterval(this.statsTimer);
    if (this.audio) {
      this.audio.pause();
      this.detach();
    }
    if (this.ctx) this.ctx.close();
    this.state = 'stopped';
    this.dispatchEvent(new CustomEvent('state', { detail: { state: 'stopped' } }));
  }
}
