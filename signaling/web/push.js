/* GiftCall web client: Web Push (docs/push.md).
 *
 * The page registers the service worker (/web/sw.js, scope /) at once, but
 * asks for the notification permission only when the user presses the
 * "Notify me" button: browsers ignore (and penalise) a prompt nobody asked for.
 * The subscription is made through the service worker's PushManager with the
 * server's VAPID public key, and posted to POST /api/push/subscriptions
 * (api.js: with the signed-in user's token). main.js calls mountPush().
 */

import { api } from './api.js';

const supported = 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;

function keyBytes(base64url) {
  const padded = (base64url + '==='.slice((base64url.length + 3) % 4)).replace(/-/g, '+').replace(/_/g, '/');
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

const registration = supported
  ? navigator.serviceWorker.register('/web/sw.js', { scope: '/' })
  : Promise.reject(new Error('this browser has no Web Push'));
registration.catch(() => {});  // reported when the user asks for notifications

/** Subscribe this browser and tell the server (after a click only). */
async function enable(button) {
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') throw new Error('notifications are blocked for this site');
  const reg = await registration;
  const { public_key: key } = await api('GET', '/api/push/vapid-public-key');
  let subscription = await reg.pushManager.getSubscription();
  if (subscription) {
    const current = subscription.options && subscription.options.applicationServerKey;
    const wanted = keyBytes(key);
    const same = current && new Uint8Array(current).every((b, i) => b === wanted[i]);
    if (!same) {
      await subscription.unsubscribe();  // made for another server key
      subscription = null;
    }
  }
  if (!subscription) {
    subscription = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
  }
  await api('POST', '/api/push/subscriptions', subscription.toJSON());
  button.dataset.state = 'on';
  button.textContent = 'Notifications on';
}

/** Put the "Notify me" button in the top bar (it asks for the permission only when pressed). */
export function mountPush() {
  const host = document.getElementById('whoami');
  if (!host || !supported) return;
  const button = document.createElement('button');
  button.id = 'push-enable';
  button.type = 'button';
  button.className = 'ghost small';
  button.dataset.state = Notification.permission === 'denied' ? 'blocked' : 'off';
  button.textContent = 'Notify me';
  button.title = 'a notification 5 minutes before your calls, even with this tab closed';
  button.addEventListener('click', () => {
    button.disabled = true;
    enable(button)
      .catch((err) => {
        button.dataset.state = 'failed';
        button.title = String(err && err.message ? err.message : err);
      })
      .finally(() => { button.disabled = false; });
  });
  host.insertBefore(button, document.getElementById('logout'));
}

