// The host console (/host/{id}): hear the stage (the host's mix-minus over WHEP, from the
// moment it opens), go live with the microphone, mute, see the stage and the audience, answer
// requests to speak, share the invite link, end the room.

import { api, h, tokens } from './api.js';
import { renderSpeakers, setBadge, listenerText } from './stage-view.js';
import { WhepPlayer, bandsDb } from './whep.js';
import { WhipPublisher, levelMeter } from './whip.js';

const roomId = location.pathname.split('/').filter(Boolean).pop();
const $ = (id) => document.getElementById(id);
// A token in the URL fragment (an invite for a co-host) is taken when this browser holds none
// for the room; one that differs from the stored token is offered, never silently swapped in
// (a link could otherwise take over someone's console). The fragment leaves the address bar.
const fragmentToken = new URLSearchParams(location.hash.slice(1)).get('token');
if (fragmentToken) history.replaceState(null, '', location.pathname + location.search);
// A token link opened in this very tab changes only the fragment: read it afresh.
window.addEventListener('hashchange', () => {
  if (new URLSearchParams(location.hash.slice(1)).get('token')) location.reload();
});
if (fragmentToken && !tokens.get(roomId)) tokens.set(roomId, fragmentToken);
const token = tokens.get(roomId);
if (fragmentToken && fragmentToken !== token) {
  $('token-offer').hidden = false;
  $('token-use').addEventListener('click', () => {
    tokens.set(roomId, fragmentToken);
    location.reload();
  });
  $('token-keep').addEventListener('click', () => {
    $('token-offer').hidden = true;
  });
}
let publisher = null;
let stopMeter = null;
let muted = false;

function showError(msg) {
  $('error').textContent = msg;
  $('error').hidden = !msg;
}

$('invite-link').value = `${location.origin}/r/${roomId}`;
$('copy-link').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText($('invite-link').value);
    $('copy-link').textContent = 'Copied';
  } catch {
    $('invite-link').select();
  }
});

if (!token) {
  showError('This browser holds no host token for this room. Open the console from the browser that created it.');
  for (const id of ['go-live', 'end']) $(id).disabled = true;
}

// The stage as the host hears it: everyone else on it, live, before and after going live.
const STAGE_TEXT = {
  connecting: 'Stage: connecting…',
  playing: 'Stage: you hear everyone on stage',
  reconnecting: 'Stage: reconnecting…',
  blocked: 'Stage: tap to hear it',
  ended: 'Stage: not available',
  stopped: 'Stage: off',
};
const stage = token ? new WhepPlayer(roomId, token) : null;
if (stage) {
  stage.addEventListener('state', (e) => {
    const { state, reason } = e.detail;
    $('stage-status').textContent = STAGE_TEXT[state] + (reason && state !== 'playing' ? ` (${reason})` : '');
    $('stage-play').hidden = state !== 'blocked';
  });
  $('stage-play').addEventListener('click', () => stage.resume());
  setInterval(() => {
    $('stage-level').style.width = `${Math.min(100, stage.level() * 400)}%`;
  }, 100);
  stage.start();
}

// Hooks for tests and the curious: what the host hears of the stage.
window.tribune = {
  stage,
  stageBands: (freqs) => {
    const { samples, rate } = stage.recentSamples();
    return { level: stage.level(), db: bandsDb(samples, rate, freqs) };
  },
};

$('go-live').addEventListener('click', async () => {
  showError('');
  if (publisher) {
    await publisher.stop();
    publisher = null;
    if (stopMeter) stopMeter();
    $('go-live').textContent = '🎙 Go live';
    $('mute').disabled = true;
    $('mic-status').textContent = 'Off air.';
    return;
  }
  try {
    $('mic-status').textContent = 'Asking for the microphone…';
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    stopMeter = levelMeter(stream, (level) => {
      $('my-level').style.width = `${Math.min(100, level * 400)}%`;
    });
    publisher = new WhipPublisher(roomId, token);
    const pc = await publisher.start(stream);
    pc.addEventListener('connectionstatechange', () => {
      $('mic-status').textContent = `Microphone: ${pc.connectionState}`;
    });
    $('go-live').textContent = '⏹ Leave stage';
    $('mute').disabled = false;
    $('mic-status').textContent = 'You are live.';
  } catch (err) {
    showError(`Could not go live: ${err.message}`);
    $('mic-status').textContent = '';
    publisher = null;
  }
});

