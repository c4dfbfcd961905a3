// The dashboard only reads what the server computed: every number, status and colour comes from the API.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.kind = body?.error?.kind;
  }
}

export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    for (const v of Array.isArray(value) ? value : [value]) query.append(key, v);
  }
  const url = `/api/v1${path}${query.size ? `?${query}` : ""}`;
  const response = await fetch(url, { credentials: "same-origin" });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export const id = (entityId) => encodeURIComponent(entityId).replaceAll("%2F", "/").replaceAll("%3A", ":");

// A WebSocket that comes back after the server restarts; onMessage gets each parsed message.
// `path` may be a function, asked again at each reconnect (to resume where the last one ended).
export function live(path, onMessage, onState) {
  let socket, closed = false, delay = 500;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${typeof path === "function" ? path() : path}`);
    socket.onopen = () => { delay = 500; onState?.("live"); };
    socket.onmessage = (e) => onMessage(JSON.parse(e.data));
    socket.onclose = () => {
      onState?.("offline");
      if (!closed) setTimeout(open, (delay = Math.min(delay * 2, 8000)));
    };
  };
  open();
  return { close() { closed = true; socket.close(); } };
}
