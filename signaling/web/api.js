/* GiftCall web client: the REST API (PROTOCOL.md), with the bearer token. */

import { expire, session } from './session.js';

/** A refused or failed request: `status` 0 when the server cannot be reached. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One JSON request; resolves to the body of an {ok: true} answer, else throws ApiError. */
async function send(method, path, body, headers) {
  const all = { ...headers };
  if (body !== undefined) all['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers: all, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, 'unavailable', 'the server cannot be reached');
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (response.ok && data && data.ok) return data;
  const error = (data && data.error) || { code: 'unavailable', message: response.statusText || 'request failed' };
  throw new ApiError(response.status, error.code, error.message);
}

/**
 * REST with the signed-in user's token. A 401 ends the session (expire()).
 * @param {string} method
 * @param {string} path
 * @param {object} [body] sent as JSON
 * @returns {Promise<object>} the answer's body
 */
export async function api(method, path, body) {
  try {
    return await send(method, path, body, { Authorization: `Bearer ${session.token}` });
  } catch (err) {
    if (err.status === 401) expire();
    throw err;
  }
}

/** POST /api/dev/login (dev mode only: a 404 otherwise); resolves to {token, user_id}. */
export function devLogin(userId) {
  return send('POST', '/api/dev/login', { user_id: userId });
}
