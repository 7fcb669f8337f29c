// The HTTP half of the resume-server API, plus where the demo keeps its login.
// Knows nothing about the page: callers decide what to show.

const TOKEN_KEY = 'resume.token';
const USER_KEY = 'resume.user';

/** A non-2xx answer, carrying the server's `{"error","message"}` body. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

// sessionStorage, not localStorage: each tab can be a different viewer, which is
// what the demo is for.
export function savedLogin() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const user = sessionStorage.getItem(USER_KEY);
  return token && user ? { token, user } : null;
}

export function forgetLogin() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
}

export async function logIn(user) {
  const { token } = await request('POST', '/api/v1/demo/token', { body: { user_id: user } });
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(USER_KEY, user);
  return { token, user };
}

export const catalog = () => request('GET', '/api/v1/catalog');

export const continueWatching = (limit = 20) =>
  request('GET', `/api/v1/continue-watching?limit=${limit}`);

export const stream = (movieId) =>
  request('GET', `/api/v1/stream?movie_id=${encodeURIComponent(movieId)}`);

/**
 * The viewer's saved position and watched state of a title, or null when
 * nothing is saved. The browser logs the 404 of the latter as an error: ask
 * only about titles known to have something saved.
 */
export async function progress(movieId) {
  try {
    return await request('GET', `/api/v1/progress/${encodeURIComponent(movieId)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/** Marks a title watched: its position moves to the end. */
export const markWatched = (movieId) =>
  request('PUT', `/api/v1/progress/${encodeURIComponent(movieId)}/watched`);

/** Marks a title unwatched: its position goes back to the beginning. */
export const markUnwatched = (movieId) =>
  request('DELETE', `/api/v1/progress/${encodeURIComponent(movieId)}/watched`);

/**
 * Same-origin WebSocket URL of a new playback session for a title. A browser
 * cannot put the token in a WebSocket header, and a URL is the wrong place for
 * it (logs, history), so this asks for a single-use ticket that the server
 * accepts for this one upgrade within seconds. Call it right before opening
 * the socket, once per attempt.
 */
export async function sessionUrl(movieId) {
  const { ticket } = await request('POST', '/api/v1/stream/session-ticket', {
    body: { movie_id: movieId },
  });
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = new URLSearchParams({ movie_id: movieId, ticket });
  return `${scheme}//${location.host}/api/v1/stream/session?${query}`;
}

async function request(method, path, { body } = {}) {
  const headers = { Accept: 'application/json' };
  const token = savedLogin()?.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, payload?.error, payload?.message);
  }
  return payload;
}
