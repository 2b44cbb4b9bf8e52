/* GiftCall web client: the chat page over /chat (PROTOCOL.md, Chat): rooms
 * with unread counts, history, live messages, read receipts.
 *
 * Live events come on the sign-in connection's /chat socket (listen());
 * history and read marks fall back to REST.
 */

import { api } from './api.js';
import { isUnauthorized, request, signIn } from './connection.js';
import { $, avatar, el, paintAvatar } from './dom.js';
import { fmtWhen } from './format.js';
import { logError } from './log.js';
import { expire, session } from './session.js';

const state = {
  available: null, // whether the server has chat: null until known
  rooms: [],
  current: null, // the open room's id
  messages: new Map(), // room id -> Map(seq -> message)
  pending: new Map(), // client_msg_id -> {room_id, content, failed}
  partnerRead: new Map(), // room id -> highest seq the partner has read
  older: new Map(), // room id -> whether older history exists
};

/** A client_msg_id: the server recognises a message sent twice by it. */
function newId() {
  if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

/** Forget everything (a new sign-in, or a sign-out). */
export function resetChat() {
  state.available = null;
  state.rooms = [];
  state.current = null;
  state.messages = new Map();
  state.pending = new Map();
  state.partnerRead = new Map();
  state.older = new Map();
  renderRooms();
  renderConversation();
}

function setAvailable(yes, why) {
  state.available = yes;
  $('#chat-view').dataset.available = String(yes);
  if (!yes) {
    $('#rooms-empty').textContent = why || 'Chat is not available.';
    $('#rooms-empty').hidden = false;
  }
}

/** Reload the room list (unread counts, last messages). */
export async function refreshRooms() {
  if (!session.token) return;
  try {
    const data = await api('GET', '/api/chat/rooms');
    setAvailable(true);
    state.rooms = data.rooms || [];
    if (state.current !== null && viewing(state.current)) {
      const room = findRoom(state.current);
      if (room) room.unread_count = 0;
    }
    renderRooms();
  } catch (err) {
    if (err.status === 404) setAvailable(false, 'Chat is not available on this server yet.');
    else if (err.status !== 401) $('#chat-error').textContent = `Could not load chats: ${err.message}`;
  }
}

function findRoom(roomId) {
  return state.rooms.find((room) => room.id === roomId) || null;
}

function viewing(roomId) {
  return document.body.dataset.view === 'chat' && state.current === roomId
    && document.visibilityState === 'visible';
}

/** The chat page shows, with `roomId` open (or none: null). */
export async function openChat(roomId) {
  $('#chat-error').textContent = '';
  state.current = roomId;
  renderConversation();
  await refreshRooms();
  if (roomId === null || state.current !== roomId) return;
  if (!findRoom(roomId)) {
    $('#chat-error').textContent = 'No such chat.';
    return;
  }
  await loadHistory(roomId);
  markRead(roomId);
  $('#composer-text').focus();
}

async function loadHistory(roomId, beforeSeq) {
  const query = beforeSeq ? `?limit=50&before_seq=${beforeSeq}` : '?limit=50';
  try {
    const data = await api('GET', `/api/chat/rooms/${roomId}/messages${query}`);
    const list = data.messages || [];
    for (const message of list) store(message);
    if (!beforeSeq || list.length < 50) state.older.set(roomId, list.length === 50);
    renderConversation(!beforeSeq);
  } catch (err) {
    $('#chat-error').textContent = `Could not load messages: ${err.message}`;
  }
}

function loadOlder() {
  const roomId = state.current;
  const seqs = Array.from((state.messages.get(roomId) || new Map()).keys());
  if (!seqs.length) return;
  loadHistory(roomId, Math.min(...seqs));
}

function store(message) {
  let byseq = state.messages.get(message.room_id);
  if (!byseq) {
    byseq = new Map();
    state.messages.set(message.room_id, byseq);
  }
  const known = byseq.has(message.seq);
  byseq.set(message.seq, message);
  if (message.client_msg_id) state.pending.delete(message.client_msg_id);
  return !known;
}

function lastSeq(roomId) {
  const byseq = state.messages.get(roomId);
  return byseq && byseq.size ? Math.max(...byseq.keys()) : 0;
}

function onMessage(message) {
  if (!message || typeof message.room_id !== 'number') return;
  const fresh = store(message);
  const room = findRoom(message.room_id);
  if (!room) {
    refreshRooms();
    return;
  }
  room.last_message = message;
  state.rooms = [room, ...state.rooms.filter((r) => r !== room)];
  if (fresh && message.sender_id !== session.userId) {
    if (viewing(message.room_id)) markRead(message.room_id);
    else room.unread_count = (room.unread_count || 0) + 1;
  }
  renderRooms();
  if (state.current === message.room_id) renderConversation(true);
}

function onRead(receipt) {
  if (!receipt) return;
  if (receipt.user_id === session.userId) {
    // Read in another window of mine.
    const room = findRoom(receipt.room_id);
    if (room && receipt.seq >= lastSeq(receipt.room_id)) room.unread_count = 0;
    renderRooms();
    return;
  }
  const before = state.partnerRead.get(receipt.room_id) || 0;
  state.partnerRead.set(receipt.room_id, Math.max(before, receipt.seq));
  if (state.current === receipt.room_id) renderConversation();
}

async function markRead(roomId) {
  const seq = lastSeq(roomId);
  const room = findRoom(roomId);
  if (room) room.unread_count = 0;
  renderRooms();
  if (!seq) return;
  const socket = signIn.chat;
  if (socket && socket.connected) {
    const ack = await request(socket, 'read', { room_id: roomId, seq });
    if (ack.ok) return;
  }
  try {
    await api('POST', `/api/chat/rooms/${roomId}/read`, { seq });
  } catch (err) {
    logError('read', err);
  }
}

async function sendMessage(event) {
  event.preventDefault();
  const box = $('#composer-text');
  const content = box.value.trim();
  if (!content || state.current === null) return;
  box.value = '';
  const pending = { room_id: state.current, content, client_msg_id: newId(), failed: false };
  state.pending.set(pending.client_msg_id, pending);
  renderConversation(true);
  await deliver(pending);
}

async function deliver(pending) {
  pending.failed = false;
  const ack = await request(signIn.chat, 'send', {
    room_id: pending.room_id, content: pending.content, client_msg_id: pending.client_msg_id,
  });
  if (ack.ok && ack.message) {
    onMessage(ack.message);
  } else {
    pending.failed = true;
    $('#chat-error').textContent = `Not sent: ${ack.error ? ack.error.message : 'unknown error'}`;
    renderConversation();
  }
}

async function socketConnected() {
  $('#chat-error').textContent = '';
  const roomId = state.current;
  const after = roomId === null ? 0 : lastSeq(roomId);
  if (roomId !== null && after) {
    const ack = await request(signIn.chat, 'sync', { room_id: roomId, after_seq: after });
    if (ack.ok) for (const message of ack.messages || []) onMessage(message);
  }
  refreshRooms();
}

function socketRefused(err) {
  logError('chat socket', err);
  if (state.available) $('#chat-error').textContent = 'Live chat is not connected; reload to retry.';
}

function renderRooms() {
  const list = $('#rooms-list');
  list.replaceChildren(...state.rooms.map((room) => {
    const unread = room.unread_count || 0;
    const last = room.last_message;
    const preview = last ? `${last.sender_id === session.userId ? 'You: ' : ''}${last.content}` : 'No messages yet';
    return el('li', {},
      el('a', {
        class: `room${room.id === state.current ? ' active' : ''}`,
        href: `#/chat/${room.id}`,
        dataset: { roomId: String(room.id), partner: room.partner_id, unread: String(unread) },
      },
      avatar(room.partner_id),
      el('span', { class: 'grow' },
        el('b', {}, room.partner_id),
        el('span', { class: 'preview muted small' }, preview)),
      el('span', { class: 'badge', hidden: unread === 0 }, String(unread))));
  }));
  if (state.available !== false) $('#rooms-empty').hidden = state.rooms.length > 0;
  const total = state.rooms.reduce((sum, room) => sum + (room.unread_count || 0), 0);
  const badge = $('#chat-badge');
  badge.textContent = String(total);
  badge.dataset.count = String(total);
  badge.hidden = total === 0;
}

function renderConversation(scrollToEnd = false) {
  const roomId = state.current;
  const room = roomId === null ? null : findRoom(roomId);
  $('#conversation').dataset.room = roomId === null ? '' : String(roomId);
  $('#room-title').textContent = room ? room.partner_id : 'Pick a chat';
  paintAvatar($('#room-avatar'), room ? room.partner_id : '?');
  $('#room-avatar').hidden = !room;
  $('#composer').hidden = !room;
  $('#load-older').hidden = !room || !state.older.get(roomId);
  const box = $('#messages');
  const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const list = $('#message-list');
  if (!room) {
    list.replaceChildren();
    return;
  }
  const read = state.partnerRead.get(roomId) || 0;
  const messages = Array.from((state.messages.get(roomId) || new Map()).values()).sort((a, b) => a.seq - b.seq);
  const items = messages.map((m) => {
    const mine = m.sender_id === session.userId;
    const receipt = mine ? el('span', { class: `receipt${m.seq <= read ? ' read' : ''}` }, m.seq <= read ? '✓✓ read' : '✓ sent') : null;
    return el('li', {
      class: `msg ${mine ? 'mine' : 'theirs'}`,
      dataset: { seq: String(m.seq), sender: m.sender_id, read: mine ? String(m.seq <= read) : '' },
    },
    el('div', { class: 'bubble' }, m.content),
    el('div', { class: 'meta' }, fmtWhen(m.created_at), receipt));
  });
  for (const p of state.pending.values()) {
    if (p.room_id !== roomId) continue;
    const retry = p.failed ? el('button', { type: 'button', class: 'ghost small', onclick: () => deliver(p) }, 'retry') : null;
    items.push(el('li', { class: `msg mine pending${p.failed ? ' failed' : ''}`, dataset: { clientMsgId: p.client_msg_id } },
      el('div', { class: 'bubble' }, p.content),
      el('div', { class: 'meta' }, p.failed ? 'not sent ' : 'sending…', retry)));
  }
  list.replaceChildren(...items);
  if (scrollToEnd || nearEnd) box.scrollTop = box.scrollHeight;
}

/** Follow the sign-in connection's /chat socket. */
export function listenToChat(socket) {
  socket.on('connect', socketConnected);
  socket.on('connect_error', (err) => {
    if (isUnauthorized(err)) expire();
    else socketRefused(err);
  });
  socket.on('message', onMessage);
  socket.on('read', onRead);
}

export function wireChat() {
  $('#composer').addEventListener('submit', sendMessage);
  $('#composer-text').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      $('#composer').requestSubmit();
    }
  });
  $('#load-older').addEventListener('click', loadOlder);
  document.addEventListener('visibilitychange', () => {
    if (state.current !== null && viewing(state.current)) markRead(state.current);
  });
}
