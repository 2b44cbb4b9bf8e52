/* GiftCall web client: plain JavaScript, no build step.
 *
 * It speaks only the wire contract (PROTOCOL.md): REST with a bearer token,
 * Socket.IO namespaces /call and /chat with auth {token}; the /call connection
 * of a call page carries the call's id in its handshake query (call_id), so a
 * load balancer sends both users of a call to one server process. State worth
 * testing is mirrored into data-* attributes (data-phase, data-pc-state…).
 */
(() => {
  'use strict';

  // ------------------------------------------------------------ utilities

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  /** el('li', {class: 'x', dataset: {id: 1}, onclick: f}, 'text', child) */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (key === 'class') node.className = value;
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function avatar(userId, extraClass = '') {
    const node = el('span', { class: `avatar ${extraClass}`.trim() });
    paintAvatar(node, userId);
    return node;
  }

  function paintAvatar(node, userId) {
    let hash = 0;
    for (const ch of String(userId)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    node.textContent = String(userId || '?').slice(0, 1).toUpperCase();
    node.style.setProperty('--hue', String(hash % 360));
  }

  function fmtWhen(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return '';
    const sameDay = date.toDateString() === new Date().toDateString();
    const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return sameDay ? time : `${date.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
  }

  function fmtRelative(iso) {
    const diff = (new Date(iso).getTime() - Date.now()) / 1000;
    if (!Number.isFinite(diff)) return '';
    const abs = Math.abs(diff);
    const text = abs < 60 ? `${Math.round(abs)} s` : abs < 3600 ? `${Math.round(abs / 60)} min`
      : abs < 86400 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} d`;
    return diff >= 0 ? `in ${text}` : `${text} ago`;
  }

  function fmtClock(seconds) {
    const s = Math.max(0, Math.ceil(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }

  function newId() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
  }

  function toast(text, kind = 'info', action = null) {
    const node = el('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
      el('span', {}, text));
    if (action) {
      node.append(el('button', {
        type: 'button', class: 'small',
        onclick: () => { node.remove(); action.run(); },
      }, action.label));
    }
    node.append(el('button', { type: 'button', class: 'ghost small', 'aria-label': 'dismiss', onclick: () => node.remove() }, '×'));
    $('#toasts').append(node);
    setTimeout(() => node.remove(), action ? 20000 : 6000);
  }

  function logError(where, err) {
    console.warn(`[giftcall] ${where}:`, err); // eslint-disable-line no-console
  }

  // ------------------------------------------------------------- session

  const SESSION_KEY = 'giftcall.session';
  const S = {
    token: null,
    userId: null,
    callSocket: null,
    chatSocket: null,
    call: null,
    calls: [],
    giftBox: 'received',
    homeTimer: null,
  };

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** REST with the bearer token; resolves to the body of an {ok: true} answer. */
  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${S.token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
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
    if (response.status === 401) signOut('Your session has expired: sign in again.');
    throw new ApiError(response.status, error.code, error.message);
  }

  function tokenSubject(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const sub = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '='))).sub;
      return sub === undefined || sub === null ? null : String(sub);
    } catch (err) {
      return null;
    }
  }

  async function devLogin(userId) {
    const error = $('#login-error');
    error.textContent = '';
    let response;
    let data = null;
    try {
      response = await fetch('/api/dev/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user_id: userId }),
      });
      data = await response.json();
    } catch (err) {
      error.textContent = 'The server cannot be reached.';
      return;
    }
    if (response.status === 404) {
      error.textContent = 'Dev login is off (the server is not in dev mode): use a token instead.';
      $('#token-login').open = true;
      return;
    }
    if (!data || !data.ok) {
      error.textContent = (data && data.error && data.error.message) || 'Login failed.';
      return;
    }
    signIn(data.token, data.user_id || userId);
  }

  function signIn(token, userId) {
    S.token = token;
    S.userId = userId;
    sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token, userId }));
    renderWho();
    connectSockets();
    Chat.reset();
    Chat.refreshRooms();
    route();
  }

  function signOut(message) {
    if (S.call) S.call.close();
    S.call = null;
    for (const socket of [S.callSocket, S.chatSocket]) if (socket) socket.disconnect();
    S.callSocket = null;
    S.chatSocket = null;
    S.token = null;
    S.userId = null;
    sessionStorage.removeItem(SESSION_KEY);
    Chat.reset();
    renderWho();
    if (location.hash !== '#/') history.replaceState(null, '', '#/');
    route();
    if (message) $('#login-error').textContent = message;
  }

  function renderWho() {
    const signedIn = Boolean(S.token);
    $('#nav').hidden = !signedIn;
    $('#whoami').hidden = !signedIn;
    $('#me').textContent = S.userId || '';
    paintAvatar($('#me-avatar'), S.userId || '?');
    document.body.dataset.user = S.userId || '';
  }

  function renderConnection() {
    // On a call page, the call's own connection; elsewhere the sign-in one.
    const socket = (S.call && S.call.socket) || S.callSocket;
    const call = Boolean(socket && socket.connected);
    const node = $('#conn');
    node.dataset.state = call ? 'online' : 'offline';
    node.title = call ? 'connected to the server' : 'not connected to the server';
  }

  // ------------------------------------------------------------- sockets

  const CALL_EVENTS = ['partner_joined', 'partner_left', 'signal', 'countdown', 'live', 'ended'];

  function isUnauthorized(err) {
    return err && (err.message === 'unauthorized' || (err.data && err.data.code === 'unauthorized'));
  }

  function connectSockets() {
    // One connection per sign-in for /chat and for the /call notifications
    // (call_soon, ended), both namespaces on it; each call page opens its own
    // /call connection with the call's id (CallSession.openSocket). A fresh
    // Manager, not io()'s cache: after a sign-out the cache would hand back
    // the old socket with the old user's token.
    const manager = new io.Manager(location.origin, { transports: ['websocket'] });
    const options = { auth: { token: S.token } };
    const call = manager.socket('/call', options);
    S.callSocket = call;
    call.on('connect', renderConnection);
    call.on('disconnect', renderConnection);
    call.on('connect_error', (err) => {
      renderConnection();
      if (isUnauthorized(err)) signOut('Your session has expired: sign in again.');
    });
    call.on('ended', () => Home.refreshCallsSoon());
    call.on('call_soon', (payload) => {
      if (S.call && S.call.callId === payload.call_id) return; // already there
      toast(`Your call with ${payload.partner_id} starts ${fmtRelative(payload.scheduled_at)}.`, 'info', {
        label: 'Join', run: () => { location.hash = `#/call/${payload.call_id}`; },
      });
      Home.refreshCallsSoon();
    });

    const chat = manager.socket('/chat', options);
    S.chatSocket = chat;
    chat.on('connect', () => Chat.socketConnected());
    chat.on('connect_error', (err) => {
      if (isUnauthorized(err)) signOut('Your session has expired: sign in again.');
      else Chat.socketRefused(err);
    });
    chat.on('message', (message) => Chat.onMessage(message));
    chat.on('read', (receipt) => Chat.onRead(receipt));
  }

  /** emit with an ack and a deadline; resolves to the ack (an error body on timeout). */
  function request(socket, event, payload, timeoutMs = 10000) {
    return new Promise((resolve) => {
      if (!socket) {
        resolve({ ok: false, error: { code: 'unavailable', message: 'not connected' } });
        return;
      }
      socket.timeout(timeoutMs).emit(event, payload, (err, ack) => {
        if (err) resolve({ ok: false, error: { code: 'unavailable', message: 'the server did not answer in time' } });
        else resolve(ack || { ok: false, error: { code: 'unavailable', message: 'empty answer' } });
      });
    });
  }

  // ------------------------------------------------------------- routing

  function show(name) {
    for (const view of ['login', 'home', 'call', 'chat']) $(`#${view}-view`).hidden = view !== name;
    document.body.dataset.view = name;
    for (const link of $$('#nav a')) link.classList.toggle('active', link.dataset.nav === name);
    if (name !== 'home' && S.homeTimer) {
      clearInterval(S.homeTimer);
      S.homeTimer = null;
    }
  }

  function route() {
    if (!S.token) {
      if (S.call) S.call.close();
      show('login');
      $('#login-user').focus();
      return;
    }
    const hash = location.hash || '#/';
    const callMatch = hash.match(/^#\/call\/(\d+)$/);
    if (callMatch) {
      openCall(Number(callMatch[1]));
      return;
    }
    if (S.call) {
      S.call.close();
      S.call = null;
    }
    const chatMatch = hash.match(/^#\/chat(?:\/(\d+))?$/);
    if (chatMatch) {
      show('chat');
      Chat.open(chatMatch[1] ? Number(chatMatch[1]) : null);
      return;
    }
    show('home');
    Home.enter();
  }

  // ---------------------------------------------------------------- home

  const JOINABLE = new Set(['scheduled', 'open', 'waiting', 'connecting', 'countdown', 'live']);
  const CANCELLABLE = new Set(['scheduled', 'open', 'waiting', 'connecting', 'countdown']);
  const STATE_TEXT = {
    scheduled: 'scheduled', open: 'open: join now', waiting: 'partner waiting', connecting: 'connecting',
    countdown: 'starting', live: 'live', ended: 'ended', missed: 'missed', cancelled: 'cancelled',
  };

  const Home = {
    soon: null,

    enter() {
      this.refreshCalls();
      this.refreshGifts();
      if (!S.homeTimer) S.homeTimer = setInterval(() => this.refreshCalls(), 10000);
    },

    refreshCallsSoon() {
      clearTimeout(this.soon);
      this.soon = setTimeout(() => { if (document.body.dataset.view === 'home') this.refreshCalls(); }, 300);
    },

    async refreshCalls() {
      try {
        const data = await api('GET', '/api/calls');
        S.calls = data.calls;
        this.renderCalls();
      } catch (err) {
        if (err.status !== 401) toast(`Could not load your calls: ${err.message}`, 'error');
      }
    },

    renderCalls() {
      const list = $('#calls-list');
      list.replaceChildren(...S.calls.map((call) => {
        const mine = call.caller_id === S.userId;
        const partner = mine ? call.callee_id : call.caller_id;
        const actions = el('div', { class: 'actions' });
        if (JOINABLE.has(call.state)) {
          actions.append(el('a', { class: 'button small', href: `#/call/${call.id}`, dataset: { action: 'join' } }, 'Join'));
        }
        if (CANCELLABLE.has(call.state)) {
          actions.append(el('button', {
            type: 'button', class: 'ghost small', dataset: { action: 'cancel' },
            onclick: () => this.cancel(call),
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
      }));
      $('#calls-empty').hidden = S.calls.length > 0;
    },

    async cancel(call) {
      try {
        await api('DELETE', `/api/calls/${call.id}`);
        toast('The call is cancelled.');
      } catch (err) {
        toast(`Could not cancel: ${err.message}`, 'error');
      }
      this.refreshCalls();
    },

    async schedule(event) {
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
        this.refreshCalls();
      } catch (err) {
        error.textContent = err.message;
      }
    },

    async refreshGifts() {
      const list = $('#gifts-list');
      const empty = $('#gifts-empty');
      try {
        const data = await api('GET', `/api/gifts?box=${encodeURIComponent(S.giftBox)}`);
        $('#gift-send').hidden = false;
        const gifts = data.gifts || [];
        list.replaceChildren(...gifts.map((gift) => this.giftItem(gift)));
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
    },

    giftItem(gift) {
      const received = S.giftBox === 'received';
      const other = received ? gift.sender_id : gift.receiver_id;
      const opened = Boolean(gift.opened_at) || gift.opened === true || gift.state === 'opened';
      const actions = el('div', { class: 'actions' });
      if (received && !opened) {
        actions.append(el('button', { type: 'button', class: 'small', onclick: () => this.openGift(gift) }, 'Open'));
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
    },

    async openGift(gift) {
      try {
        await api('POST', `/api/gifts/${gift.id}/open`);
      } catch (err) {
        toast(`Could not open the gift: ${err.message}`, 'error');
      }
      this.refreshGifts();
      Chat.refreshRooms();
    },

    async sendGift(event) {
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
        this.refreshGifts();
        this.refreshCalls();
        Chat.refreshRooms();
      } catch (err) {
        error.textContent = err.message;
      }
    },
  };

  // ---------------------------------------------------------------- call

  const PHASE_LABEL = {
    idle: 'idle', media: 'camera', joining: 'joining', waiting: 'waiting', connecting: 'connecting',
    reconnecting: 'reconnecting', countdown: 'starting', live: 'live', ended: 'ended', error: 'not joined',
  };
  const END_TEXT = {
    time_limit: 'Time is up: the call reached its limit.',
    left: 'The call was hung up.',
    cancelled: 'The call was cancelled.',
    missed: 'The call was missed: you did not both join in time.',
    replaced: 'You joined this call from another window, which took over.',
    server: 'The server ended the call.',
  };
  /** How long a dropped connection may stay 'disconnected' before an ICE restart. */
  const DISCONNECTED_GRACE_MS = 2500;

  function openCall(callId) {
    $('#toasts').replaceChildren(); // the call has the screen
    show('call');
    if (S.call && S.call.callId === callId && !S.call.closed) return;
    if (S.call) S.call.close();
    S.call = new CallSession(callId);
    S.call.start();
  }

  /**
   * One call page: local media, the /call events of one call, and a fresh
   * RTCPeerConnection per negotiation (each join or partner_joined), with
   * perfect negotiation: the user the server made the offerer is impolite,
   * the one who waited is polite.
   */
  class CallSession {
    constructor(callId) {
      this.callId = callId;
      this.socket = null; // this call's own /call connection (openSocket)
      this.view = $('#call-view');
      this.phase = 'idle';
      this.phaseLog = [];
      this.closed = false;
      this.over = false;
      this.mediaReady = false;
      this.needJoin = true;
      this.joined = false;
      this.accepting = false; // a join ack arrived: signals from now on are for this negotiation
      this.pc = null;
      this.janus = null; // the call's Janus room (janus.js), with SIGNALING_MEDIA=janus
      this.polite = false;
      this.makingOffer = false;
      this.ignoreOffer = false;
      this.answered = false; // this peer connection has answered an offer
      this.localStream = null;
      this.mediaError = '';
      this.partnerId = null;
      this.partnerPresent = false;
      this.iceServers = [];
      this.limitS = null;
      this.skewMs = 0; // server clock minus ours, learnt from countdown
      this.liveAt = null;
      this.endsAt = null;
      this.counters = { negotiations: 0, countdowns: 0, glare: 0, iceRestarts: 0, connected: 0 };
      this.queue = Promise.resolve();
      this.ticker = null;
      this.disconnectTimer = null;
      this.restarting = false;
      this.note = '';
    }

    /** Handlers run one at a time, in arrival order. */
    enqueue(task) {
      this.queue = this.queue.then(task).catch((err) => logError('call', err));
      return this.queue;
    }

    async start() {
      this.resetView();
      this.setPhase('media');
      this.openSocket();
      await this.openMedia();
      if (this.closed) return;
      this.mediaReady = true;
      this.ticker = setInterval(() => this.tick(), 200);
      this.maybeJoin();
    }

    resetView() {
      const v = this.view;
      v.dataset.callId = String(this.callId);
      v.dataset.phase = 'idle';
      v.dataset.phaseLog = '';
      v.dataset.pcState = 'new';
      v.dataset.iceState = 'new';
      v.dataset.partner = 'absent';
      v.dataset.role = '';
      v.dataset.endReason = '';
      v.dataset.question = '';
      for (const key of Object.keys(this.counters)) v.dataset[key] = '0';
      $('#call-partner').textContent = '…';
      $('#remote-video').srcObject = null;
      $('#local-video').srcObject = null;
      $('#countdown').hidden = true;
      $('#question').hidden = true;
      $('#ended-panel').hidden = true;
      $('#call-error').textContent = '';
      $('#call-timer').textContent = '--:--';
      $('#call-timer').dataset.remaining = '';
      $('#call-progress > div').style.width = '100%';
      $('#toggle-mic').setAttribute('aria-pressed', 'false');
      $('#toggle-cam').setAttribute('aria-pressed', 'false');
    }

    async openMedia() {
      try {
        this.localStream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
        if (this.closed) {
          this.stopMedia();
          return;
        }
        $('#local-video').srcObject = this.localStream;
        this.view.dataset.localMedia = 'on';
      } catch (err) {
        logError('getUserMedia', err);
        this.view.dataset.localMedia = 'off';
        this.mediaError = `No camera or microphone (${err.name || err}): you can still see and hear your partner.`;
        $('#call-error').textContent = this.mediaError;
      }
    }

    stopMedia() {
      if (this.localStream) for (const track of this.localStream.getTracks()) track.stop();
      this.localStream = null;
      $('#local-video').srcObject = null;
    }

    // ----- socket

    /**
     * The call's own /call connection, on a Manager of its own: the handshake
     * query carries call_id (PROTOCOL.md), which a load balancer hashes to
     * send both users of this call to the same server process. socket.io
     * reconnects it with the same query; each (re)connect joins again.
     */
    openSocket() {
      const manager = new io.Manager(location.origin, {
        transports: ['websocket'],
        query: { call_id: String(this.callId) },
      });
      const socket = manager.socket('/call', { auth: { token: S.token } });
      this.socket = socket;
      socket.on('connect', () => {
        renderConnection();
        this.socketConnected();
      });
      socket.on('disconnect', () => {
        renderConnection();
        this.socketLost();
      });
      socket.on('connect_error', (err) => {
        renderConnection();
        if (isUnauthorized(err)) signOut('Your session has expired: sign in again.');
      });
      for (const name of CALL_EVENTS) {
        socket.on(name, (payload) => {
          if (payload && payload.call_id === this.callId) this.receive(name, payload);
        });
      }
    }

    /** Close the call's connection: after a `leave` has been answered, if one is sent. */
    closeSocket(leave) {
      const socket = this.socket;
      this.socket = null;
      if (!socket) return;
      if (leave && socket.connected) {
        socket.timeout(5000).emit('leave', { call_id: this.callId }, () => {
          Home.refreshCallsSoon();
          socket.disconnect();
        });
      } else {
        socket.disconnect();
      }
      renderConnection();
    }

    maybeJoin() {
      const socket = this.socket;
      if (this.closed || this.over || !this.mediaReady || !this.needJoin || !socket || !socket.connected) return;
      this.needJoin = false;
      this.enqueue(() => this.join());
    }

    socketConnected() {
      this.maybeJoin();
    }

    socketLost() {
      if (this.closed || this.over) return;
      this.needJoin = true;
      this.accepting = false;
      this.joined = false;
      this.closePeer();
      this.setPartner(false);
      if (this.phase !== 'live') this.setPhase('reconnecting');
      this.setNote('Lost the connection to the server: reconnecting…');
    }

    receive(name, payload) {
      if (this.closed) return;
      // Signals delivered before our join ack were queued for the negotiation
      // we had before; every join starts a fresh peer connection, so drop them.
      if (name === 'signal' && !this.accepting) return;
      this.enqueue(() => this[`on_${name}`](payload));
    }

    async join() {
      if (this.closed || this.over) return;
      this.accepting = false;
      this.closePeer();
      if (this.phase !== 'live') this.setPhase('joining');
      const ack = await new Promise((resolve) => {
        if (!this.socket) {
          resolve({ ok: false, error: { code: 'unavailable', message: 'not connected' } });
          return;
        }
        this.socket.timeout(10000).emit('join', { call_id: this.callId }, (err, answer) => {
          if (err) {
            resolve({ ok: false, error: { code: 'unavailable', message: 'the server did not answer in time' } });
            return;
          }
          // Synchronously, so that no signal slips between the ack and this flag.
          if (answer && answer.ok) this.accepting = true;
          resolve(answer);
        });
      });
      if (this.closed) return;
      if (!ack || !ack.ok) {
        await this.joinFailed((ack && ack.error) || { code: 'unavailable', message: 'join failed' });
        return;
      }
      this.joined = true;
      this.setNote('');
      $('#call-error').textContent = this.mediaError;
      const call = ack.call;
      this.partnerId = call.caller_id === S.userId ? call.callee_id : call.caller_id;
      $('#call-partner').textContent = this.partnerId;
      $('#remote-label').textContent = this.partnerId;
      this.iceServers = Array.isArray(ack.ice_servers) ? ack.ice_servers : [];
      this.limitS = ack.limit_s;
      this.view.dataset.role = ack.role;
      if (ack.ends_at) {
        this.endsAt = Date.parse(ack.ends_at) - this.skewMs;
        this.setPhase('live');
      }
      if (ack.janus) this.startJanus(ack);
      if (ack.role === 'offerer' || ack.partner_present) {
        this.setPartner(true);
        this.polite = false;
        this.newPeer();
        if (this.phase !== 'live') this.setPhase('connecting');
      } else {
        this.setPartner(false);
        if (this.phase !== 'live') this.setPhase('waiting');
      }
    }

    async joinFailed(error) {
      this.needJoin = false;
      if (error.code === 'ended') {
        let reason = null;
        try {
          const data = await api('GET', `/api/calls/${this.callId}`);
          reason = data.call.end_reason || data.call.state;
        } catch (err) {
          reason = null;
        }
        this.finish(reason, error.message);
        return;
      }
      this.setPhase('error');
      const retry = el('button', {
        type: 'button', class: 'small', onclick: () => { this.needJoin = true; this.maybeJoin(); },
      }, 'Try again');
      const prefix = error.code === 'too_early' ? 'Too early: ' : '';
      $('#call-error').replaceChildren(`${prefix}${error.message} `, retry);
      this.setNote(error.code === 'too_early' ? 'The call room is not open yet.' : 'Could not join the call.');
    }

    // ----- server events

    on_partner_joined() {
      if (this.over) return;
      this.setPartner(true);
      this.polite = true;
      this.newPeer();
      if (this.phase !== 'live') this.setPhase('connecting');
      this.setNote('');
    }

    on_partner_left(payload) {
      if (this.over) return;
      this.setPartner(false);
      if (!this.janus) this.closePeer(); // with Janus our publisher stays in the room
      const why = payload.reason === 'left' ? 'left the room' : 'lost their connection';
      if (this.phase === 'live') {
        this.setNote(`Your partner ${why}: waiting for them to come back…`);
      } else {
        this.liveAt = null;
        this.setPhase('waiting');
        this.setNote(`Your partner ${why}.`);
      }
    }

    on_signal(payload) {
      return this.handleSignal(payload);
    }

    on_countdown(payload) {
      if (this.over) return;
      const now = Date.now();
      this.liveAt = now + payload.seconds * 1000;
      const serverLiveAt = Date.parse(payload.live_at);
      if (Number.isFinite(serverLiveAt)) this.skewMs = serverLiveAt - this.liveAt;
      this.view.dataset.countdownFrom = String(Math.ceil(payload.seconds));
      this.count('countdowns');
      this.setPhase('countdown');
    }

    on_live(payload) {
      if (this.over) return;
      // Sent at live_at, so ends_at is limit_s away; both estimates can only
      // be late by the event's delay, so take the earlier one.
      const local = Date.now() + (this.limitS || 60) * 1000;
      const serverEnds = Date.parse(payload.ends_at) - this.skewMs;
      this.endsAt = Number.isFinite(serverEnds) ? Math.min(local, serverEnds) : local;
      const question = payload.question && payload.question.text;
      if (question) {
        $('#question-text').textContent = question;
        this.view.dataset.question = question;
      }
      $('#question').hidden = !question;
      this.setPhase('live');
    }

    on_ended(payload) {
      this.finish(payload.reason, null);
    }

    finish(reason, message) {
      this.over = true;
      this.closeSocket(false); // over for good: nothing more comes for this call
      this.closePeer();
      this.stopMedia();
      this.view.dataset.endReason = reason || 'unknown';
      $('#ended-reason').textContent = END_TEXT[reason] || message || `The call is ${reason || 'over'}.`;
      $('#ended-panel').hidden = false;
      $('#question').hidden = true;
      this.setPhase('ended');
      this.tick();
      Home.refreshCallsSoon();
    }

    // ----- the peer connection

    newPeer() {
      if (this.janus) return; // Janus: the room adapter owns the peer connections
      this.closePeer();
      const pc = new RTCPeerConnection({ iceServers: this.iceServers });
      this.pc = pc;
      this.makingOffer = false;
      this.ignoreOffer = false;
      this.answered = false;
      this.count('negotiations');
      this.view.dataset.polite = String(this.polite);
      if (this.localStream) {
        for (const track of this.localStream.getTracks()) pc.addTrack(track, this.localStream);
      } else if (!this.polite) {
        // Nothing to send, but the offer must still ask for the partner's media.
        pc.addTransceiver('audio', { direction: 'recvonly' });
        pc.addTransceiver('video', { direction: 'recvonly' });
      }
      pc.ontrack = ({ track, streams }) => {
        if (pc !== this.pc) return;
        const video = $('#remote-video');
        const stream = streams[0] || video.srcObject || new MediaStream();
        if (!streams[0]) stream.addTrack(track);
        if (video.srcObject !== stream) video.srcObject = stream;
        this.render();
      };
      pc.onnegotiationneeded = async () => {
        if (pc !== this.pc) return;
        // The protocol has the offerer open each negotiation; the polite side
        // answers it first and only then may offer (an ICE restart, say). An
        // early polite offer would only cross the offerer's, and rolling back
        // an offer whose ICE gathering has just begun leaves Chromium with no
        // candidates for its answer. The flag stays set: Chromium fires again
        // once the answer is applied, if anything is still to negotiate.
        if (this.polite && !this.answered) return;
        try {
          this.makingOffer = true;
          await pc.setLocalDescription();
          if (pc !== this.pc) return;
          this.send({ type: pc.localDescription.type, sdp: pc.localDescription.sdp });
        } catch (err) {
          logError('negotiation', err);
        } finally {
          this.makingOffer = false;
        }
      };
      pc.onicecandidate = ({ candidate }) => {
        if (pc !== this.pc) return;
        if (!candidate) this.send({ type: 'end-of-candidates' });
        else if (candidate.candidate) this.send({ type: 'candidate', candidate: candidateJson(candidate) });
      };
      pc.oniceconnectionstatechange = () => {
        if (pc !== this.pc) return;
        this.view.dataset.iceState = pc.iceConnectionState;
        if (pc.iceConnectionState === 'failed') this.restartIce('ice failed');
        this.restartDone();
      };
      pc.onconnectionstatechange = () => {
        if (pc !== this.pc) return;
        const state = pc.connectionState;
        this.view.dataset.pcState = state;
        clearTimeout(this.disconnectTimer);
        if (state === 'connected') {
          this.count('connected');
          this.reportConnected();
        } else if (state === 'disconnected') {
          // Often transient; restart ICE only if it does not come back by itself.
          this.disconnectTimer = setTimeout(() => {
            if (pc === this.pc && pc.connectionState === 'disconnected') this.restartIce('disconnected');
          }, DISCONNECTED_GRACE_MS);
        } else if (state === 'failed') {
          this.restartIce('failed');
        }
        this.render();
      };
      pc.onsignalingstatechange = () => {
        if (pc !== this.pc) return;
        this.view.dataset.signalingState = pc.signalingState;
        this.restartDone();
      };
      this.view.dataset.pcState = pc.connectionState;
    }

    /** Perfect negotiation (W3C WebRTC, section 10.7). */
    async handleSignal(message) {
      if (this.over) return;
      if (!this.pc) {
        if (message.type !== 'offer') return; // nothing to apply it to
        this.newPeer();
      }
      const pc = this.pc;
      try {
        if (message.type === 'offer' || message.type === 'answer') {
          const offerCollision = message.type === 'offer'
            && (this.makingOffer || pc.signalingState !== 'stable');
          this.ignoreOffer = !this.polite && offerCollision;
          if (offerCollision) this.count('glare');
          if (this.ignoreOffer) return;
          if (message.type === 'answer' && pc.signalingState !== 'have-local-offer') return; // stale
          await pc.setRemoteDescription({ type: message.type, sdp: message.sdp });
          if (message.type === 'offer') {
            await pc.setLocalDescription();
            if (pc !== this.pc) return;
            this.answered = true;
            this.send({ type: 'answer', sdp: pc.localDescription.sdp });
          }
        } else if (message.type === 'candidate') {
          try {
            await pc.addIceCandidate(message.candidate);
          } catch (err) {
            if (!this.ignoreOffer) throw err;
          }
        } else if (message.type === 'end-of-candidates') {
          try {
            await pc.addIceCandidate();
          } catch (err) {
            // A stale generation's end: nothing to do.
          }
        }
      } catch (err) {
        logError(`signal ${message.type}`, err);
      }
    }

    /** A new offer with fresh ICE credentials, through perfect negotiation. */
    restartIce(why) {
      const pc = this.pc;
      if (!pc || this.over || pc.signalingState === 'closed') return;
      this.count('iceRestarts');
      this.restarting = true;
      this.setNote(`Reconnecting media (${why})…`);
      pc.restartIce();
    }

    /** The restart is over once negotiation settled and ICE is connected again. */
    restartDone() {
      const pc = this.pc;
      if (!this.restarting || !pc || pc.signalingState !== 'stable') return;
      if (!['connected', 'completed'].includes(pc.iceConnectionState)) return;
      this.restarting = false;
      this.setNote('');
    }

    send(signal) {
      const socket = this.socket;
      if (!socket || !this.joined) return;
      socket.emit('signal', { call_id: this.callId, ...signal }, (ack) => {
        if (ack && !ack.ok) logError(`signal ${signal.type} refused`, ack.error);
      });
    }

    async reportConnected() {
      const ack = await request(this.socket, 'connected', { call_id: this.callId });
      if (!ack.ok) logError('connected refused', ack.error);
    }

    /**
     * SIGNALING_MEDIA=janus: the media goes through the call's Janus room
     * (janus.js, loaded on first use). `this.janus` is set at once, so that
     * no peer-to-peer connection is made meanwhile.
     */
    startJanus(ack) {
      const room = { impl: null, stopped: false, stop() { this.stopped = true; if (this.impl) this.impl.stop(); } };
      this.janus = room;
      this.count('negotiations');
      const mine = () => room === this.janus;
      import('/web/janus.js').then(({ JanusRoom }) => {
        if (room.stopped) return null;
        room.impl = new JanusRoom(ack.janus, {
          iceServers: this.iceServers,
          localStream: this.localStream,
          onRemote: (stream, pc) => {
            if (!mine()) return;
            this.pc = pc;
            $('#remote-video').srcObject = stream;
            this.render();
          },
          onState: (state) => {
            if (!mine()) return;
            this.view.dataset.pcState = state;
            if (state === 'connected') this.count('connected');
            this.render();
          },
          onError: (where, err) => { if (mine()) logError(`janus ${where}`, err); },
        });
        return room.impl.start();
      }).catch((err) => { if (mine()) logError('janus', err); });
    }

    closePeer() {
      if (this.janus) {
        const room = this.janus;
        this.janus = null;
        room.stop();
      }
      clearTimeout(this.disconnectTimer);
      const pc = this.pc;
      this.pc = null;
      if (pc) {
        pc.ontrack = pc.onnegotiationneeded = pc.onicecandidate = null;
        pc.oniceconnectionstatechange = pc.onconnectionstatechange = pc.onsignalingstatechange = null;
        pc.close();
        this.view.dataset.pcState = 'closed';
        this.view.dataset.iceState = 'closed';
      }
      $('#remote-video').srcObject = null;
      this.render();
    }

    // ----- user actions

    toggleTrack(kind, button) {
      if (!this.localStream) return;
      const tracks = kind === 'audio' ? this.localStream.getAudioTracks() : this.localStream.getVideoTracks();
      const off = button.getAttribute('aria-pressed') !== 'true';
      for (const track of tracks) track.enabled = !off;
      button.setAttribute('aria-pressed', String(off));
    }

    /** Leave the page's call: a hang-up when live, otherwise the partner waits for us. */
    close() {
      if (this.closed) return;
      this.closed = true;
      this.closeSocket(this.joined && !this.over);
      clearInterval(this.ticker);
      this.closePeer();
      this.stopMedia();
      if (S.call === this) S.call = null;
    }

    // ----- view

    count(name) {
      this.counters[name] += 1;
      this.view.dataset[name] = String(this.counters[name]);
    }

    setPartner(present) {
      this.partnerPresent = present;
      this.view.dataset.partner = present ? 'present' : 'absent';
    }

    setNote(text) {
      this.note = text;
      this.render();
    }

    setPhase(phase) {
      if (this.phase !== phase) {
        this.phase = phase;
        this.phaseLog.push(phase);
        this.view.dataset.phaseLog = this.phaseLog.join(' ');
      }
      this.view.dataset.phase = phase;
      const label = $('#call-phase-label');
      label.textContent = PHASE_LABEL[phase] || phase;
      label.className = `pill phase-${phase}`;
      this.render();
      this.tick();
    }

    statusText() {
      const partner = this.partnerId || 'your partner';
      switch (this.phase) {
        case 'media': return 'Starting your camera…';
        case 'joining': return 'Joining the call…';
        case 'waiting': return `${this.note ? `${this.note} ` : ''}Waiting for your partner…`;
        case 'reconnecting': return this.note || 'Reconnecting…';
        case 'connecting': return `Connecting to ${partner}…`;
        case 'countdown': return `Connected to ${partner}.`;
        case 'live': return this.note || `Reconnecting to ${partner}…`;
        case 'error': return this.note || 'Could not join the call.';
        default: return '';
      }
    }

    render() {
      if (this.closed) return;
      const connected = Boolean(this.pc && this.pc.connectionState === 'connected' && $('#remote-video').srcObject);
      const showPlaceholder = this.phase !== 'ended' && !connected;
      $('#remote-placeholder').hidden = !showPlaceholder;
      // Over live video a note is a banner, not a curtain.
      $('#call-banner').textContent = this.note;
      $('#call-banner').hidden = showPlaceholder || !this.note || this.phase === 'ended';
      $('#remote-label').hidden = !connected || this.phase === 'ended';
      $('#remote-placeholder').classList.toggle('busy', !['error', 'ended'].includes(this.phase));
      $('#call-status').textContent = this.statusText();
      this.view.dataset.status = $('#call-status').textContent;
    }

    tick() {
      const now = Date.now();
      const countdown = $('#countdown');
      if (this.phase === 'countdown' && this.liveAt) {
        const left = Math.max(0, Math.ceil((this.liveAt - now) / 1000));
        countdown.hidden = false;
        $('#countdown-number').textContent = String(left);
        this.view.dataset.countdown = String(left);
      } else {
        countdown.hidden = true;
      }
      const timer = $('#call-timer');
      const bar = $('#call-progress > div');
      if ((this.phase === 'live' || this.phase === 'ended') && this.endsAt) {
        const left = this.phase === 'ended' ? 0
          : Math.min(this.limitS || Infinity, Math.max(0, (this.endsAt - now) / 1000));
        timer.textContent = fmtClock(left);
        timer.dataset.remaining = String(Math.ceil(left));
        const total = this.limitS || 60;
        bar.style.width = `${Math.max(0, Math.min(100, (left / total) * 100))}%`;
        timer.classList.toggle('low', left <= 10 && this.phase === 'live');
        timer.classList.remove('idle');
      } else if (this.limitS) {
        // Not started: the length of the call, greyed.
        timer.textContent = fmtClock(this.limitS);
        timer.dataset.remaining = '';
        bar.style.width = '100%';
        timer.classList.remove('low');
        timer.classList.add('idle');
      }
    }
  }

  function candidateJson(candidate) {
    const json = candidate.toJSON();
    const out = { candidate: json.candidate };
    for (const key of ['sdpMid', 'sdpMLineIndex', 'usernameFragment']) {
      if (json[key] !== undefined && json[key] !== null) out[key] = json[key];
    }
    return out;
  }

  // ---------------------------------------------------------------- chat

  const Chat = {
    available: null,
    rooms: [],
    current: null,
    messages: new Map(), // room id -> Map(seq -> message)
    pending: new Map(), // client_msg_id -> {room_id, content, failed}
    partnerRead: new Map(), // room id -> highest seq the partner has read
    older: new Map(), // room id -> whether older history exists

    reset() {
      this.available = null;
      this.rooms = [];
      this.current = null;
      this.messages = new Map();
      this.pending = new Map();
      this.partnerRead = new Map();
      this.older = new Map();
      this.renderRooms();
      this.renderConversation();
    },

    setAvailable(yes, why) {
      this.available = yes;
      $('#chat-view').dataset.available = String(yes);
      if (!yes) {
        $('#rooms-empty').textContent = why || 'Chat is not available.';
        $('#rooms-empty').hidden = false;
      }
    },

    async refreshRooms() {
      if (!S.token) return;
      try {
        const data = await api('GET', '/api/chat/rooms');
        this.setAvailable(true);
        this.rooms = data.rooms || [];
        if (this.current !== null && this.viewing(this.current)) {
          const room = this.room(this.current);
          if (room) room.unread_count = 0;
        }
        this.renderRooms();
      } catch (err) {
        if (err.status === 404) this.setAvailable(false, 'Chat is not available on this server yet.');
        else if (err.status !== 401) $('#chat-error').textContent = `Could not load chats: ${err.message}`;
      }
    },

    room(roomId) {
      return this.rooms.find((room) => room.id === roomId) || null;
    },

    viewing(roomId) {
      return document.body.dataset.view === 'chat' && this.current === roomId
        && document.visibilityState === 'visible';
    },

    async open(roomId) {
      $('#chat-error').textContent = '';
      this.current = roomId;
      this.renderConversation();
      await this.refreshRooms();
      if (roomId === null || this.current !== roomId) return;
      if (!this.room(roomId)) {
        $('#chat-error').textContent = 'No such chat.';
        return;
      }
      await this.loadHistory(roomId);
      this.markRead(roomId);
      $('#composer-text').focus();
    },

    async loadHistory(roomId, beforeSeq) {
      const query = beforeSeq ? `?limit=50&before_seq=${beforeSeq}` : '?limit=50';
      try {
        const data = await api('GET', `/api/chat/rooms/${roomId}/messages${query}`);
        const list = data.messages || [];
        for (const message of list) this.store(message);
        if (!beforeSeq || list.length < 50) this.older.set(roomId, list.length === 50);
        this.renderConversation(!beforeSeq);
      } catch (err) {
        $('#chat-error').textContent = `Could not load messages: ${err.message}`;
      }
    },

    loadOlder() {
      const roomId = this.current;
      const seqs = Array.from((this.messages.get(roomId) || new Map()).keys());
      if (!seqs.length) return;
      this.loadHistory(roomId, Math.min(...seqs));
    },

    store(message) {
      let byseq = this.messages.get(message.room_id);
      if (!byseq) {
        byseq = new Map();
        this.messages.set(message.room_id, byseq);
      }
      const known = byseq.has(message.seq);
      byseq.set(message.seq, message);
      if (message.client_msg_id) this.pending.delete(message.client_msg_id);
      return !known;
    },

    lastSeq(roomId) {
      const byseq = this.messages.get(roomId);
      return byseq && byseq.size ? Math.max(...byseq.keys()) : 0;
    },

    onMessage(message) {
      if (!message || typeof message.room_id !== 'number') return;
      const fresh = this.store(message);
      const room = this.room(message.room_id);
      if (!room) {
        this.refreshRooms();
        return;
      }
      room.last_message = message;
      this.rooms = [room, ...this.rooms.filter((r) => r !== room)];
      if (fresh && message.sender_id !== S.userId) {
        if (this.viewing(message.room_id)) this.markRead(message.room_id);
        else room.unread_count = (room.unread_count || 0) + 1;
      }
      this.renderRooms();
      if (this.current === message.room_id) this.renderConversation(true);
    },

    onRead(receipt) {
      if (!receipt) return;
      if (receipt.user_id === S.userId) {
        // Read in another window of mine.
        const room = this.room(receipt.room_id);
        if (room && receipt.seq >= this.lastSeq(receipt.room_id)) room.unread_count = 0;
        this.renderRooms();
        return;
      }
      const before = this.partnerRead.get(receipt.room_id) || 0;
      this.partnerRead.set(receipt.room_id, Math.max(before, receipt.seq));
      if (this.current === receipt.room_id) this.renderConversation();
    },

    async markRead(roomId) {
      const seq = this.lastSeq(roomId);
      const room = this.room(roomId);
      if (room) room.unread_count = 0;
      this.renderRooms();
      if (!seq) return;
      const socket = S.chatSocket;
      if (socket && socket.connected) {
        const ack = await request(socket, 'read', { room_id: roomId, seq });
        if (ack.ok) return;
      }
      try {
        await api('POST', `/api/chat/rooms/${roomId}/read`, { seq });
      } catch (err) {
        logError('read', err);
      }
    },

    async send(event) {
      event.preventDefault();
      const box = $('#composer-text');
      const content = box.value.trim();
      if (!content || this.current === null) return;
      box.value = '';
      const pending = { room_id: this.current, content, client_msg_id: newId(), failed: false };
      this.pending.set(pending.client_msg_id, pending);
      this.renderConversation(true);
      await this.deliver(pending);
    },

    async deliver(pending) {
      pending.failed = false;
      const ack = await request(S.chatSocket, 'send', {
        room_id: pending.room_id, content: pending.content, client_msg_id: pending.client_msg_id,
      });
      if (ack.ok && ack.message) {
        this.onMessage(ack.message);
      } else {
        pending.failed = true;
        $('#chat-error').textContent = `Not sent: ${ack.error ? ack.error.message : 'unknown error'}`;
        this.renderConversation();
      }
    },

    async socketConnected() {
      $('#chat-error').textContent = '';
      const roomId = this.current;
      const after = roomId === null ? 0 : this.lastSeq(roomId);
      if (roomId !== null && after) {
        const ack = await request(S.chatSocket, 'sync', { room_id: roomId, after_seq: after });
        if (ack.ok) for (const message of ack.messages || []) this.onMessage(message);
      }
      this.refreshRooms();
    },

    socketRefused(err) {
      logError('chat socket', err);
      if (this.available) $('#chat-error').textContent = 'Live chat is not connected; reload to retry.';
    },

    renderRooms() {
      const list = $('#rooms-list');
      list.replaceChildren(...this.rooms.map((room) => {
        const unread = room.unread_count || 0;
        const last = room.last_message;
        const preview = last ? `${last.sender_id === S.userId ? 'You: ' : ''}${last.content}` : 'No messages yet';
        return el('li', {},
          el('a', {
            class: `room${room.id === this.current ? ' active' : ''}`,
            href: `#/chat/${room.id}`,
            dataset: { roomId: String(room.id), partner: room.partner_id, unread: String(unread) },
          },
          avatar(room.partner_id),
          el('span', { class: 'grow' },
            el('b', {}, room.partner_id),
            el('span', { class: 'preview muted small' }, preview)),
          el('span', { class: 'badge', hidden: unread === 0 }, String(unread))));
      }));
      if (this.available !== false) $('#rooms-empty').hidden = this.rooms.length > 0;
      const total = this.rooms.reduce((sum, room) => sum + (room.unread_count || 0), 0);
      const badge = $('#chat-badge');
      badge.textContent = String(total);
      badge.dataset.count = String(total);
      badge.hidden = total === 0;
    },

    renderConversation(scrollToEnd = false) {
      const roomId = this.current;
      const room = roomId === null ? null : this.room(roomId);
      $('#conversation').dataset.room = roomId === null ? '' : String(roomId);
      $('#room-title').textContent = room ? room.partner_id : 'Pick a chat';
      paintAvatar($('#room-avatar'), room ? room.partner_id : '?');
      $('#room-avatar').hidden = !room;
      $('#composer').hidden = !room;
      $('#load-older').hidden = !room || !this.older.get(roomId);
      const box = $('#messages');
      const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
      const list = $('#message-list');
      if (!room) {
        list.replaceChildren();
        return;
      }
      const read = this.partnerRead.get(roomId) || 0;
      const messages = Array.from((this.messages.get(roomId) || new Map()).values()).sort((a, b) => a.seq - b.seq);
      const items = messages.map((m) => {
        const mine = m.sender_id === S.userId;
        const receipt = mine ? el('span', { class: `receipt${m.seq <= read ? ' read' : ''}` }, m.seq <= read ? '✓✓ read' : '✓ sent') : null;
        return el('li', {
          class: `msg ${mine ? 'mine' : 'theirs'}`,
          dataset: { seq: String(m.seq), sender: m.sender_id, read: mine ? String(m.seq <= read) : '' },
        },
        el('div', { class: 'bubble' }, m.content),
        el('div', { class: 'meta' }, fmtWhen(m.created_at), receipt));
      });
      for (const p of this.pending.values()) {
        if (p.room_id !== roomId) continue;
        const retry = p.failed ? el('button', { type: 'button', class: 'ghost small', onclick: () => this.deliver(p) }, 'retry') : null;
        items.push(el('li', { class: `msg mine pending${p.failed ? ' failed' : ''}`, dataset: { clientMsgId: p.client_msg_id } },
          el('div', { class: 'bubble' }, p.content),
          el('div', { class: 'meta' }, p.failed ? 'not sent ' : 'sending…', retry)));
      }
      list.replaceChildren(...items);
      if (scrollToEnd || nearEnd) box.scrollTop = box.scrollHeight;
    },
  };

  // -------------------------------------------------------------- wiring

  function wire() {
    $('#login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const userId = $('#login-user').value.trim();
      if (userId) devLogin(userId);
    });
    for (const button of $$('#login-view [data-user]')) {
      button.addEventListener('click', () => devLogin(button.dataset.user));
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
    $('#calls-refresh').addEventListener('click', () => Home.refreshCalls());
    $('#schedule-form').addEventListener('submit', (event) => Home.schedule(event));
    $('#gift-form').addEventListener('submit', (event) => Home.sendGift(event));
    $('#gift-kind').addEventListener('change', () => { $('#gift-when').hidden = $('#gift-kind').value !== 'special'; });
    for (const tab of $$('.tab[data-box]')) {
      tab.addEventListener('click', () => {
        S.giftBox = tab.dataset.box;
        for (const other of $$('.tab[data-box]')) other.setAttribute('aria-selected', String(other === tab));
        Home.refreshGifts();
      });
    }
    $('#toggle-mic').addEventListener('click', (event) => S.call && S.call.toggleTrack('audio', event.currentTarget));
    $('#toggle-cam').addEventListener('click', (event) => S.call && S.call.toggleTrack('video', event.currentTarget));
    $('#leave-call').addEventListener('click', () => { location.hash = '#/'; });
    $('#composer').addEventListener('submit', (event) => Chat.send(event));
    $('#composer-text').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        $('#composer').requestSubmit();
      }
    });
    $('#load-older').addEventListener('click', () => Chat.loadOlder());
    document.addEventListener('visibilitychange', () => {
      if (Chat.current !== null && Chat.viewing(Chat.current)) Chat.markRead(Chat.current);
    });
    window.addEventListener('hashchange', route);
  }

  function boot() {
    wire();
    try {
      const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
      if (saved && saved.token && saved.userId) {
        S.token = saved.token;
        S.userId = saved.userId;
        renderWho();
        connectSockets();
        Chat.refreshRooms();
      }
    } catch (err) {
      sessionStorage.removeItem(SESSION_KEY);
    }
    renderWho();
    renderConnection();
    route();
  }

  // A handle for the curious (and for tests): the live call session.
  window.giftcall = {
    get call() { return S.call; },
    get user() { return S.userId; },
    get token() { return S.token; },  // push.js posts the push subscription with it
    restartIce: () => S.call && S.call.restartIce('requested'),
  };

  boot();
})();
