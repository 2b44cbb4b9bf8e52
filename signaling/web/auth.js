/* GiftCall web client: signing in and out.
 *
 * Dev login as any user id (POST /api/dev/login, dev mode only) or a pasted
 * token (`giftcall token alice`). Signing in opens the sign-in connection
 * (connection.js) and hands its sockets to their listeners; signing out
 * closes everything and shows the login page.
 */

import { ApiError, devLogin } from './api.js';
import { announceCallSoon, refreshCallsSoon } from './call-list.js';
import { closeCall, currentCall } from './call.js';
import { listenToChat, refreshRooms, resetChat } from './chat.js';
import { closeSignInConnection, openSignInConnection } from './connection.js';
import { $, $$, paintAvatar } from './dom.js';
import { route } from './router.js';
import { forgetSession, saveSession, session, tokenSubject } from './session.js';

/** The top bar: who is signed in, and the nav. */
export function renderWho() {
  const signedIn = Boolean(session.token);
  $('#nav').hidden = !signedIn;
  $('#whoami').hidden = !signedIn;
  $('#me').textContent = session.userId || '';
  paintAvatar($('#me-avatar'), session.userId || '?');
  document.body.dataset.user = session.userId || '';
}

/** Open the sign-in connection and give its sockets to their listeners. */
function connect() {
  const { call, chat } = openSignInConnection();
  call.on('ended', refreshCallsSoon);
  call.on('call_soon', (payload) => {
    const open = currentCall();
    if (open && open.callId === payload.call_id) return; // already there
    announceCallSoon(payload);
  });
  listenToChat(chat);
}

/** Start the signed-in page for the session in session.js (a sign-in, or a reload). */
export function resume() {
  renderWho();
  connect();
  resetChat();
  refreshRooms();
}

function signIn(token, userId) {
  saveSession(token, userId);
  resume();
  route();
}

/** Close the call, the connection and the session; show the login page (with `message`). */
export function signOut(message) {
  closeCall();
  closeSignInConnection();
  forgetSession();
  resetChat();
  renderWho();
  if (location.hash !== '#/') history.replaceState(null, '', '#/');
  route();
  if (message) $('#login-error').textContent = message;
}

async function logInAs(userId) {
  const error = $('#login-error');
  error.textContent = '';
  let data;
  try {
    data = await devLogin(userId);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status === 0) {
      error.textContent = 'The server cannot be reached.';
    } else if (err.status === 404) {
      error.textContent = 'Dev login is off (the server is not in dev mode): use a token instead.';
      $('#token-login').open = true;
    } else {
      error.textContent = err.message || 'Login failed.';
    }
    return;
  }
  signIn(data.token, data.user_id || userId);
}

export function wireAuth() {
  $('#login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const userId = $('#login-user').value.trim();
    if (userId) logInAs(userId);
  });
  for (const button of $$('#login-view [data-user]')) {
    button.addEventListener('click', () => logInAs(button.dataset.user));
  }
  $('#token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('#login-token').value.trim();
    const sub = tokenSubject(token);
    if (!sub) {
      $('#login-error').textContent = 'That is not a JWT with a user id (sub).';
      return;
    }
    signIn(token, sub);
  });
  $('#logout').addEventListener('click', () => signOut());
}
