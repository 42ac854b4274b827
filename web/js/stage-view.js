// Renders the stage (who is on it, who is speaking) from room events; shared by both pages.

import { h } from './api.js';

export function renderSpeakers(container, speakers, levels = {}) {
  if (!speakers || speakers.length === 0) {
    container.replaceChildren(h('p', { class: 'muted' }, 'Nobody on stage yet.'));
    return;
  }
  container.replaceChildren(
    ...speakers.map((s, i) => {
      const name = s.name || (s.role === 'host' ? 'Host' : s.role === 'co_host' ? 'Co-host' : `Speaker ${i + 1}`);
      const level = levels[s.id];
      const meter = h('div', { class: 'meter' }, h('div', { style: `width:${Math.min(100, (level || 0) * 400)}%` }));
      return h('div', { class: `speaker${s.speaking ? ' speaking' : ''}`, 'data-id': s.id },
        h('div', { class: 'avatar' }, name.slice(0, 1).toUpperCase()),
        h('div', {}, name),
        h('div', { class: 'muted' }, s.muted ? 'muted' : s.speaking ? 'speaking' : ''),
        meter);
    }),
  );
}

export function setBadge(el, state) {
  el.textContent = state === 'live' ? 'LIVE' : state;
  el.className = `badge ${state}`;
}

export function listenerText(n) {
  return `${n} listening`;
}
