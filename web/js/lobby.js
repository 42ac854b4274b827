// The lobby: live and scheduled rooms, and a form to start one.

import { api, h, tokens } from './api.js';

const list = document.getElementById('rooms');
const form = document.getElementById('create');
const errorEl = document.getElementById('create-error');
const keyRow = document.getElementById('key-row');
const keyInput = document.getElementById('api-key');
// The node's operator key, asked for once and remembered by this browser.
const KEY_ITEM = 'tribune.apiKey';

async function refresh() {
  try {
    const rooms = await api.listRooms();
    list.replaceChildren(
      ...(rooms.length
        ? rooms.map((r) =>
            h('li', {},
              h('a', { href: `/r/${r.id}` },
                h('span', {}, r.title),
                h('span', { class: `badge ${r.state}` },
                  r.state === 'live' ? `LIVE · ${r.listeners}` : r.state))))
        : [h('li', { class: 'muted' }, 'No rooms yet. Start one!')]),
    );
  } catch (err) {
    list.replaceChildren(h('li', { class: 'error' }, `Could not load rooms: ${err.message}`));
  }
}

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  errorEl.hidden = true;
  const title = document.getElementById('title').value.trim();
  const key = keyInput.value.trim() || localStorage.getItem(KEY_ITEM) || undefined;
  try {
    const room = await api.createRoom(title, key);
    if (key) localStorage.setItem(KEY_ITEM, key);
    tokens.set(room.id, room.host_token);
    location.href = `/host/${room.id}`;
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      // No key yet, or a wrong one: ask (once) and keep what works.
      localStorage.removeItem(KEY_ITEM);
      keyInput.value = '';
      keyRow.hidden = false;
      keyInput.focus();
      errorEl.textContent = err.status === 401
        ? 'Only this node\'s operators start rooms here: enter the operator key (this browser will remember it).'
        : 'That operator key was refused; check it and try again.';
    } else {
      errorEl.textContent = err.message;
    }
    errorEl.hidden = false;
  }
});

refresh();
setInterval(refresh, 5000);
