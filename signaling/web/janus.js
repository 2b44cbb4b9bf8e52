/* GiftCall: a small adapter for Janus's VideoRoom over Janus's HTTP API.
 *
 * Used by call.js when the join ack carries `janus` (SIGNALING_MEDIA=janus,
 * docs/media.md): {url, room, token, feed_id}. No library: the HTTP API is four
 * requests and a long poll (https://janus.conf.meetecho.com/docs/rest.html):
 *
 *   POST <url>                    {janus: "create"}           -> session id
 *   POST <url>/<session>          {janus: "attach", plugin}   -> handle id
 *   POST <url>/<session>/<handle> {janus: "message", body, jsep?}
 *                                 {janus: "trickle", candidate}
 *   GET  <url>/<session>?maxev=N  events (answers to messages, notifications,
 *                                 Janus's candidates); also keeps the session alive
 *
 * What it does with them (https://janus.conf.meetecho.com/docs/videoroom.html):
 * join the call's room as a publisher under the user's feed id with the
 * user's token, publish the camera and microphone (configure + offer), and
 * subscribe to the other publisher in the room (join as a subscriber with the
 * publisher's private_id, answer Janus's offer, start). When the partner's feed
 * goes (leaving, unpublished) the subscription goes; when it comes back (a new
 * `publishers` notice) it is subscribed again. The server destroys the room at
 * the limit: Janus hangs up every peer connection, whatever the page does.
 *
 *   const room = new JanusRoom(ack.janus, {iceServers, localStream, onRemote, onState});
 *   await room.start();  ...  await room.stop();
 *
 * `room.pc` is the peer connection that receives the partner's media.
 */

const PLUGIN = 'janus.plugin.videoroom';
const POLL_EVENTS = 10;
const ANSWER_TIMEOUT_MS = 10000;

