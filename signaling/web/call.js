/* GiftCall web client: the call page (#/call/<id>), its state machine.
 *
 * A CallSession owns local media, the call's own /call connection
 * (connection.js: call_id in the handshake query), the protocol's call
 * events, and the media path: a fresh PeerLink (peer.js) per negotiation,
 * or with SIGNALING_MEDIA=janus the call's Janus room (janus.js). What the
 * page shows is drawn by call-view.js. The page never ends a call itself:
 * it waits for `ended`.
 */

import { api } from './api.js';
import { refreshCallsSoon } from './call-list.js';
import {
  callView, remoteVideo, renderClocks, renderStage, resetCallView, showCallError, showEnded,
  showLocalVideo, showPartner, showPhaseLabel, showQuestion,
} from './call-view.js';
import { openCallSocket, releaseCallSocket, request } from './connection.js';
import { el } from './dom.js';
import { logError } from './log.js';
import { PeerLink } from './peer.js';
import { session } from './session.js';

/** The /call events of one call that reach its page. */
const CALL_EVENTS = ['partner_joined', 'partner_left', 'signal', 'countdown', 'live', 'ended'];

/** The call page's session, while one is open. */
let current = null;

/** The open call page's session, or null. */
export function currentCall() {
  return current;
}

/** Show call `callId`: keep its session if it is already open, else start one. */
export function openCall(callId) {
  if (current && current.callId === callId && !current.closed) return;
  closeCall();
  current = new CallSession(callId);
  current.start();
}

