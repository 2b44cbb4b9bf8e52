/* GiftCall web client: the entry (index.html loads it as a module); no build step.
 *
 * It speaks only the wire contract (PROTOCOL.md): REST with a bearer token,
 * Socket.IO namespaces /call and /chat with auth {token}; the /call connection
 * of a call page carries the call's id in its handshake query (call_id), so a
 * load balancer sends both users of a call to one server process. State worth
 * testing is mirrored into data-* attributes (data-phase, data-pc-state…).
 * docs/web-client.md maps the modules.
 */

import { renderWho, resume, signOut, wireAuth } from './auth.js';
import { wireCallList } from './call-list.js';
import { currentCall, wireCallPage } from './call.js';
import { wireChat } from './chat.js';
import { renderConnection } from './connection.js';
import { wireGifts } from './gifts.js';
import { mountPush } from './push.js';
import { route } from './router.js';
import { onExpired, restoreSession, session } from './session.js';

// A handle for the curious (and for tests): the live call session.
window.giftcall = {
  get call() { return currentCall(); },
  get user() { return session.userId; },
  get token() { return session.token; },
  restartIce: () => currentCall() && currentCall().restartIce('requested'),
};

onExpired(() => signOut('Your session has expired: sign in again.'));
wireAuth();
wireCallList();
wireGifts();
wireCallPage();
wireChat();
window.addEventListener('hashchange', route);

if (restoreSession()) resume();
renderWho();
renderConnection();
route();
mountPush();
