// The room API over fetch. Errors carry the server's JSON {error, message}.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function call(method, path, { token, body, contentType } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = contentType || 'application/json';
    payload = contentType ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers, body: payload });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!resp.ok) {
    const retry = Number(resp.headers.get('Retry-After')) || undefined;
    throw new ApiError(resp.status, data && data.error, data && data.message, retry);
  }
  return { data, resp };
}

export const api = {
  listRooms: async () => (await call('GET', '/api/rooms')).data.rooms,
  room: async (id) => (await call('GET', `/api/rooms/${id}`)).data,
  createRoom: async (title, apiKey) =>
    (await call('POST', '/api/rooms', { token: apiKey, body: { title } })).data,
  join: async (id) => (await call('POST', `/api/rooms/${id}/join`, { body: {} })).data,
  endRoom: async (id, token) => (await call('POST', `/api/rooms/${id}/end`, { token, body: {} })).data,
  addSpeaker: async (id, token) =>
    (await call('POST', `/api/rooms/${id}/speakers`, { token, body: {} })).data,
  call,
};

/** Where this browser keeps stage tokens for rooms it hosts or speaks in. */
export const tokens = {
  get: (room) => localStorage.getItem(`tribune.token.${room}`),
  set: (room, token) => localStorage.setItem(`tribune.token.${room}`, token),
};

/** Element helper: h('div', {class: 'x'}, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
