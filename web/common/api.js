// REST helper for /api/v1: bearer token from storage, JSON errors turned into ApiError.

const BASE = '/api/v1';
const TIMEOUT_MS = 20000;

export class ApiError extends Error {
  constructor(code, message, { field = null, status = 0 } = {}) {
    super(message || code);
    this.name = 'ApiError';
    this.code = code;
    this.field = field;
    this.status = status;
  }
}

/** Turn a REST path from the server (e.g. MaterialInfo.url) into a fetchable path. */
export function apiPath(path) {
  if (/^https?:\/\//.test(path)) return path;
  if (path.startsWith(BASE + '/') || path.startsWith('/api/')) return path;
  return BASE + (path.startsWith('/') ? path : '/' + path);
}

export class Api {
  /**
   * @param {{storage?: Storage, key?: string}} opts  The kiosk passes localStorage so a
   *   reboot does not need the device key again; every other page keeps sessionStorage.
   */
  constructor({ storage = window.sessionStorage, key = 'vw.session' } = {}) {
    this.storage = storage;
    this.key = key;
  }

  /** The stored login `{token, role, name, expires_at, …}` or null when missing/expired. */
  get session() {
    let value = null;
    try {
      value = JSON.parse(this.storage.getItem(this.key) || 'null');
    } catch {
      value = null;
    }
    if (!value || !value.token) return null;
    if (value.expires_at && Date.parse(value.expires_at) <= Date.now()) {
      this.clear();
      return null;
    }
    return value;
  }

  get token() {
    const s = this.session;
    return s ? s.token : null;
  }

  setSession(session) {
    this.storage.setItem(this.key, JSON.stringify(session));
  }

  clear() {
    this.storage.removeItem(this.key);
  }

  /** POST credentials to an /auth/* route and keep the answer as the session. */
  async login(path, body, extra = {}) {
    const answer = await this.request('POST', path, { body, auth: false });
    this.setSession({ ...answer, ...extra });
    return answer;
  }

  get(path) {
    return this.request('GET', path);
  }

  post(path, body) {
    return this.request('POST', path, { body });
  }

  put(path, body) {
    return this.request('PUT', path, { body });
  }

  /** POST raw bytes (an image) with their content type. */
  postBytes(path, blob, contentType) {
    return this.request('POST', path, { raw: blob, contentType });
  }

  /** Fetch bytes (e.g. a material) with the bearer token; returns a Blob. */
  blob(path) {
    return this.request('GET', path, { as: 'blob' });
  }

  async request(method, path, { body, raw, contentType, auth = true, as = 'json' } = {}) {
    const headers = { Accept: as === 'json' ? 'application/json' : '*/*' };
    const token = auth ? this.token : null;
    if (token) headers.Authorization = `Bearer ${token}`;
    let payload;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    } else if (raw !== undefined) {
      headers['Content-Type'] = contentType;
      payload = raw;
    }
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch(apiPath(path), {
        method, headers, body: payload, signal: ctrl.signal, credentials: 'omit', cache: 'no-store',
      });
    } catch (err) {
      const code = err && err.name === 'AbortError' ? 'timeout' : 'network';
      throw new ApiError(code, code === 'timeout' ? 'request timed out' : 'network error');
    } finally {
      clearTimeout(timer);
    }
    if (!resp.ok) throw await errorFrom(resp);
    if (as === 'blob') return resp.blob();
    if (resp.status === 204) return null;
    const text = await resp.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiError('invalid_json', 'the server sent an unreadable answer', { status: resp.status });
    }
  }
}

async function errorFrom(resp) {
  let code = resp.status === 401 ? 'unauthenticated'
    : resp.status === 403 ? 'forbidden'
      : resp.status === 404 ? 'not_found'
        : resp.status === 409 ? 'conflict'
          : resp.status >= 500 ? 'internal' : 'http_' + resp.status;
  let message = resp.statusText;
  let field = null;
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      field = body.error.field || null;
    }
  } catch {
    // Not JSON (e.g. a proxy error page): keep the status-derived code.
  }
  return new ApiError(code, message, { field, status: resp.status });
}
