// The listener page (/r/{id}): one tap to listen, who is speaking, reactions, request to speak.
// Plays over WebSocket + WebCodecs; falls back to LL-HLS (hls.js, or Safari's own player) where
// WebCodecs is missing, e.g. an older Safari or a page served over plain http from another host
// (WebCodecs needs a secure context). ?transport=ws|hls|hlsjs|native forces one.

import { admissionStats } from './admission.js';
import { api, h } from './api.js';
import { HlsPlayer } from './hls-player.js';
import { Player, dominantFrequency } from './player.js';
import { renderSpeakers, setBadge, listenerText } from './stage-view.js';
import { capabilities, chooseTransport, TRANSPORT_NAMES } from './transport.js';
import { WhepPlayer, bandsDb } from './whep.js';
import { WhipPublisher } from './whip.js';

const roomId = location.pathname.split('/').filter(Boolean).pop();
const $ = (id) => document.getElementById(id);
let player = null;
let publisher = null;
// On stage: the participant's mix-minus over WHEP, heard instead of the program.
let stage = null;

function showError(msg) {
  $('error').textContent = msg;
  $('error').hidden = !msg;
}

function onRoom(ev) {
  if (ev.type !== 'room') return;
  $('title').textContent = ev.title;
  document.title = `${ev.title} · Tribune`;
  $('listeners').textContent = listenerText(ev.listeners);
  if (player && player.state === 'live') setBadge($('state'), ev.state);
  if (Array.isArray(ev.participants)) renderSpeakers($('speakers'), ev.participants);
  else if (typeof ev.speakers === 'number') {
    // Polled room info (HLS): counts only; who is speaking comes with the WebSocket's events.
    $('speakers').replaceChildren(h('p', { class: 'muted' }, `${ev.speakers} on stage`));
  }
  showReactions(ev.reactions);
  const me = player && player.ticket ? String(player.ticket.listener_id) : null;
  if (me && Array.isArray(ev.invited) && ev.invited.includes(me) && !publisher) offerInvite();
}

const EMOJI = { clap: '👏', heart: '❤️', laugh: '😂', fire: '🔥', hundred: '💯', raise: '✋' };
let lastWindow = -1;
function showReactions(r) {
  if (!r || r.window === lastWindow) return;
  lastWindow = r.window;
  const text = Object.entries(r.counts || {}).map(([k, n]) => `${EMOJI[k] || k} ${n}`).join('  ');
  if (!text) return;
  const el = h('div', { class: 'floating' }, h('span', {}, text));
  document.body.append(el);
  setTimeout(() => el.remove(), 1500);
}

/**
 * The waiting room and the proof-of-work check as the listener sees them. The odds bar for the
 * check is the chance of having found a nonce after `tried` attempts, 1 − e^(−tried / 2^bits):
 * nobody knows how many attempts it will take, only how many it takes on average.
 */
function onAdmission({ state, position, eta_s: eta, bits, tried }) {
  const box = $('waiting');
  const bar = $('pow-progress');
  if (state === 'admitted') {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  setBadge($('state'), 'waiting');
  if (state === 'queued') {
    bar.hidden = true;
    $('waiting-text').textContent = `You're in line — position ${position}, about ${eta} s`;
  } else if (state === 'checking') {
    bar.hidden = false;
    bar.value = 1 - Math.exp(-tried / 2 ** bits);
    $('waiting-text').textContent = 'Checking your browser…';
  }
}

let inviteShown = false;
function offerInvite() {
  if (inviteShown) return;
  inviteShown = true;
  $('stage-status').replaceChildren(
    'The host invited you on stage. ',
    h('button', {
      onclick: async () => {
        try {
          const { data } = await api.call('POST', `/api/rooms/${roomId}/invites/me/accept`, { token: player.ticket.ticket, body: {} });
          await goOnStage(data.token);
        } catch (err) {
          $('stage-status').textContent = err.message;
        }
      },
    }, 'Join the stage'),
  );
}

async function loadInfo() {
  try {
    const room = await api.room(roomId);
    $('title').textContent = room.title;
    $('listeners').textContent = listenerText(room.listeners);
    setBadge($('state'), room.state);
    if (room.state === 'ended') {
      $('listen').disabled = true;
      $('listen').textContent = 'This room has ended';
    }
  } catch (err) {
    setBadge($('state'), 'ended');
    showError(err.status === 404 ? 'No such room.' : `Could not load the room: ${err.message}`);
    $('listen').disabled = true;
  }
}

$('listen').addEventListener('click', async () => {
  if (player) {
    player.stop();
    player = null;
    $('waiting').hidden = true;
    $('listen').textContent = '▶ Listen';
    return;
  }
  showError('');
  const params = new URLSearchParams(location.search);
  const transport = chooseTransport(location.search, capabilities());
  if (!transport) {
    showError('This browser can play neither Opus over WebCodecs nor HLS; try a current Chrome, Edge, Firefox or Safari.');
    return;
  }
  $('transport').textContent = `via ${TRANSPORT_NAMES[transport]}`;
  // ?lowlatency=0 turns hls.js's low-latency mode off: only for comparing (bench/hlsjs-latency.mjs).
  player = transport === 'ws'
    ? new Player(roomId)
    : new HlsPlayer(roomId, { engine: transport, lowLatency: params.get('lowlatency') !== '0' });
  window.tribune.player = player;
  // On stage, the page plays the stage: a program started now stays silent.
  if (stage && stage.state === 'playing') player.setOutputMuted(true);
  player.addEventListener('state', (e) => {
    const { state, reason } = e.detail;
    setBadge($('state'), state);
    if (state === 'ended' || state === 'removed') {
      $('listen').textContent = state === 'ended' ? 'This room has ended' : 'You were removed';
      $('listen').disabled = true;
      if (reason) showError(reason);
    }
  });
  player.addEventListener('room', (e) => onRoom(e.detail));
  player.addEventListener('admission', (e) => onAdmission(e.detail));
  $('listen').textContent = '■ Stop';
  try {
    await player.start();
  } catch (err) {
    showError(`Could not start audio: ${err.message}`);
  }
});

for (const [kind, label] of Object.entries(EMOJI)) {
  $('reactions').append(
    h('button', {
      'aria-label': kind,
      onclick: async () => {
        if (!player || !player.ticket) return;
        try {
          await api.call('POST', `/api/rooms/${roomId}/reactions`, { token: player.ticket.ticket, body: { kind } });
        } catch {
          /* reactions are best effort */
        }
      },
    }, label),
  );
}

$('request').addEventListener('click', async () => {
  if (!player || !player.ticket) {
    $('stage-status').textContent = 'Tap Listen first.';
    return;
  }
  const ticket = player.ticket.ticket;
  try {
    await api.call('POST', `/api/rooms/${roomId}/requests`, { token: ticket, body: {} });
    $('stage-status').textContent = 'Request sent. Waiting for the host…';
    $('request').disabled = true;
    pollRequest(ticket);
  } catch (err) {
    $('stage-status').textContent = err.message;
  }
});

async function pollRequest(ticket) {
  for (let i = 0; i < 600; i++) {
    await new Promise((r) => setTimeout(r, 2000));
    try {
      const { data } = await api.call('GET', `/api/rooms/${roomId}/requests/me`, { token: ticket });
      if (data.state === 'accepted' && data.token) return goOnStage(data.token);
      if (data.state === 'pending') $('stage-status').textContent = `Request sent. You are number ${data.position} in line.`;
      if (data.state === 'declined' || data.state === 'none') {
        $('stage-status').textContent = 'The host declined your request.';
        $('request').disabled = false;
        return;
      }
    } catch {
      /* keep waiting */
    }
  }
}

async function goOnStage(token) {
  $('stage-status').textContent = 'You are on stage. Publishing your microphone…';
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    publisher = new WhipPublisher(roomId, token);
    await publisher.start(stream);
    $('stage-status').textContent = 'You are live on stage.';
    $('request').hidden = true;
    $('mute-self').hidden = false;
    $('leave-stage').hidden = false;
    hearStage(token);
  } catch (err) {
    $('stage-status').textContent = `Could not publish: ${err.message}`;
  }
}

