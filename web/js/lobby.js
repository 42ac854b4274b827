// The lobby: live and scheduled rooms, and a form to start one.

import { api, h, tokens } from './api.js';

const list = document.getElementById('rooms');
const form = document.getElementById('create');
const errorEl = document.getElementById('create-error');

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
  try {
    const room = await api.createRoom(title);
    tokens.set(room.id, room.host_token);
    location.href = `/host/${room.id}`;
  } catch (err) {
    errorEl.textContent = err.message;
    errorEl.hidden = false;
  }
});

refresh();
setInterval(refresh, 5000);