$('mute').addEventListener('click', () => {
  muted = !muted;
  if (publisher) publisher.setMuted(muted);
  $('mute').textContent = muted ? 'Unmute' : 'Mute';
});

$('end').addEventListener('click', async () => {
  if (!confirm('End this room for everyone?')) return;
  try {
    if (publisher) await publisher.stop();
    await api.endRoom(roomId, token);
    refresh();
  } catch (err) {
    showError(err.message);
  }
});

async function answer(listenerId, verb) {
  try {
    await api.call('POST', `/api/rooms/${roomId}/requests/${listenerId}/${verb}`, { token, body: {} });
    refresh();
  } catch (err) {
    showError(err.message);
  }
}

async function moderate(pid, verb, body = {}) {
  try {
    await api.call('POST', `/api/rooms/${roomId}/participants/${pid}/${verb}`, { token, body });
    refresh();
  } catch (err) {
    showError(err.message);
  }
}

function participantActions(p) {
  if (p.role === 'host') return [];
  return [
    h('button', { class: 'secondary', onclick: () => moderate(p.id, 'mute', { muted: !p.muted }) }, p.muted ? 'Unmute' : 'Mute'),
    h('button', { class: 'secondary', onclick: () => moderate(p.id, 'demote') }, 'To audience'),
    h('button', { class: 'danger', onclick: () => confirm('Remove and block?') && moderate(p.id, 'remove', { block: true }) }, 'Remove'),
  ];
}

function renderRequests(requests) {
  if (!requests || requests.length === 0) {
    $('requests').replaceChildren(h('li', { class: 'muted' }, 'None yet'));
    return;
  }
  $('requests').replaceChildren(
    ...requests.map((r) => {
      const id = r.listener_id;
      return h('li', {},
        h('span', {}, `${r.position}. ${r.name || `Listener ${String(id).slice(-4)}`}`),
        h('span', { class: 'row' },
          h('button', { onclick: () => answer(id, 'accept') }, 'Accept'),
          h('button', { class: 'secondary', onclick: () => answer(id, 'decline') }, 'Decline')));
    }),
  );
}

// Recording: shown only when the node records (it answers 404 otherwise).
let recording = null;

function renderRecording(r) {
  recording = r;
  $('recording-row').hidden = !r;
  if (!r) return;
  const minutes = Math.floor(r.duration_s / 60);
  const seconds = Math.floor(r.duration_s % 60).toString().padStart(2, '0');
  const length = `${minutes}:${seconds} recorded`;
  $('recording').textContent = r.ended
    ? `Recording complete · ${length}`
    : `${r.enabled ? '● Recording' : 'Not recording'} · ${length}`;
  $('recording-toggle').textContent = r.enabled ? 'Stop recording' : 'Record';
  $('recording-toggle').hidden = r.ended || !token;
  $('recording-download').href = r.download_url;
  $('recording-download').hidden = r.segments === 0;
}

$('recording-toggle').addEventListener('click', async () => {
  if (!recording) return;
  try {
    const { data } = await api.call('POST', `/api/rooms/${roomId}/recording`, {
      token,
      body: { enabled: !recording.enabled },
    });
    renderRecording(data);
  } catch (err) {
    showError(err.message);
  }
});

async function refreshRecording() {
  try {
    const { data } = await api.call('GET', `/api/rooms/${roomId}/recording`);
    renderRecording(data);
  } catch (err) {
    if (err.status === 404) renderRecording(null);
  }
}

async function refresh() {
  refreshRecording();
  try {
    const room = await api.room(roomId);
    $('title').textContent = room.title;
    document.title = `Host · ${room.title}`;
    $('listeners').textContent = listenerText(room.listeners);
    setBadge($('state'), room.state);
    if (room.state === 'ended') {
      for (const id of ['go-live', 'mute', 'end']) $(id).disabled = true;
      if (stage && stage.state !== 'stopped') stage.stop();
    }
    if (token) {
      try {
        const { data } = await api.call('GET', `/api/rooms/${roomId}/stage`, { token });
        renderSpeakers($('speakers'), data.participants, participantActions);
        renderRequests(data.requests);
      } catch (err) {
        if (err.status === 403) showError('Your token no longer moderates this room.');
      }
    }
  } catch (err) {
    showError(err.status === 404 ? 'No such room.' : err.message);
  }
}

refresh();
setInterval(refresh, 1000);
