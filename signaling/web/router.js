/* GiftCall web client: the pages and the address (#/, #/call/<id>, #/chat[/<room>]).
 *
 * One view shows at a time; body[data-view] names it. route() follows the
 * address (and the sign-in): it opens and leaves the call page, the chat
 * page and the home page.
 */

import { enterCallList, leaveCallList } from './call-list.js';
import { closeCall, openCall } from './call.js';
import { openChat } from './chat.js';
import { $, $$, clearToasts } from './dom.js';
import { refreshGifts } from './gifts.js';
import { session } from './session.js';

const VIEWS = ['login', 'home', 'call', 'chat'];

/** Show one view (#<name>-view) and mark its tab in the nav. */
function showView(name) {
  for (const view of VIEWS) $(`#${view}-view`).hidden = view !== name;
  document.body.dataset.view = name;
  for (const link of $$('#nav a')) link.classList.toggle('active', link.dataset.nav === name);
  if (name !== 'home') leaveCallList();
}

/** Show the page the address names: the login page when signed out. */
export function route() {
  if (!session.token) {
    closeCall();
    showView('login');
    $('#login-user').focus();
    return;
  }
  const hash = location.hash || '#/';
  const callMatch = hash.match(/^#\/call\/(\d+)$/);
  if (callMatch) {
    clearToasts(); // the call has the screen
    showView('call');
    openCall(Number(callMatch[1]));
    return;
  }
  closeCall();
  const chatMatch = hash.match(/^#\/chat(?:\/(\d+))?$/);
  if (chatMatch) {
    showView('chat');
    openChat(chatMatch[1] ? Number(chatMatch[1]) : null);
    return;
  }
  showView('home');
  enterCallList();
  refreshGifts();
}
