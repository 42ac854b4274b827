// Renders the stage (who is on it, who is speaking, audio levels) from room events or the
// moderator's stage view; shared by the listener page and the host console.

import { h } from './api.js';

const ROLE_NAMES = { host: 'Host', co_host: 'Co-host', speaker: 'Speaker' };

/**
 * participants: [{id, role, name, muted, muted_by_moderator, connected, speaking?, level?}]
 * actions(p): optional, returns buttons for a participant (host console).
 */
/** A level meter's fill; its width is set through the CSSOM (pages allow no style attributes). */
function meterFill(level) {
  const fill = h('div', {});
  fill.style.width = `${Math.min(100, level * 400)}%`;
  return fill;
}

export function renderSpeakers(container, participants, actions) {
  if (!participants || participants.length === 0) {
    container.replaceChildren(h('p', { class: 'muted' }, 'Nobody on stage yet.'));
    return;
  }
  container.replaceChildren(
    ...participants.map((p) => {
      const name = p.name || ROLE_NAMES[p.role] || 'Speaker';
      const status = p.muted
        ? p.muted_by_moderator ? 'muted by host' : 'muted'
        : !p.connected ? 'not connected' : p.speaking ? 'speaking' : ROLE_NAMES[p.role] || '';
      const level = typeof p.level === 'number' ? p.level : p.speaking ? 0.1 : 0;
      return h('div', { class: `speaker${p.speaking || level > 0.01 ? ' speaking' : ''}`, 'data-id': p.id },
        h('div', { class: 'avatar' }, name.slice(0, 1).toUpperCase()),
        h('div', {}, name),
        h('div', { class: 'muted' }, status),
        h('div', { class: 'meter' }, meterFill(level)),
        ...(actions ? [h('div', { class: 'row centered mt6' }, ...actions(p))] : []));
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
