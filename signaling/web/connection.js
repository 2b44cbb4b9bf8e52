/* GiftCall web client: the Socket.IO connections (socket.io.min.js, the global `io`).
 *
 * Two kinds, both websocket only, both with auth {token}:
 * - the sign-in connection: one per sign-in, with the /chat socket and a
 *   /call socket that only listens for call_soon and ended;
 * - a call page's own connection (call.js), whose handshake query carries
 *   call_id so that a load balancer sends both users of a call to the same
 *   server process. The query is per Manager, hence a Manager of its own.
 *
 * The dot in the top bar (#conn) shows the call page's connection while
 * there is one, else the sign-in connection's /call socket.
 */

import { $ } from './dom.js';
import { expire, session } from './session.js';

/** The sign-in connection's sockets; null when signed out. */
export const signIn = { call: null, chat: null };

let callPageSocket = null;

/**
 * A fresh Manager, never io()'s cache: after a sign-out the cache would hand
 * back the old socket with the old user's token.
 * @param {Object<string, string>} [query] the handshake query
 */
function newManager(query) {
  const options = { transports: ['websocket'] };
  if (query) options.query = query;
  return new io.Manager(location.origin, options);
}

/** A namespace socket of `manager`, authenticated as the signed-in user. */
function authSocket(manager, namespace) {
  return manager.socket(namespace, { auth: { token: session.token } });
}

export function isUnauthorized(err) {
  return Boolean(err && (err.message === 'unauthorized' || (err.data && err.data.code === 'unauthorized')));
}

/**
 * Follow a /call socket in the top bar's dot, and end the session when the
 * server refuses its token.
 */
function watch(socket) {
  socket.on('connect', renderConnection);
  socket.on('disconnect', renderConnection);
  socket.on('connect_error', (err) => {
    renderConnection();
    if (isUnauthorized(err)) expire();
  });
}

/** Open the sign-in connection: `signIn.call` and `signIn.chat`, for their owners to listen on. */
export function openSignInConnection() {
  const manager = newManager();
  signIn.call = authSocket(manager, '/call');
  signIn.chat = authSocket(manager, '/chat');
  watch(signIn.call);
  return signIn;
}

export function closeSignInConnection() {
  for (const socket of [signIn.call, signIn.chat]) if (socket) socket.disconnect();
  signIn.call = null;
  signIn.chat = null;
}

/**
 * A call page's own /call connection, its handshake query carrying call_id
 * (PROTOCOL.md). socket.io reconnects it with the same query.
 * @param {number} callId
 */
export function openCallSocket(callId) {
  const socket = authSocket(newManager({ call_id: String(callId) }), '/call');
  callPageSocket = socket;
  watch(socket);
  return socket;
}

/** The call page is done with `socket`: the dot follows the sign-in connection again. */
export function releaseCallSocket(socket) {
  if (callPageSocket === socket) callPageSocket = null;
  renderConnection();
}

/** Paint #conn: online while the socket it follows is connected. */
export function renderConnection() {
  const socket = callPageSocket || signIn.call;
  const online = Boolean(socket && socket.connected);
  const node = $('#conn');
  node.dataset.state = online ? 'online' : 'offline';
  node.title = online ? 'connected to the server' : 'not connected to the server';
}

/**
 * Emit with an ack and a deadline; resolves to the ack, or to an error body
 * ({ok: false, error}) when not connected or on timeout.
 * @param {object|null} socket
 * @param {string} event
 * @param {object} payload
 * @param {number} [timeoutMs]
 * @param {(ack: object) => void} [onAck] runs synchronously as the ack arrives
 */
export function request(socket, event, payload, timeoutMs = 10000, onAck = null) {
  return new Promise((resolve) => {
    if (!socket) {
      resolve({ ok: false, error: { code: 'unavailable', message: 'not connected' } });
      return;
    }
    socket.timeout(timeoutMs).emit(event, payload, (err, ack) => {
      if (err) {
        resolve({ ok: false, error: { code: 'unavailable', message: 'the server did not answer in time' } });
        return;
      }
      const answer = ack || { ok: false, error: { code: 'unavailable', message: 'empty answer' } };
      if (onAck) onAck(answer);
      resolve(answer);
    });
  });
}
