/* GiftCall web client: one RTCPeerConnection to the partner, for one
 * negotiation, with perfect negotiation (W3C WebRTC, section 10.7) and ICE
 * restarts. call.js makes a new one on every join and partner_joined.
 *
 * Politeness comes from the server's role: the offerer (who joined second)
 * is impolite, the one who waited is polite. The offerer opens each
 * negotiation; the polite side holds back its own first offer until it has
 * answered (see negotiate()).
 */

import { logError } from './log.js';

/** How long a dropped connection may stay 'disconnected' before an ICE restart. */
const DISCONNECTED_GRACE_MS = 2500;

/** An RTCIceCandidate as the protocol's `candidate` signal carries it. */
function candidateJson(candidate) {
  const json = candidate.toJSON();
  const out = { candidate: json.candidate };
  for (const key of ['sdpMid', 'sdpMLineIndex', 'usernameFragment']) {
    if (json[key] !== undefined && json[key] !== null) out[key] = json[key];
  }
  return out;
}

/**
 * @typedef {object} PeerEvents what the peer connection tells the call page
 * @property {(signal: object) => void} send  a signal for the partner
 * @property {(track: MediaStreamTrack, streams: MediaStream[]) => void} track  the partner's media
 * @property {(name: 'iceState'|'pcState'|'signalingState', value: string) => void} state  mirrored into data-*
 * @property {(name: 'glare'|'iceRestarts') => void} count  a counter for data-*
 * @property {(why: string) => void} restarting  an ICE restart began
 * @property {() => void} restarted  the restart is over: negotiated and ICE connected again
 */

export class PeerLink {
  /**
   * @param {{iceServers: RTCIceServer[], localStream: MediaStream|null, polite: boolean}} options
   * @param {PeerEvents} events
   */
  constructor({ iceServers, localStream, polite }, events) {
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    this.polite = polite;
    this.events = events;
    this.closed = false;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.answered = false; // this peer connection has answered an offer
    this.restarting = false;
    this.disconnectTimer = null;
    if (localStream) {
      for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
    } else if (!polite) {
      // Nothing to send, but the offer must still ask for the partner's media.
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
    }
    pc.ontrack = ({ track, streams }) => events.track(track, streams);
    pc.onnegotiationneeded = () => this.negotiate();
    pc.onicecandidate = ({ candidate }) => {
      if (!candidate) events.send({ type: 'end-of-candidates' });
      else if (candidate.candidate) events.send({ type: 'candidate', candidate: candidateJson(candidate) });
    };
    pc.oniceconnectionstatechange = () => {
      events.state('iceState', pc.iceConnectionState);
      if (pc.iceConnectionState === 'failed') this.restartIce('ice failed');
      this.restartDone();
    };
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      clearTimeout(this.disconnectTimer);
      events.state('pcState', state);
      if (state === 'disconnected') {
        // Often transient; restart ICE only if it does not come back by itself.
        this.disconnectTimer = setTimeout(() => {
          if (!this.closed && pc.connectionState === 'disconnected') this.restartIce('disconnected');
        }, DISCONNECTED_GRACE_MS);
      } else if (state === 'failed') {
        this.restartIce('failed');
      }
    };
    pc.onsignalingstatechange = () => {
      events.state('signalingState', pc.signalingState);
      this.restartDone();
    };
    events.state('pcState', pc.connectionState);
  }

  async negotiate() {
    // The protocol has the offerer open each negotiation; the polite side
    // answers it first and only then may offer (an ICE restart, say). An
    // early polite offer would only cross the offerer's, and rolling back
    // an offer whose ICE gathering has just begun leaves Chromium with no
    // candidates for its answer. The flag stays set: Chromium fires again
    // once the answer is applied, if anything is still to negotiate.
    if (this.polite && !this.answered) return;
    const pc = this.pc;
    try {
      this.makingOffer = true;
      await pc.setLocalDescription();
      if (this.closed) return;
      this.events.send({ type: pc.localDescription.type, sdp: pc.localDescription.sdp });
    } catch (err) {
      logError('negotiation', err);
    } finally {
      this.makingOffer = false;
    }
  }

  /** Apply the partner's signal: perfect negotiation (W3C WebRTC, section 10.7). */
  async handleSignal(message) {
    const pc = this.pc;
    try {
      if (message.type === 'offer' || message.type === 'answer') {
        const offerCollision = message.type === 'offer'
          && (this.makingOffer || pc.signalingState !== 'stable');
        this.ignoreOffer = !this.polite && offerCollision;
        if (offerCollision) this.events.count('glare');
        if (this.ignoreOffer) return;
        if (message.type === 'answer' && pc.signalingState !== 'have-local-offer') return; // stale
        await pc.setRemoteDescription({ type: message.type, sdp: message.sdp });
        if (message.type === 'offer') {
          await pc.setLocalDescription();
          if (this.closed) return;
          this.answered = true;
          this.events.send({ type: 'answer', sdp: pc.localDescription.sdp });
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
    if (this.closed || this.pc.signalingState === 'closed') return;
    this.events.count('iceRestarts');
    this.restarting = true;
    this.events.restarting(why);
    this.pc.restartIce();
  }

  /** The restart is over once negotiation settled and ICE is connected again. */
  restartDone() {
    const pc = this.pc;
    if (!this.restarting || pc.signalingState !== 'stable') return;
    if (!['connected', 'completed'].includes(pc.iceConnectionState)) return;
    this.restarting = false;
    this.events.restarted();
  }

  /** Close for good: no event of this peer connection reaches the page after this. */
  close() {
    this.closed = true;
    clearTimeout(this.disconnectTimer);
    const pc = this.pc;
    pc.ontrack = pc.onnegotiationneeded = pc.onicecandidate = null;
    pc.oniceconnectionstatechange = pc.onconnectionstatechange = pc.onsignalingstatechange = null;
    pc.close();
  }
}