function transactionId() {
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

export class JanusRoom {
  /**
   * @param {{url: string, room: number, token: string, feed_id: number}} info
   * @param {{iceServers?: RTCIceServer[], localStream?: MediaStream|null,
   *          onRemote?: (stream: MediaStream|null, pc: RTCPeerConnection|null) => void,
   *          onState?: (state: string) => void, onError?: (where: string, err: any) => void}} options
   */
  constructor(info, options = {}) {
    this.url = info.url.replace(/\/+$/, '');
    this.room = info.room;
    this.token = info.token;
    this.feedId = info.feed_id;
    this.iceServers = options.iceServers || [];
    this.localStream = options.localStream || null;
    this.onRemote = options.onRemote || (() => {});
    this.onState = options.onState || (() => {});
    this.onError = options.onError || ((where, err) => console.warn('janus', where, err));
    this.session = null;
    this.publisherHandle = null;
    this.privateId = null;
    this.publisherPc = null;
    this.subscriberHandle = null;
    this.subscriberFeed = null;
    this.pc = null; // the subscriber: the partner's media
    this.stopped = false;
    this.waiting = new Map(); // transaction -> {resolve, reject, timer}
    this.handlers = new Map(); // handle -> notice handler
  }

  // ----------------------------------------------------------- transport

  async post(path, body) {
    const response = await fetch(this.url + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ transaction: transactionId(), ...body }),
    });
    const answer = await response.json();
    if (answer.janus === 'error') throw new Error(`Janus ${body.janus}: ${answer.error.code} ${answer.error.reason}`);
    return answer;
  }

  /** A plugin message; resolves with Janus's event (synchronous or not). */
  async message(handle, body, jsep) {
    const transaction = transactionId();
    const event = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(transaction);
        reject(new Error(`Janus did not answer ${body.request}`));
      }, ANSWER_TIMEOUT_MS);
      this.waiting.set(transaction, { resolve, reject, timer });
    });
    const request = { janus: 'message', transaction, body };
    if (jsep) request.jsep = jsep;
    let answer;
    try {
      answer = await this.post(`/${this.session}/${handle}`, request);
    } catch (err) {
      const waiter = this.waiting.get(transaction);
      if (waiter) clearTimeout(waiter.timer);
      this.waiting.delete(transaction);
      throw err;
    }
    if (answer.janus !== 'ack') this.settle(transaction, answer);
    const result = await event;
    const data = (result.plugindata && result.plugindata.data) || {};
    if (data.error_code) throw new Error(`VideoRoom ${body.request}: ${data.error_code} ${data.error}`);
    return result;
  }

  settle(transaction, event) {
    const waiter = this.waiting.get(transaction);
    if (!waiter) return false;
    this.waiting.delete(transaction);
    clearTimeout(waiter.timer);
    waiter.resolve(event);
    return true;
  }

  async poll() {
    while (!this.stopped) {
      let events;
      try {
        const response = await fetch(`${this.url}/${this.session}?maxev=${POLL_EVENTS}&rid=${Date.now()}`);
        events = await response.json();
      } catch (err) {
        if (this.stopped) return;
        await new Promise((resolve) => { setTimeout(resolve, 500); });
        continue;
      }
      for (const event of Array.isArray(events) ? events : [events]) {
        if (this.stopped) return;
        if (event.janus === 'error' && event.error && event.error.code === 458) return; // session gone
        if (event.transaction && event.janus === 'event' && this.settle(event.transaction, event)) continue;
        const handler = this.handlers.get(event.sender);
        if (handler) handler(event);
      }
    }
  }

  async attach(onNotice) {
    const answer = await this.post(`/${this.session}`, { janus: 'attach', plugin: PLUGIN });
    const handle = answer.data.id;
    this.handlers.set(handle, onNotice);
    return handle;
  }

  /** Send our candidates to Janus as they come, then say we are done. */
  trickle(pc, handle) {
    pc.onicecandidate = ({ candidate }) => {
      if (this.stopped) return;
      const body = candidate && candidate.candidate
        ? { candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex }
        : { completed: true };
      if (!candidate || candidate.candidate) {
        this.post(`/${this.session}/${handle}`, { janus: 'trickle', candidate: body })
          .catch((err) => this.onError('trickle', err));
      }
    };
  }

  /** Janus's own trickled candidates (usually already in its SDP). */
  static addCandidate(pc, event) {
    const candidate = event.candidate;
    if (!pc || !candidate) return;
    const done = candidate.completed ? pc.addIceCandidate() : pc.addIceCandidate(candidate);
    done.catch(() => {}); // a stale generation: nothing to do
  }

  newPc() {
    return new RTCPeerConnection({ iceServers: this.iceServers });
  }

  // ------------------------------------------------------------- the room

  async start() {
    const created = await this.post('', { janus: 'create' });
    this.session = created.data.id;
    this.poll();
    this.publisherHandle = await this.attach((event) => this.publisherNotice(event));
    const joined = await this.message(this.publisherHandle, {
      request: 'join', ptype: 'publisher', room: this.room, id: this.feedId, token: this.token,
    });
    const data = joined.plugindata.data;
    this.privateId = data.private_id;
    if (this.localStream) await this.publish();
    this.publishersListed(data.publishers);
  }

  async publish() {
    const pc = this.newPc();
    this.publisherPc = pc;
    for (const track of this.localStream.getTracks()) pc.addTrack(track, this.localStream);
    this.trickle(pc, this.publisherHandle);
    await pc.setLocalDescription();
    const event = await this.message(
      this.publisherHandle,
      { request: 'configure', audio: true, video: true },
      { type: pc.localDescription.type, sdp: pc.localDescription.sdp },
    );
    if (this.stopped) return;
    await pc.setRemoteDescription(event.jsep);
  }

  publisherNotice(event) {
    if (event.janus === 'trickle') {
      JanusRoom.addCandidate(this.publisherPc, event);
      return;
    }
    if (event.janus === 'hangup') {
      this.onState('hangup');
      return;
    }
    const data = (event.plugindata && event.plugindata.data) || {};
    if (data.videoroom === 'destroyed' || data.leaving === 'ok') {
      this.onState('closed'); // the room is gone or we were kicked: the call is over for us
      return;
    }
    if (data.publishers) this.publishersListed(data.publishers);
    const gone = data.unpublished !== undefined ? data.unpublished : data.leaving;
    if (gone !== undefined && gone === this.subscriberFeed) this.unsubscribe();
  }

  /** Subscribe to the other publisher, if there is one and we are not already. */
  publishersListed(publishers) {
    const partner = (publishers || []).find((p) => p.id !== this.feedId);
    if (!partner || partner.id === this.subscriberFeed) return;
    this.subscribe(partner.id).catch((err) => { if (!this.stopped) this.onError('subscribe', err); });
  }

  async subscribe(feed) {
    this.unsubscribe();
    this.subscriberFeed = feed;
    const handle = await this.attach((event) => {
      if (event.janus === 'trickle') JanusRoom.addCandidate(handle === this.subscriberHandle ? this.pc : null, event);
    });
    this.subscriberHandle = handle;
    const pc = this.newPc();
    this.pc = pc;
    const stream = new MediaStream();
    pc.ontrack = ({ track }) => {
      if (pc !== this.pc) return;
      stream.addTrack(track);
      this.onRemote(stream, pc);
    };
    pc.onconnectionstatechange = () => {
      if (pc === this.pc) this.onState(pc.connectionState);
    };
    this.trickle(pc, handle);
    const offer = await this.message(handle, {
      request: 'join', ptype: 'subscriber', room: this.room, streams: [{ feed }],
      private_id: this.privateId, token: this.token,
    });
    if (pc !== this.pc) return;
    await pc.setRemoteDescription(offer.jsep);
    await pc.setLocalDescription();
    await this.message(handle, { request: 'start' }, { type: 'answer', sdp: pc.localDescription.sdp });
  }

  unsubscribe() {
    const pc = this.pc;
    const handle = this.subscriberHandle;
    this.pc = null;
    this.subscriberHandle = null;
    this.subscriberFeed = null;
    if (pc) {
      pc.ontrack = pc.onconnectionstatechange = pc.onicecandidate = null;
      pc.close();
      this.onRemote(null, null);
    }
    if (handle && !this.stopped) {
      this.handlers.delete(handle);
      this.post(`/${this.session}/${handle}`, { janus: 'detach' }).catch(() => {});
    }
  }

  /** Leave Janus: close both peer connections and destroy the session. */
  async stop() {
    if (this.stopped) return;
    this.unsubscribe();
    this.stopped = true;
    for (const waiter of this.waiting.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error('stopped'));
    }
    this.waiting.clear();
    if (this.publisherPc) {
      this.publisherPc.onicecandidate = null;
      this.publisherPc.close();
      this.publisherPc = null;
    }
    if (this.session) {
      const session = this.session;
      this.session = null;
      try {
        await this.post(`/${session}`, { janus: 'destroy' });
      } catch (err) {
        // Janus may be gone already: it drops the session on its own timeout.
      }
    }
  }
}
