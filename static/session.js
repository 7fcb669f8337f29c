// One title's playback session: a WebSocket that carries position ticks to the
// server and survives drops. The latest position is kept until a socket takes
// it, so a reconnect sends where the viewer is now before anything else. Each
// attempt asks for a fresh URL first: the URL carries a single-use ticket.

const BACKOFF_START_MS = 1000;
const BACKOFF_CAP_MS = 30000;

/**
 * Connection states reported through `onChange`:
 * `connecting`, `live`, `reconnecting` (with `retryAt`), `offline`, `closed`.
 */
export class PlaybackSession {
  /**
   * @param {() => Promise<string>} openUrl  gives the WebSocket URL for one
   *                           attempt (it holds a single-use ticket)
   * @param {object} handlers  `onChange(state, retryAt?)`, `onHello(msg)`,
   *                           `onSaved(seconds)`, `onSuperseded(msg)` when a
   *                           write lost to a newer one, `onServerError(msg)`, and
   *                           `onUrlError(error)` when `openUrl` failed (the
   *                           session retries with backoff)
   */
  constructor(openUrl, handlers) {
    this.openUrl = openUrl;
    this.handlers = handlers;
    this.socket = null;
    this.connecting = false;
    this.latest = null;
    this.failures = 0;
    this.retryTimer = 0;
    this.closed = false;
    this.onOnline = () => this.reconnectNow();
    this.onOffline = () => this.report('offline');
    addEventListener('online', this.onOnline);
    addEventListener('offline', this.onOffline);
    this.connect();
  }

  /** Records the viewer's position and sends it if a socket is open. */
  tick(positionSeconds, state) {
    this.latest = {
      type: 'tick',
      position_seconds: Math.round(positionSeconds * 1000) / 1000,
      state,
    };
    this.flush();
  }

  /**
   * Closes for good with a normal 1000 close. A tick sent just before still
   * arrives: send() queues it ahead of the close frame.
   */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    removeEventListener('online', this.onOnline);
    removeEventListener('offline', this.onOffline);
    const socket = this.socket;
    if (socket) {
      // Nothing said after this may reach the page: it may show another title
      // or another viewer by then.
      socket.onmessage = null;
      if (socket.readyState === WebSocket.CONNECTING) {
        // Closing a socket that is still connecting makes the browser log a
        // failed connection; let it open, hand over the last position, then
        // close it.
        const last = this.latest;
        socket.onopen = () => {
          if (last) socket.send(JSON.stringify(last));
          socket.close(1000, 'viewer left');
        };
      } else {
        socket.close(1000, 'viewer left');
      }
      this.socket = null;
    }
    this.report('closed');
  }

  async connect() {
    if (this.closed || this.connecting) return;
    if (!navigator.onLine) {
      this.report('offline');
      return;
    }
    this.report('connecting');
    this.connecting = true;
    let url;
    try {
      url = await this.openUrl();
    } catch (error) {
      if (this.closed) return;
      this.handlers.onUrlError?.(error);
      this.scheduleReconnect();
      return;
    } finally {
      this.connecting = false;
    }
    // The viewer may have left while the URL was on its way.
    if (this.closed) return;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => this.flush();
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.scheduleReconnect();
    };
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    switch (message.type) {
      case 'hello':
        // Only a greeting proves the server took the session; an open
        // socket that is closed at once must still back off.
        this.failures = 0;
        this.report('live');
        this.handlers.onHello?.(message);
        break;
      case 'saved':
        this.handlers.onSaved?.(message.position_seconds);
        break;
      case 'superseded':
        this.handlers.onSuperseded?.(message);
        break;
      case 'error':
        this.handlers.onServerError?.(message);
        break;
    }
  }

  flush() {
    if (this.latest && this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(this.latest));
    }
  }

  scheduleReconnect() {
    if (this.closed) return;
    if (!navigator.onLine) {
      this.report('offline');
      return;
    }
    // Full exponential backoff with "equal jitter": half fixed, half random, so
    // a server restart is not met by every viewer at the same instant.
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** this.failures);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.failures += 1;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.report('reconnecting', Date.now() + delay);
  }

  reconnectNow() {
    if (this.closed || this.socket || this.connecting) return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  report(state, retryAt) {
    this.handlers.onChange?.(state, retryAt);
  }
}
