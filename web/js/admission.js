// Getting into a room under admission control (server: crates/tribune-server/src/join.rs).
//
// `POST /api/rooms/{id}/join` answers 200 (in: a listen ticket), 202 (the waiting room: a queue
// ticket, a position and an ETA; come back after Retry-After with the queue ticket), 401 with a
// proof-of-work challenge (the node is under attack), or 429/503 (come back after Retry-After).
// joinRoom() follows all of it and resolves with the 200 answer. Both tickets are kept in
// sessionStorage: a reload keeps the listener's place in line, and a listener who was in comes
// back with its listen ticket, which the node never queues.

import { ApiError } from './api.js';
import { Backoff } from './backoff.js';

/** Counters for the page and the tests: what admission took this page through. */
export const admissionStats = {
  queued: 0, // 202 answers
  positions: [], // each position shown, in order
  challenges: 0, // 401 proof_of_work_required answers
  solvedInWorker: 0, // challenges solved by pow-worker.js
  lastProof: null, // {challenge, bits, nonce, tried, ms}
  resumed: 0, // 200 answers to a join with a listen ticket
};

const key = (kind, room) => `tribune.${kind}.${room}`;

/** sessionStorage, tolerating browsers that refuse it (some private modes throw). */
const saved = {
  get(kind, room) {
    try {
      return JSON.parse(sessionStorage.getItem(key(kind, room)));
    } catch {
      return null;
    }
  },
  set(kind, room, value) {
    try {
      if (value == null) sessionStorage.removeItem(key(kind, room));
      else sessionStorage.setItem(key(kind, room), JSON.stringify(value));
    } catch {
      /* no storage: the place in line lives as long as the page */
    }
  },
};

/** Forgets the saved tickets of `room` (the room ended, or the listener was removed). */
export function forgetRoom(room) {
  saved.set('listen', room, null);
  saved.set('queue', room, null);
}

/** A listen ticket still worth resuming with: one that does not expire in the next minute. */
function savedListenTicket(room) {
  const t = saved.get('listen', room);
  return t && t.ticket && t.expires_at * 1000 > Date.now() + 60_000 ? t : null;
}

function wait(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/**
 * Solves a challenge in pow-worker.js (never on the main thread: at the node's top difficulty
 * that is seconds of hashing). `onProgress(tried)` is called as the worker reports.
 */
export function solveInWorker(challenge, bits, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./pow-worker.js', import.meta.url), { type: 'module' });
    const done = () => worker.terminate();
    signal?.addEventListener('abort', () => {
      done();
      reject(signal.reason);
    }, { once: true });
    worker.onmessage = (e) => {
      if (e.data.type === 'progress') onProgress(e.data.tried);
      if (e.data.type === 'solved') {
        done();
        admissionStats.solvedInWorker += 1;
        resolve(e.data);
      }
    };
    worker.onerror = (e) => {
      done();
      reject(new Error(`proof of work failed: ${e.message || 'worker error'}`));
    };
    worker.postMessage({ challenge, bits });
  });
}

/**
 * Joins `room` and resolves with the admission ({ticket, listener_id, listen_url, hls_url, …}).
 * `onStatus` hears {state: 'queued', position, eta_s}, {state: 'checking', bits, tried}, and
 * {state: 'admitted'}. Rejects with an ApiError for a room that is gone (404, 410) or a refusal
 * that retrying cannot fix, and with `signal.reason` when aborted.
 */
export async function joinRoom(room, { onStatus = () => {}, signal } = {}) {
  const backoff = new Backoff({ baseMs: 500, capMs: 15000 });
  let proof = null;
  for (;;) {
    // What to come back with, best first: a listen ticket (never queued), a place in line, a
    // solved challenge. Each solved challenge is good for one join.
    const listen = savedListenTicket(room);
    const queue = listen ? null : saved.get('queue', room);
    const body = listen ? { ticket: listen.ticket } : queue ? { queue_ticket: queue } : proof ? { pow: proof } : {};
    proof = null;
    let resp;
    let data = null;
    try {
      resp = await fetch(`/api/rooms/${room}/join`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        signal,
      });
      data = await resp.json().catch(() => null);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      await wait(backoff.next(), signal); // offline or the node is restarting
      continue;
    }
    const retryAfter = Number(resp.headers.get('Retry-After')) || (data && data.retry_after_s) || 0;

    if (resp.status === 200) {
      if (body.ticket) admissionStats.resumed += 1;
      saved.set('listen', room, { ticket: data.ticket, expires_at: data.expires_at });
      saved.set('queue', room, null);
      onStatus({ state: 'admitted' });
      return data;
    }
    if (resp.status === 202) {
      admissionStats.queued += 1;
      admissionStats.positions.push(data.position);
      saved.set('queue', room, data.queue_ticket);
      onStatus({ state: 'queued', position: data.position, eta_s: data.eta_s });
      // The node calls the next numbers and holds each called seat for a few seconds; its
      // Retry-After is short enough to come back within that hold. A little jitter keeps those
      // told the same second from arriving in the same instant.
      await wait(Math.max(1, retryAfter) * 1000 * (1 + Math.random() * 0.2), signal);
      continue;
    }
    if (resp.status === 401 && data && data.error === 'proof_of_work_required') {
      admissionStats.challenges += 1;
      onStatus({ state: 'checking', bits: data.bits, tried: 0 });
      const solved = await solveInWorker(
        data.challenge,
        data.bits,
        (tried) => onStatus({ state: 'checking', bits: data.bits, tried }),
        signal,
      );
      admissionStats.lastProof = { challenge: data.challenge, bits: data.bits, ...solved };
      proof = { challenge: data.challenge, nonce: solved.nonce };
      continue;
    }
    if (resp.status === 403 && (body.ticket || body.queue_ticket || body.pow)) {
      // What we came back with is no longer good (expired, from a node with another key, a
      // proof already used or expired): drop it and ask afresh, which costs a place in line
      // only if the node has no other way to let us in.
      if (body.ticket) saved.set('listen', room, null);
      else if (body.queue_ticket) saved.set('queue', room, null);
      await wait(backoff.next(), signal);
      continue;
    }
    if (resp.status === 429 || resp.status >= 500) {
      await wait(backoff.next(retryAfter), signal);
      continue;
    }
    throw new ApiError(resp.status, data && data.error, data && data.message, retryAfter || undefined);
  }
}
