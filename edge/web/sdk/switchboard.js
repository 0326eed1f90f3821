// Switchboard JS client: a plain ES module, no build step, no dependencies.
//
//   import { SwitchboardClient } from '/sdk/switchboard.js';
//   const client = new SwitchboardClient('ws://127.0.0.1:4233/');   // hosted mode: add { token }
//   client.on('peer_joined', ({ peerId, status }) => console.log(status.name, 'joined'));
//   const { ownId, peers } = await client.join('hello', { name: 'me' });
//
// It speaks the palava signaling protocol 1.0.0 as Switchboard serves it (docs/protocol.md), keeps the
// connection alive with application-level pings, reconnects with backoff and jitter when the socket
// drops or the server announces a shutdown, and then joins the room again. The whole API is described
// in docs/client.md. Offers, answers and ICE candidates use palava-client's field names, so pages using
// this client and pages using palava-client can call each other.

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = '1.0.0';

/**
 * Error code for every error text the server sends (docs/protocol.md), named as the server's
 * `switchboard_errors_total{reason}` metric names them.
 */
export const SERVER_ERROR_CODES = Object.freeze({
  'invalid message': 'invalid_message',
  'invalid message: not a hash': 'not_a_hash',
  'no event given': 'no_event',
  'unknown event': 'unknown_event',
  'no room id given': 'no_room_id',
  'room id too long': 'room_id_too_long',
  'already joined another room': 'already_joined',
  'blank name not allowed': 'blank_name',
  'name too long': 'name_too_long',
  'unknown user agent': 'unknown_user_agent',
  'currently not in any room': 'not_in_room',
  'cannot send raw data': 'raw_data',
  'unknown peer': 'unknown_peer',
  'event not allowed': 'event_not_allowed',
  'rate limit exceeded': 'rate_limited',
  'room is full': 'room_full',
  'invalid status': 'invalid_status',
  'status too large': 'status_too_large',
  'service unavailable': 'unavailable',
  'invalid message: nested too deeply': 'nested_too_deeply',
  'room not allowed by token': 'room_not_allowed',
  'join not allowed by token': 'join_not_allowed',
  'send not allowed by token': 'send_not_allowed',
  'room quota exceeded': 'room_quota_exceeded',
  'tenant rate limit exceeded': 'tenant_rate_limited',
  'removed by the service': 'removed_by_service',
});

/** Error codes that arise in the client itself rather than in a server `error` event. */
export const CLIENT_ERROR_CODES = Object.freeze({
  /**
   * The WebSocket could not be opened (nothing listening, HTTP 503 from a full or draining edge, ...).
   * Browsers report every refused upgrade this way: they hide its HTTP status (see docs/client.md).
   */
  CONNECTION_FAILED: 'connection_failed',
  /** Hosted mode: the upgrade was refused with HTTP 401, no valid token (where the status is visible). */
  UNAUTHORIZED: 'unauthorized',
  /** Hosted mode: the upgrade was refused with HTTP 403, the page's origin is not allowed. */
  FORBIDDEN: 'forbidden',
  /** Hosted mode: the upgrade was refused with HTTP 429, the tenant has all the connections it may. */
  CONNECTION_QUOTA_EXCEEDED: 'connection_quota_exceeded',
  /** The `token` option (a function) threw or rejected, so there was nothing to connect with. */
  TOKEN_FAILED: 'token_failed',
  /** An open connection closed or stopped answering while a request waited for its reply. */
  CONNECTION_LOST: 'connection_lost',
  /** No answer in time: connecting, a request, or the keepalive (no pong). */
  TIMEOUT: 'timeout',
  /** The application closed the client, or left the room a request was about. */
  CLOSED: 'closed',
  /** The server announced a shutdown (`shutdown` event); the client reconnects. */
  SHUTDOWN: 'shutdown',
  /** An API call with arguments the protocol cannot carry. */
  INVALID_ARGUMENT: 'invalid_argument',
  /** A server error text this client does not know (a newer server). */
  UNKNOWN: 'unknown',
});

// Which server errors answer which request. The server replies to a client's messages in order and
// the protocol carries no request ids; the client keeps at most one join and one status update in
// flight, and never both at once, so an error with one of these texts belongs to that request.
const JOIN_ERRORS = new Set(['no_room_id', 'room_id_too_long', 'already_joined', 'blank_name',
  'name_too_long', 'unknown_user_agent', 'invalid_status', 'status_too_large', 'room_full', 'unavailable',
  'rate_limited', 'nested_too_deeply', 'room_not_allowed', 'join_not_allowed', 'room_quota_exceeded',
  'tenant_rate_limited']);