/**
 * Switches from the program to the stage (everyone else, live, without your own voice) once the
 * stage plays, so there is no gap; back to the program if the stage session ends for good.
 */
function hearStage(token) {
  stage = new WhepPlayer(roomId, token, { audible: false });
  window.tribune.stage = stage;
  stage.addEventListener('state', (e) => {
    const { state } = e.detail;
    if (state === 'playing') {
      stage.setAudible(true);
      if (player) player.setOutputMuted(true);
      $('stage-status').textContent = 'You are live on stage. You hear everyone else on it, live.';
    } else if (state === 'ended') {
      hearProgram();
      $('stage-status').textContent = 'You hear the room as the audience does.';
    } else if (state !== 'stopped') {
      // Reconnecting: the program (it kept playing) rather than silence meanwhile.
      stage.setAudible(false);
      if (player) player.setOutputMuted(false);
    }
  });
  stage.start();
}

/** Back to the program (it kept playing, silenced, while on stage). */
function hearProgram() {
  if (player) player.setOutputMuted(false);
  if (stage) stage.stop();
  stage = null;
  window.tribune.stage = null;
}

$('mute-self').addEventListener('click', () => {
  if (!publisher) return;
  const muted = $('mute-self').textContent === 'Mute';
  publisher.setMuted(muted);
  $('mute-self').textContent = muted ? 'Unmute' : 'Mute';
});

$('leave-stage').addEventListener('click', async () => {
  hearProgram();
  if (publisher) await publisher.stop();
  publisher = null;
  inviteShown = false;
  $('mute-self').hidden = true;
  $('leave-stage').hidden = true;
  $('request').hidden = false;
  $('request').disabled = false;
  $('stage-status').textContent = 'You left the stage.';
});

setInterval(() => {
  if (!player) return;
  $('stats').textContent = player.statsText();
}, 500);

// Hooks for tests and the curious: window.tribune.player.stats, window.tribune.frequency().
window.tribune = {
  player: null,
  stage: null,
  admission: admissionStats,
  /** What this page plays now: 'stage' (the mix-minus) or 'program'. */
  hearing: () => (stage && stage.state === 'playing' && stage.audible ? 'stage' : 'program'),
  /** Levels of `freqs` (dB under the strongest) in the last `seconds` of the program. */
  programBands: (freqs, seconds = 0.7) => {
    const samples = player ? player.recentSamples(Math.round(player.sampleRate * seconds)) : new Float32Array(0);
    return bandsDb(samples, player ? player.sampleRate : 48000, freqs);
  },
  /** Levels of `freqs` in the last ~0.7 s of the stage (while on stage). */
  stageBands: (freqs) => {
    if (!stage) return null;
    const { samples, rate } = stage.recentSamples();
    return { level: stage.level(), db: bandsDb(samples, rate, freqs) };
  },
  frequency: (seconds = 0.35) =>
    (player ? dominantFrequency(player.recentSamples(Math.round(player.sampleRate * seconds)), player.sampleRate) : null),
};

loadInfo();
