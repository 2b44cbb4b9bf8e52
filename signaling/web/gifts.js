/* GiftCall web client: the home page's gifts: received and sent, opening
 * one, sending one (a special gift books a call). */

import { api } from './api.js';
import { refreshCalls } from './call-list.js';
import { refreshRooms } from './chat.js';
import { $, $$, avatar, el, toast } from './dom.js';
import { fmtWhen } from './format.js';

/** The tab that shows: 'received' or 'sent'. */
let box = 'received';

export async function refreshGifts() {
  const list = $('#gifts-list');
  const empty = $('#gifts-empty');
  try {
    const data = await api('GET', `/api/gifts?box=${encodeURIComponent(box)}`);
    $('#gift-send').hidden = false;
    const gifts = data.gifts || [];
    list.replaceChildren(...gifts.map(giftItem));
    empty.textContent = 'No gifts here yet.';
    empty.hidden = gifts.length > 0;
  } catch (err) {
    list.replaceChildren();
    empty.hidden = false;
    if (err.status === 404) {
      empty.textContent = 'Gifts are not available on this server yet.';
      $('#gift-send').hidden = true;
    } else if (err.status !== 401) {
      empty.textContent = `Could not load gifts: ${err.message}`;
    }
  }
}

function giftItem(gift) {
  const received = box === 'received';
  const other = received ? gift.sender_id : gift.receiver_id;
  const opened = Boolean(gift.opened_at) || gift.opened === true || gift.state === 'opened';
  const actions = el('div', { class: 'actions' });
  if (received && !opened) {
    actions.append(el('button', { type: 'button', class: 'small', onclick: () => openGift(gift) }, 'Open'));
  }
  if (gift.call_id) {
    actions.append(el('a', { class: 'button ghost small', href: `#/call/${gift.call_id}` }, 'Call'));
  }
  const created = gift.created_at ? fmtWhen(gift.created_at) : '';
  return el('li', { class: 'item', dataset: { giftId: String(gift.id), kind: gift.kind || '' } },
    avatar(other || '?'),
    el('div', { class: 'grow' },
      el('div', {}, received ? 'from ' : 'to ', el('b', {}, other || '?'),
        el('span', { class: `pill kind-${gift.kind}` }, gift.kind || 'gift')),
      el('div', { class: 'muted small' }, gift.message ? `“${gift.message}”` : '(no message)',
        created ? ` · ${created}` : '', opened ? ' · opened' : '')),
    actions);
}

async function openGift(gift) {
  try {
    await api('POST', `/api/gifts/${gift.id}/open`);
  } catch (err) {
    toast(`Could not open the gift: ${err.message}`, 'error');
  }
  refreshGifts();
  refreshRooms();
}

async function sendGift(event) {
  event.preventDefault();
  const error = $('#gift-error');
  error.textContent = '';
  const kind = $('#gift-kind').value;
  const body = {
    receiver_id: $('#gift-receiver').value.trim(),
    kind,
    message: $('#gift-message').value.trim(),
  };
  if (kind === 'special') {
    body.scheduled_at = new Date(Date.now() + Number($('#gift-minutes').value) * 60000).toISOString();
  }
  try {
    await api('POST', '/api/gifts', body);
    toast(`Gift sent to ${body.receiver_id}.`);
    $('#gift-form').reset();
    $('#gift-when').hidden = true;
    refreshGifts();
    refreshCalls();
    refreshRooms();
  } catch (err) {
    error.textContent = err.message;
  }
}

export function wireGifts() {
  $('#gift-form').addEventListener('submit', sendGift);
  $('#gift-kind').addEventListener('change', () => { $('#gift-when').hidden = $('#gift-kind').value !== 'special'; });
  for (const tab of $$('.tab[data-box]')) {
    tab.addEventListener('click', () => {
      box = tab.dataset.box;
      for (const other of $$('.tab[data-box]')) other.setAttribute('aria-selected', String(other === tab));
      refreshGifts();
    });
  }
}