const STATUS_ERRORS = new Set(['not_in_room', 'blank_name', 'name_too_long', 'unknown_user_agent',
  'invalid_status', 'status_too_large', 'unavailable', 'rate_limited', 'nested_too_deeply',
  'tenant_rate_limited']);

// Refused upgrades whose HTTP status the WebSocket implementation reveals (node's `ws` does, in the
// error event's message; browsers never do): status -> [code, what it means].
const HTTP_REFUSALS = {
  401: ['unauthorized', 'no valid token'],
  403: ['forbidden', 'origin not allowed'],
  429: ['connection_quota_exceeded', 'connection quota exceeded'],
  503: ['connection_failed', 'the server is full or shutting down'],
};

/** Every error this client reports: a `code` from SERVER_ERROR_CODES or CLIENT_ERROR_CODES. */
export class SwitchboardError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{serverText?: string, httpStatus?: number, cause?: unknown}} [details]
   */
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'SwitchboardError';
    /** Stable, machine-readable code. */
    this.code = code;
    /** For errors the server sent: its exact text (also the message). */
    this.serverText = details.serverText;
    /** For a refused connection: the HTTP status, when the WebSocket implementation reveals it. */
    this.httpStatus = details.httpStatus;
  }

  /** The error for a server `error` event. */
  static fromServer(text) {
    const code = SERVER_ERROR_CODES[text] || CLIENT_ERROR_CODES.UNKNOWN;
    return new SwitchboardError(code, String(text), { serverText: String(text) });
  }
}

const DEFAULTS = Object.freeze({
  WebSocket: globalThis.WebSocket,
  // palava-client's interval; the server closes connections that send nothing for 60 s.
  pingInterval: 5_000,
  // Silence after which the connection counts as dead and is replaced.
  pongTimeout: 15_000,
  connectTimeout: 10_000,
  requestTimeout: 10_000,
  reconnect: true,
  reconnectDelay: 500,
  reconnectMaxDelay: 15_000,
});

