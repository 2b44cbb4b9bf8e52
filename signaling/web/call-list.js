/* GiftCall web client: the home page's calls: my calls (join, cancel),
 * scheduling a call, and the notice when a call's window opens (call_soon). */

import { api } from './api.js';
import { $, avatar, el, toast } from './dom.js';
import { fmtRelative, fmtWhen } from './format.js';
import { session } from './session.js';

const JOINABLE = new Set(['scheduled', 'open', 'waiting', 'connecting', 'countdown', 'live']);
const CANCELLABLE = new Set(['scheduled', 'open', 'waiting', 'connecting', 'countdown']);
const STATE_TEXT = {
  scheduled: 'scheduled', open: 'open: join now', waiting: 'partner waiting', connecting: 'connecting',
  countdown: 'starting', live: 'live', ended: 'ended', missed: 'missed', cancelled: 'cancelled',
};
/** How often the list refreshes while the home page shows. */
const POLL_MS = 10000;

let calls = [];
let poller = null;
let soon = null;

/** The home page shows: load the list and keep it fresh. */
export function enterCallList() {
  refreshCalls();
  if (!poller) poller = setInterval(refreshCalls, POLL_MS);
}

/** The home page is gone: stop refreshing. */
export function leaveCallList() {
  clearInterval(poller);
  poller = null;
}

/** Refresh shortly, if the home page shows (a call changed elsewhere). */
export function refreshCallsSoon() {
  clearTimeout(soon);
  soon = setTimeout(() => { if (document.body.dataset.view === 'home') refreshCalls(); }, 300);
}

export async function refreshCalls() {
  try {
    const data = await api('GET', '/api/calls');
    calls = data.calls;
    renderCalls();
  } catch (err) {
    if (err.status !== 401) toast(`Could not load your calls: ${err.message}`, 'error');
  }
}

function renderCalls() {
  $('#calls-list').replaceChildren(...calls.map(callItem));
  $('#calls-empty').hidden = calls.length > 0;
}

function callItem(call) {
  const mine = call.caller_id === session.userId;
  const partner = mine ? call.callee_id : call.caller_id;
  const actions = el('div', { class: 'actions' });
  if (JOINABLE.has(call.state)) {
    actions.append(el('a', { class: 'button small', href: `#/call/${call.id}`, dataset: { action: 'join' } }, 'Join'));
  }
  if (CANCELLABLE.has(call.state)) {
    actions.append(el('button', {
      type: 'button', class: 'ghost small', dataset: { action: 'cancel' },
      onclick: () => cancel(call),
    }, 'Cancel'));
  }
  const detail = call.end_reason ? ` · ${call.end_reason.replace('_', ' ')}` : '';
  return el('li', { class: 'item', dataset: { callId: String(call.id), state: call.state } },
    avatar(partner),
    el('div', { class: 'grow' },
      el('div', {}, 'with ', el('b', {}, partner), el('span', { class: 'muted' }, mine ? ' · you booked' : ' · booked you')),
      el('div', { class: 'muted small' }, `${fmtWhen(call.scheduled_at)} (${fmtRelative(call.scheduled_at)})${detail}`)),
    el('span', { class: `pill state-${call.state}` }, STATE_TEXT[call.state] || call.state),
    actions);
}

async function cancel(call) {
  try {
    await api('DELETE', `/api/calls/${call.id}`);
    toast('The call is cancelled.');
  } catch (err) {
    toast(`Could not cancel: ${err.message}`, 'error');
  }
  refreshCalls();
}

async function schedule(event) {
  event.preventDefault();
  const error = $('#schedule-error');
  error.textContent = '';
  const partner = $('#schedule-partner').value.trim();
  const minutes = Number($('#schedule-minutes').value);
  if (!partner || !(minutes > 0)) {
    error.textContent = 'Pick a partner and a time in the future.';
    return;
  }
  const scheduledAt = new Date(Date.now() + minutes * 60000).toISOString();
  try {
    const data = await api('POST', '/api/calls', { partner_id: partner, scheduled_at: scheduledAt });
    toast(`Call with ${partner} booked for ${fmtWhen(data.call.scheduled_at)}.`);
    $('#schedule-partner').value = '';
    refreshCalls();
  } catch (err) {
    error.textContent = err.message;
  }
}

/** A call's window opened (call_soon on the sign-in connection): a notice with a Join button. */
export function announceCallSoon(payload) {
  toast(`Your call with ${payload.partner_id} starts ${fmtRelative(payload.scheduled_at)}.`, 'info', {
    label: 'Join', run: () => { location.hash = `#/call/${payload.call_id}`; },
  });
  refreshCallsSoon();
}

export function wireCallList() {
  $('#calls-refresh').addEventListener('click', refreshCalls);
  $('#schedule-form').addEventListener('submit', schedule);
}
