// The console's only way out: JSON under /api/v1/ with the bearer token the
// user signed in with. The token lives in sessionStorage (gone when the tab
// closes) and is never put into a URL.

const TOKEN_KEY = 'garda.token';
const BASE = 'api/v1/';

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY) || '',
  set: (token) => sessionStorage.setItem(TOKEN_KEY, token),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Called on every 401 so the app can return to the sign-in page.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function headers(extra = {}, token = session.token()) {
  return { Authorization: `Bearer ${token}`, ...extra };
}

async function failure(res) {
  const text = await res.text().catch(() => '');
  let message = text || res.statusText;
  try {
    const j = JSON.parse(text);
    message = j.error || j.message || message;
  } catch {
    // not JSON: keep the text
  }
  if (res.status === 401) onUnauthorized();
  return new ApiError(res.status, message);
}

export async function api(path, { method = 'GET', body, token } = {}) {
  const init = { method, headers: headers(body ? { 'Content-Type': 'application/json' } : {}, token) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(BASE + path, init);
  if (!res.ok) throw await failure(res);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// Fetches a file with the token and hands it to the browser as a download
// (a plain link cannot carry the Authorization header).
export async function download(path, filename) {
  const res = await fetch(BASE + path, { headers: headers() });
  if (!res.ok) throw await failure(res);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// Splits a text/event-stream into events (WHATWG HTML, "Parsing an event
// stream"): blank line ends an event; "event:", "data:" and "id:" fields;
// lines starting with ":" are comments (keep-alives).
export function sseParser(onEvent) {
  let buffer = '';
  let type = '';
  let data = [];
  let id = '';
  const line = (l) => {
    if (l === '') {
      if (data.length) onEvent({ type: type || 'message', data: data.join('\n'), id });
      type = '';
      data = [];
      return;
    }
    if (l.startsWith(':')) return;
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
  };
  return (chunk) => {
    buffer += chunk;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    lines.forEach(line);
  };
}

// Server-Sent Events over fetch, so the token goes in the Authorization
// header as for every other request (EventSource cannot send headers).
// Reconnects with backoff; onState gets 'live' or 'offline'.
export function subscribe(onEvent, onState) {
  const abort = new AbortController();
  let stopped = false;
  (async () => {
    let backoffMs = 1000;
    while (!stopped) {
      try {
        const res = await fetch(`${BASE}events`, {
          headers: headers({ Accept: 'text/event-stream' }),
          signal: abort.signal,
          cache: 'no-store',
        });
        if (!res.ok) throw await failure(res);
        onState('live');
        backoffMs = 1000;
        const feed = sseParser(onEvent);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          feed(value);
        }
      } catch (e) {
        if (stopped) return;
        if (e instanceof ApiError && e.status === 401) return;
      }
      onState('offline');
      await new Promise((r) => setTimeout(r, backoffMs));
      backoffMs = Math.min(backoffMs * 2, 15_000);
    }
  })();
  return () => {
    stopped = true;
    abort.abort();
  };
}