/** The WebSocket URL of the Switchboard edge that served the current page. */
export function defaultUrl(location = globalThis.location) {
  if (!location) throw new SwitchboardError('invalid_argument', 'no page location: pass the server URL');
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/`;
}

/**
 * ICE servers from a `joined_room` message (the `ice_servers` extension, see docs/protocol.md), in the
 * shape of RTCConfiguration.iceServers; entries without URLs are dropped. Null when there are none.
 */
export function iceServersOf(joinedRoom) {
  const list = joinedRoom && joinedRoom.ice_servers;
  if (!Array.isArray(list)) return null;
  const servers = [];
  for (const entry of list) {
    if (!entry || typeof entry !== 'object') continue;
    const urls = (Array.isArray(entry.urls) ? entry.urls : [entry.urls]).filter((u) => typeof u === 'string');
    if (!urls.length) continue;
    const server = { urls };
    if (typeof entry.username === 'string') server.username = entry.username;
    if (typeof entry.credential === 'string') server.credential = entry.credential;
    servers.push(server);
  }
  return servers.length ? servers : null;
}

/**
 * The ICE servers for a peer connection: those of a `joined_room` (`iceServersOf`, e.g. TURN credentials
 * minted for this session) first, then the `configured` ones (e.g. a page's STUN servers) for URLs the
 * former do not cover. A TURN server listed in both is used with the fresh credentials only.
 */
export function mergeIceServers(fromJoin, configured = []) {
  const servers = [...(fromJoin || [])];
  const covered = new Set(servers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls])));
  for (const entry of configured || []) {
    const urls = (Array.isArray(entry.urls) ? entry.urls : [entry.urls]).filter((u) => !covered.has(u));
    if (urls.length) servers.push({ ...entry, urls });
  }
  return servers;
}

/**
 * A connection to a Switchboard (or palava-machine) server, and the room it is in.
 *
 * States: `idle` (not connected yet), `connecting`, `open`, `reconnecting` (waiting or trying after a
 * dropped connection), `closed` (by close(); final).
 */
export class SwitchboardClient {
  /**
   * @param {string} url WebSocket URL, e.g. `ws://127.0.0.1:4233/` (see defaultUrl()).
   * @param {object} [options] see docs/client.md: token, WebSocket, pingInterval, pongTimeout,
   *   connectTimeout, requestTimeout, reconnect, reconnectDelay, reconnectMaxDelay.
   */
  constructor(url, options = {}) {
    /** The server's URL, without the token (it goes into messages and logs). */
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    if (typeof this.options.WebSocket !== 'function') {
      throw new SwitchboardError('invalid_argument', 'no WebSocket implementation: pass options.WebSocket');
    }
    /** @type {'idle'|'connecting'|'open'|'reconnecting'|'closed'} */
    this.state = 'idle';
    /** The room as the server last confirmed it: {roomId, ownId} or null. */
    this.room = null;
    /** Remote members of the room: peerId -> {peerId, status}. */
    this.peers = new Map();
    this._listeners = new Map();
    this._socket = null;
    this._connecting = null; // {promise, resolve, reject, timer} while a socket is being opened
    this._wanted = null; // {roomId, status}: the room to be in, also across reconnects
    this._join = null; // the join in flight: {resolve, reject, timer, rejoin}
    this._statusUpdate = null; // the update_status in flight
    this._pings = []; // outstanding pings in send order: null (keepalive) or a request
    this._infos = [];
    this._keepalive = null;
    this._lastHeard = 0;
    this._attempt = 0;
    this._retryTimer = null;
  }

  // ---- events ----

  /** Calls `listener(detail)` for every `type` event; returns a function that unsubscribes. */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  /** Removes a listener added with on(). */
  off(type, listener) {
    const set = this._listeners.get(type);
    if (set) set.delete(listener);
  }

  /** The next `type` event's detail, optionally the next one for which `filter(detail)` holds. */
  once(type, filter = () => true) {
    return new Promise((resolve) => {
      const off = this.on(type, (detail) => {
        if (!filter(detail)) return;
        off();
        resolve(detail);
      });
    });
  }

  _emit(type, detail) {
    for (const listener of [...(this._listeners.get(type) || [])]) {
      try {
        listener(detail);
      } catch (e) {
        // One faulty listener must not stop the others or corrupt the client's state; report it the
        // way an uncaught error in an event handler is reported.
        setTimeout(() => { throw e; });
      }
    }
  }

  _setState(state, error) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous, error });
  }

  // ---- connection ----

  /** Opens the connection (once; later calls wait for the same one). Rejects with connection_failed or timeout. */
  connect() {
    if (this.state === 'closed') return Promise.reject(closedError());
    if (this.state === 'open') return Promise.resolve();
    if (this._connecting) return this._connecting.promise;
    // Reconnecting and waiting out a backoff delay: the application wants the connection now.
    clearTimeout(this._retryTimer);
    return this._open();
  }

  _open() {
    const pending = {};
    pending.promise = new Promise((resolve, reject) => { pending.resolve = resolve; pending.reject = reject; });
    // A failed first connect is the caller's to handle; only reconnects are retried.
    pending.promise.catch(() => {});
    this._connecting = pending;
    if (this.state !== 'reconnecting') this._setState('connecting');
    const { token } = this.options;
    if (typeof token !== 'function') {
      this._openSocket(pending, token);
      return pending.promise;
    }
    // A token source is asked again for every connection: a reconnect may come after the last
    // token expired. The connect timeout covers the wait for it.
    pending.timer = setTimeout(() => this._openFailed(pending,
      new SwitchboardError('timeout', `no token within ${this.options.connectTimeout} ms`)), this.options.connectTimeout);
    Promise.resolve().then(() => token()).then((value) => {
      if (this._connecting !== pending) return;
      clearTimeout(pending.timer);
      this._openSocket(pending, value);
    }, (e) => {
      this._openFailed(pending, new SwitchboardError('token_failed', `no token: ${e && e.message ? e.message : e}`, { cause: e }));
    });
    return pending.promise;
  }

  // The token, if any, goes into the URL as `access_token`: browsers cannot set headers on a
  // WebSocket, and the edge reads it there (docs/hosting.md).
  _socketUrl(token) {
    if (token === undefined || token === null || token === '') return this.url;
    const url = new URL(this.url);
    url.searchParams.set('access_token', String(token));
    return url.href;
  }

  // The connection attempt `pending` failed before it had a socket.
  _openFailed(pending, error) {
    if (this._connecting !== pending) return;
    this._connecting = null;
    clearTimeout(pending.timer);
    pending.reject(error);
    if (this.state === 'reconnecting') {
      this._scheduleReconnect(error);
    } else if (this.state === 'connecting') {
      this._setState('idle', error);
    }
  }

  _openSocket(pending, token) {
    let socket;
    try {
      socket = new this.options.WebSocket(this._socketUrl(token));
    } catch (e) {
      this._openFailed(pending, new SwitchboardError('connection_failed', `cannot connect to ${this.url}: ${e.message}`, { cause: e }));
      return;
    }
    this._socket = socket;
    pending.timer = setTimeout(() => {
      this._dropSocket(socket);
      this._connectFailed(socket, new SwitchboardError('timeout', `no connection to ${this.url} within ${this.options.connectTimeout} ms`));
    }, this.options.connectTimeout);
    socket.onopen = () => this._opened(socket);
    socket.onmessage = (event) => this._received(socket, event.data);
    // Browsers give no reason for a failed WebSocket; the close that always follows carries the code.
    // node's `ws` names the HTTP status of a refused upgrade in the error: kept for that close.
    socket.onerror = (event) => {
      const status = /Unexpected server response: (\d{3})/.exec(String(event && event.message))?.[1];
      if (status) pending.httpStatus = Number(status);
    };
    socket.onclose = (event) => this._closed(socket, event, pending.httpStatus);
  }

  _opened(socket) {
    if (socket !== this._socket) return;
    const pending = this._connecting;
    this._connecting = null;
    if (pending) clearTimeout(pending.timer);
    this._lastHeard = Date.now();
    this._startKeepalive(socket);
    const reconnected = this.state === 'reconnecting';
    this._setState('open');
    if (pending) pending.resolve();
    if (this._wanted) {
      this._sendJoin(this._wanted, reconnected);
    } else {
      this._attempt = 0;
    }
  }

  _connectFailed(socket, error) {
    if (socket !== this._socket) return;
    this._socket = null;
    const pending = this._connecting;
    this._connecting = null;
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    if (this.state === 'reconnecting') {
      this._scheduleReconnect(error);
    } else if (this.state === 'connecting') {
      this._setState('idle', error);
    }
  }

  _closed(socket, event, httpStatus) {
    if (socket !== this._socket) return;
    if (this._connecting) {
      const refusal = HTTP_REFUSALS[httpStatus];
      if (refusal) {
        this._connectFailed(socket, new SwitchboardError(refusal[0],
          `cannot connect to ${this.url} (HTTP ${httpStatus}: ${refusal[1]})`, { httpStatus }));
        return;
      }
      const why = event.code === 1006 ? 'refused or unreachable' : `closed with ${event.code}`;
      this._connectFailed(socket, new SwitchboardError('connection_failed', `cannot connect to ${this.url} (${why})`,
        { httpStatus }));
      return;
    }
    const reason = event.reason ? `: ${event.reason}` : '';
    this._lost(new SwitchboardError('connection_lost', `connection closed (${event.code}${reason})`));
  }

  // The open connection is gone (closed, silent, or given up after a `shutdown`): forget the room's
  // members, fail what waits for an answer, and reconnect if allowed.
  _lost(error) {
    if (this._socket) this._dropSocket(this._socket);
    this._socket = null;
    this._stopKeepalive();
    const closed = error.code === 'closed';
    this._failRequests(closed ? error : new SwitchboardError('connection_lost', error.message, { cause: error }));
    this._forgetRoom(closed ? 'closed' : 'disconnected');
    if (this.state === 'closed') return;
    if (!this.options.reconnect) {
      this._wanted = null;
      this._setState('idle', error);
      return;
    }
    this._setState('reconnecting', error);
    this._scheduleReconnect(error);
  }

  // Exponential backoff with "equal jitter": half the delay is fixed, half random, so that every client
  // of a restarted server does not come back in the same millisecond.
  _scheduleReconnect(error) {
    clearTimeout(this._retryTimer);
    this._attempt += 1;
    const { reconnectDelay, reconnectMaxDelay } = this.options;
    const ceiling = Math.min(reconnectMaxDelay, reconnectDelay * 2 ** (this._attempt - 1));
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this._emit('reconnecting', { attempt: this._attempt, delay, error });
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (this.state === 'reconnecting' && !this._connecting) this._open();
    }, delay);
  }

  _dropSocket(socket) {
    // No-ops rather than null: closing a socket that is still connecting reports an error event, and
    // node's `ws` throws an error event that has no listener.
    const ignore = () => {};
    socket.onopen = socket.onmessage = socket.onerror = socket.onclose = ignore;
    try {
      socket.close(1000);
    } catch {
      // Closing a socket that never opened may throw in some implementations; it is gone either way.
    }
  }

  /** Leaves the room and closes the connection for good; pending requests reject with `closed`. */
  close() {
    if (this.state === 'closed') return;
    const error = closedError();
    this._wanted = null;
    this._setState('closed');
    clearTimeout(this._retryTimer);
    if (this._connecting) {
      clearTimeout(this._connecting.timer);
      this._connecting.reject(error);
      this._connecting = null;
    }
    this._lost(error);
  }

  // ---- keepalive ----

  _startKeepalive(socket) {
    this._stopKeepalive();
    this._keepalive = setInterval(() => {
      const silent = Date.now() - this._lastHeard;
      if (silent >= this.options.pongTimeout) {
        this._lost(new SwitchboardError('timeout', `no answer from the server for ${silent} ms`));
        return;
      }
      if (this._send({ event: 'ping' }, socket)) this._pings.push(null);
    }, this.options.pingInterval);
  }

  _stopKeepalive() {
    clearInterval(this._keepalive);
    this._keepalive = null;
  }

  /** Round trip to the server in milliseconds (a protocol `ping`, answered by `pong`). */
  ping() {
    return this._request(this._pings, { event: 'ping' }, () => performance.now(),
      (started) => Math.round(performance.now() - started));
  }

  /** The server's `info` reply, e.g. {protocol_version: '1.0.0'}. */
  info() {
    return this._request(this._infos, { event: 'info' }, () => null, (_, reply) => {
      const { event, ...info } = reply;
      return info;
    });
  }

  _request(queue, message, start, finish) {
    if (this.state === 'closed') return Promise.reject(closedError());
    if (this.state !== 'open') return Promise.reject(notConnected());
    return new Promise((resolve, reject) => {
      const request = { started: start(), reject };
      request.timer = setTimeout(() => {
        request.done = true;
        reject(new SwitchboardError('timeout', `no ${message.event} reply within ${this.options.requestTimeout} ms`));
      }, this.options.requestTimeout);
      request.resolve = (reply) => {
        clearTimeout(request.timer);
        if (!request.done) resolve(finish(request.started, reply));
      };
      if (!this._send(message)) {
        clearTimeout(request.timer);
        reject(notConnected());
        return;
      }
      queue.push(request);
    });
  }

  // ---- rooms ----

  /**
   * Joins `roomId` with `status` (e.g. {name}); connects first if needed. Resolves with
   * {roomId, ownId, peers: [{peerId, status}], iceServers}. After a reconnect the client joins again by
   * itself and emits `joined` with `rejoin: true`.
   */
  async join(roomId, status = {}) {
    if (this._wanted || this._join) {
      throw new SwitchboardError('already_joined', 'already joined another room');
    }
    this._wanted = { roomId, status: { ...status } };
    try {
      await this.connect();
    } catch (e) {
      this._wanted = null;
      throw e;
    }
    if (!this._wanted || this._wanted.roomId !== roomId) throw closedError();
    if (this._join) return this._join.promise;
    return this._sendJoin(this._wanted, false);
  }

  _sendJoin(wanted, rejoin) {
    const join = { rejoin };
    join.promise = new Promise((resolve, reject) => { join.resolve = resolve; join.reject = reject; });
    // A rejoin has no caller: its outcome is reported through events.
    if (rejoin) join.promise.catch(() => {});
    join.timer = setTimeout(() => {
      this._join = null;
      const error = new SwitchboardError('timeout', `no answer to join_room within ${this.options.requestTimeout} ms`);
      // The caller of join() gives up with this error; a rejoin keeps trying on a new connection.
      if (!rejoin) this._wanted = null;
      join.reject(error);
      // Whether the server still holds a join for us is unknown: start over on a new connection.
      this._lost(error);
    }, this.options.requestTimeout);
    this._join = join;
    this._send({ event: 'join_room', room_id: wanted.roomId, status: wanted.status });
    return join.promise;
  }

  /** Leaves the room (others get `peer_left`); resolves once the server has processed it. */
  async leave() {
    const wasIn = this._wanted || this._join;
    this._wanted = null;
    if (this._join) {
      clearTimeout(this._join.timer);
      this._join.reject(new SwitchboardError('closed', 'left the room before it was joined'));
      this._join = null;
    }
    if (!wasIn) return;
    const room = this.room;
    this._forgetRoom('left');
    if (this.state !== 'open') return;
    this._send({ event: 'leave_room' });
    await this.ping().catch(() => {});
    if (room) this._emit('left', { roomId: room.roomId });
  }

  /** Updates the own status (merged into the stored one); resolves when the server has relayed it. */
  updateStatus(status) {
    if (!this.room) return Promise.reject(new SwitchboardError('not_in_room', 'currently not in any room'));
    if (this._statusUpdate) {
      return this._statusUpdate.promise.catch(() => {}).then(() => this.updateStatus(status));
    }
    if (this.state !== 'open') return Promise.reject(notConnected());
    const update = {};
    update.promise = new Promise((resolve, reject) => { update.resolve = resolve; update.reject = reject; });
    update.timer = setTimeout(() => {
      this._statusUpdate = null;
      update.reject(new SwitchboardError('timeout', `no answer to update_status within ${this.options.requestTimeout} ms`));
    }, this.options.requestTimeout);
    this._statusUpdate = update;
    this._send({ event: 'update_status', status });
    // Rejoins after a reconnect carry the latest status.
    if (this._wanted) Object.assign(this._wanted.status, status);
    return update.promise;
  }

  // ---- peer messages ----

  /** Sends `data` (an object whose `event` is offer, answer, ice_candidate or message) to one peer. */
  sendToPeer(peerId, data) {
    if (!data || typeof data !== 'object' || Array.isArray(data)) {
      throw new SwitchboardError('invalid_argument', 'sendToPeer: data must be an object');
    }
    if (!this.room) throw new SwitchboardError('not_in_room', 'currently not in any room');
    if (!this._send({ event: 'send_to_peer', peer_id: peerId, data })) throw notConnected();
  }

  /** Sends an SDP offer (an RTCSessionDescription or {type, sdp}). */
  sendOffer(peerId, description) {
    this.sendToPeer(peerId, { event: 'offer', sdp: plainDescription(description) });
  }

  /** Sends an SDP answer. */
  sendAnswer(peerId, description) {
    this.sendToPeer(peerId, { event: 'answer', sdp: plainDescription(description) });
  }

  /** Sends an ICE candidate (an RTCIceCandidate or its JSON); null (end of candidates) sends nothing. */
  sendIceCandidate(peerId, candidate) {
    if (!candidate) return;
    const c = typeof candidate.toJSON === 'function' ? candidate.toJSON() : candidate;
    this.sendToPeer(peerId, {
      event: 'ice_candidate', candidate: c.candidate, sdpmid: c.sdpMid, sdpmlineindex: c.sdpMLineIndex,
    });
  }

  /** Sends application data (any JSON value) to one peer; it arrives as a `message` event. */
  sendMessage(peerId, data) {
    this.sendToPeer(peerId, { event: 'message', data });
  }

  // False when the socket is not open (it may be closing before its close event has arrived).
  _send(message, socket = this._socket) {
    if (!socket || socket.readyState !== 1 /* OPEN */) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  // ---- incoming ----

  _received(socket, data) {
    if (socket !== this._socket) return;
    this._lastHeard = Date.now();
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return; // the server only sends JSON; anything else is not ours to interpret
    }
    if (!message || typeof message !== 'object') return;
    if (message.sender_id !== undefined) {
      this._fromPeer(message);
      return;
    }
    switch (message.event) {
      case 'joined_room': this._joined(message); break;
      case 'new_peer': {
        const peer = { peerId: message.peer_id, status: message.status || {} };
        this.peers.set(peer.peerId, peer);
        this._emit('peer_joined', peer);
        break;
      }
      case 'error': this._serverError(SwitchboardError.fromServer(message.description ?? message.message)); break;
      case 'shutdown': this._shutdown(message.seconds); break;
      case 'pong': { const request = this._pings.shift(); if (request) request.resolve(); break; }
      case 'info': { const request = this._infos.shift(); if (request) request.resolve(message); break; }
      default: break;
    }
  }

  _joined(message) {
    const join = this._join;
    if (!join) return;
    clearTimeout(join.timer);
    this._join = null;
    this._attempt = 0;
    this.room = { roomId: this._wanted.roomId, ownId: message.own_id };
    this.peers.clear();
    const peers = (message.peers || []).map((p) => ({ peerId: p.peer_id, status: p.status || {} }));
    for (const peer of peers) this.peers.set(peer.peerId, peer);
    const joined = {
      roomId: this.room.roomId, ownId: message.own_id, peers, iceServers: iceServersOf(message), rejoin: join.rejoin,
    };
    join.resolve(joined);
    this._emit('joined', joined);
  }

  _fromPeer(message) {
    const peerId = message.sender_id;
    switch (message.event) {
      case 'peer_left':
        if (this.peers.delete(peerId)) this._emit('peer_left', { peerId, reason: 'left' });
        break;
      case 'peer_updated_status': {
        const own = this.room && peerId === this.room.ownId;
        const peer = this.peers.get(peerId);
        if (peer) peer.status = message.status || {};
        this._emit('peer_status', { peerId, status: message.status || {}, own });
        if (own && this._statusUpdate) {
          clearTimeout(this._statusUpdate.timer);
          this._statusUpdate.resolve(message.status);
          this._statusUpdate = null;
        }
        break;
      }
      case 'offer':
      case 'answer':
        this._emit(message.event, { peerId, description: message.sdp });
        break;
      case 'ice_candidate':
        this._emit('ice_candidate', {
          peerId,
          candidate: { candidate: message.candidate, sdpMid: message.sdpmid, sdpMLineIndex: message.sdpmlineindex },
        });
        break;
      case 'message':
        this._emit('message', { peerId, data: message.data });
        break;
      default: break;
    }
  }

  _serverError(error) {
    if (this._join && JOIN_ERRORS.has(error.code)) {
      const join = this._join;
      clearTimeout(join.timer);
      this._join = null;
      this._wanted = null;
      join.reject(error);
      // A caller awaiting join() hears it there; a rejoin has no caller.
      if (join.rejoin) this._emit('error', error);
      return;
    }
    if (this._statusUpdate && STATUS_ERRORS.has(error.code)) {
      clearTimeout(this._statusUpdate.timer);
      this._statusUpdate.reject(error);
      this._statusUpdate = null;
      return;
    }
    this._emit('error', error);
  }

  // The server stops in `seconds` and already refuses new connections; in a cluster a load balancer
  // sends the reconnect to another edge. Leaving now, rather than at the forced close, lets the server
  // stop early and moves this client before the crowd does.
  _shutdown(seconds) {
    this._emit('shutdown', { seconds });
    this._lost(new SwitchboardError('shutdown', `the server is shutting down (in ${seconds} s)`));
  }

  _forgetRoom(reason) {
    const peers = [...this.peers.keys()];
    this.peers.clear();
    this.room = null;
    for (const peerId of peers) this._emit('peer_left', { peerId, reason });
  }

  _failRequests(error) {
    for (const queue of [this._pings, this._infos]) {
      for (const request of queue.splice(0)) {
        if (request) {
          clearTimeout(request.timer);
          request.reject(error);
        }
      }
    }
    if (this._join) {
      clearTimeout(this._join.timer);
      // A rejoin's room stays wanted: the reconnect joins it again and reports that through events.
      // The caller of join() hears of the failure and decides.
      if (!this._join.rejoin) {
        this._wanted = null;
        this._join.reject(error);
      }
      this._join = null;
    }
    if (this._statusUpdate) {
      clearTimeout(this._statusUpdate.timer);
      this._statusUpdate.reject(error);
      this._statusUpdate = null;
    }
  }
}

function plainDescription(description) {
  if (!description || typeof description.sdp !== 'string' || typeof description.type !== 'string') {
    throw new SwitchboardError('invalid_argument', 'expected a session description ({type, sdp})');
  }
  return { type: description.type, sdp: description.sdp };
}

function closedError() {
  return new SwitchboardError('closed', 'the client was closed');
}

function notConnected() {
  return new SwitchboardError('connection_lost', 'not connected');
}
