/* GiftCall web client: who is signed in (kept per tab, in sessionStorage).
 *
 * The token and user id live here; api.js and connection.js read them. When
 * the server refuses the token, they call expire(): whoever registered with
 * onExpired (main.js: sign out) decides what that means for the page.
 */

const SESSION_KEY = 'giftcall.session';

/** The signed-in user: both null when signed out. */
export const session = { token: null, userId: null };

let expiredHandler = () => {};

/** Sign-in state for this tab; remembered across reloads. */
export function saveSession(token, userId) {
  session.token = token;
  session.userId = userId;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token, userId }));
}

/** Take back the session saved before a reload; true when there was one. */
export function restoreSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (saved && saved.token && saved.userId) {
      session.token = saved.token;
      session.userId = saved.userId;
      return true;
    }
  } catch (err) {
    sessionStorage.removeItem(SESSION_KEY);
  }
  return false;
}

export function forgetSession() {
  session.token = null;
  session.userId = null;
  sessionStorage.removeItem(SESSION_KEY);
}

/** @param {() => void} handler what to do when the server refuses the token */
export function onExpired(handler) {
  expiredHandler = handler;
}

/** The server refused the token (a 401, or an unauthorized socket). */
export function expire() {
  expiredHandler();
}

/** The `sub` of a JWT, or null when it is not one (no signature check: the server does that). */
export function tokenSubject(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const sub = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '='))).sub;
    return sub === undefined || sub === null ? null : String(sub);
  } catch (err) {
    return null;
  }
}