/** Leave the call page, if one is open. */
export function closeCall() {
  if (current) current.close();
  current = null;
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
    this.view = callView();
    this.phase = 'idle';
    this.phaseLog = [];
    this.closed = false;
    this.over = false;
    this.mediaReady = false;
    this.needJoin = true;
    this.joined = false;
    this.accepting = false; // a join ack arrived: signals from now on are for this negotiation
    this.peer = null; // the PeerLink of this negotiation
    this.pc = null; // its RTCPeerConnection (with Janus: the one receiving the partner)
    this.janus = null; // the call's Janus room (janus.js), with SIGNALING_MEDIA=janus
    this.polite = false;
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
    this.note = '';
  }

  /** Handlers run one at a time, in arrival order. */
  enqueue(task) {
    this.queue = this.queue.then(task).catch((err) => logError('call', err));
    return this.queue;
  }

  async start() {
    resetCallView(this.callId, Object.keys(this.counters));
    this.setPhase('media');
    this.openSocket();
    await this.openMedia();
    if (this.closed) return;
    this.mediaReady = true;
    this.ticker = setInterval(() => this.tick(), 200);
    this.maybeJoin();
  }

  async openMedia() {
    try {
      this.localStream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
      if (this.closed) {
        this.stopMedia();
        return;
      }
      showLocalVideo(this.localStream);
      this.view.dataset.localMedia = 'on';
    } catch (err) {
      logError('getUserMedia', err);
      this.view.dataset.localMedia = 'off';
      this.mediaError = `No camera or microphone (${err.name || err}): you can still see and hear your partner.`;
      showCallError(this.mediaError);
    }
  }

  stopMedia() {
    if (this.localStream) for (const track of this.localStream.getTracks()) track.stop();
    this.localStream = null;
    showLocalVideo(null);
  }

  // ----- socket

  /** The call's own /call connection; each (re)connect joins again. */
  openSocket() {
    const socket = openCallSocket(this.callId);
    this.socket = socket;
    socket.on('connect', () => this.maybeJoin());
    socket.on('disconnect', () => this.socketLost());
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
        refreshCallsSoon();
        socket.disconnect();
      });
    } else {
      socket.disconnect();
    }
    releaseCallSocket(socket);
  }

  maybeJoin() {
    const socket = this.socket;
    if (this.closed || this.over || !this.mediaReady || !this.needJoin || !socket || !socket.connected) return;
    this.needJoin = false;
    this.enqueue(() => this.join());
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
    const ack = await request(this.socket, 'join', { call_id: this.callId }, 10000, (answer) => {
      // Synchronously, so that no signal slips between the ack and this flag.
      if (answer.ok) this.accepting = true;
    });
    if (this.closed) return;
    if (!ack.ok) {
      await this.joinFailed(ack.error || { code: 'unavailable', message: 'join failed' });
      return;
    }
    this.joined = true;
    this.setNote('');
    showCallError(this.mediaError);
    const call = ack.call;
    this.partnerId = call.caller_id === session.userId ? call.callee_id : call.caller_id;
    showPartner(this.partnerId);
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
    showCallError(`${prefix}${error.message} `, retry);
    this.setNote(error.code === 'too_early' ? 'The call room is not open yet.' : 'Could not join the call.');
  }

  // ----- server events (on_<event>, called through receive())

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
    showQuestion(payload.question && payload.question.text);
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
    showEnded(reason, message);
    this.setPhase('ended');
    this.tick();
    refreshCallsSoon();
  }

  // ----- the media path

  /** A fresh peer connection for a new negotiation (peer.js). */
  newPeer() {
    if (this.janus) return; // Janus: the room adapter owns the peer connections
    this.closePeer();
    this.count('negotiations');
    this.view.dataset.polite = String(this.polite);
    const peer = new PeerLink({ iceServers: this.iceServers, localStream: this.localStream, polite: this.polite }, {
      send: (signal) => this.send(signal),
      track: (track, streams) => this.showRemoteTrack(track, streams),
      state: (name, value) => this.peerState(name, value),
      count: (name) => this.count(name),
      restarting: (why) => this.setNote(`Reconnecting media (${why})…`),
      restarted: () => this.setNote(''),
    });
    this.peer = peer;
    this.pc = peer.pc;
  }

  showRemoteTrack(track, streams) {
    const video = remoteVideo();
    const stream = streams[0] || video.srcObject || new MediaStream();
    if (!streams[0]) stream.addTrack(track);
    if (video.srcObject !== stream) video.srcObject = stream;
    this.render();
  }

  /** The peer connection's states, mirrored into data-pc-state, data-ice-state and data-signaling-state. */
  peerState(name, value) {
    this.view.dataset[name] = value;
    if (name !== 'pcState') return;
    if (value === 'connected') {
      this.count('connected');
      this.reportConnected();
    }
    this.render();
  }

  async handleSignal(message) {
    if (this.over) return;
    if (!this.peer) {
      if (message.type !== 'offer') return; // nothing to apply it to
      this.newPeer();
      if (!this.peer) return;
    }
    await this.peer.handleSignal(message);
  }

  /** A new offer with fresh ICE credentials, through perfect negotiation. */
  restartIce(why) {
    if (this.peer && !this.over) this.peer.restartIce(why);
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
    import('./janus.js').then(({ JanusRoom }) => {
      if (room.stopped) return null;
      room.impl = new JanusRoom(ack.janus, {
        iceServers: this.iceServers,
        localStream: this.localStream,
        onRemote: (stream, pc) => {
          if (!mine()) return;
          this.pc = pc;
          remoteVideo().srcObject = stream;
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
    const { peer, pc } = this;
    this.peer = null;
    this.pc = null;
    if (peer) peer.close(); // with Janus, room.stop() closed its own
    if (pc) {
      this.view.dataset.pcState = 'closed';
      this.view.dataset.iceState = 'closed';
    }
    remoteVideo().srcObject = null;
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
    if (current === this) current = null;
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
    showPhaseLabel(phase);
    this.render();
    this.tick();
  }

  render() {
    if (!this.closed) renderStage(this);
  }

  tick() {
    renderClocks(this);
  }
}

/** The call page's buttons. */
export function wireCallPage() {
  const toggle = (kind) => (event) => { if (current) current.toggleTrack(kind, event.currentTarget); };
  document.getElementById('toggle-mic').addEventListener('click', toggle('audio'));
  document.getElementById('toggle-cam').addEventListener('click', toggle('video'));
  document.getElementById('leave-call').addEventListener('click', () => { location.hash = '#/'; });
}
