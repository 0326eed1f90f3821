// One RTCPeerConnection per remote peer, negotiated through the Switchboard client.
//
// Who makes the offer follows palava-client's rule, so that this page and unmodified palava-client
// pages can call each other: the newcomer offers, unless the newcomer says it is Chrome
// (`status.user_agent === 'chrome'`), in which case the member already in the room offers. Both sides
// know the newcomer's declared user agent, so exactly one of them offers.

/** The user agent name palava-client would report for this browser (only Chrome changes the rule). */
export function browserName(userAgent = navigator.userAgent) {
  if (/Firefox\//.test(userAgent) && !/FxiOS/.test(userAgent)) return 'firefox';
  // Every browser on iOS is WebKit underneath, whatever its name.
  if (/iPhone|iPad|iPod/.test(userAgent)) return 'safari';
  if (/(Chrome|Chromium|Edg)\//.test(userAgent)) return 'chrome';
  if (/Safari\//.test(userAgent)) return 'safari';
  return 'unknown';
}

/** Whether this side offers to `peer`: see the rule above. */
export function shouldOffer({ weJoinedLast, ownUserAgent, peerStatus }) {
  const newcomerAgent = weJoinedLast ? ownUserAgent : peerStatus && peerStatus.user_agent;
  const newcomerOffers = newcomerAgent !== 'chrome';
  return weJoinedLast ? newcomerOffers : !newcomerOffers;
}

export class PeerCall {
  /**
   * @param {object} o
   * @param {import('/sdk/switchboard.js').SwitchboardClient} o.client
   * @param {string} o.peerId
   * @param {RTCIceServer[]} o.iceServers
   * @param {MediaStream|null} o.localStream
   * @param {(stream: MediaStream) => void} o.onStream remote media arrived
   * @param {(state: string) => void} o.onState RTCPeerConnection.connectionState changed
   * @param {(error: Error) => void} o.onError
   */
  constructor({ client, peerId, iceServers, localStream, onStream, onState, onError }) {
    this.client = client;
    this.peerId = peerId;
    this.onError = onError;
    // Signaling steps run one after another: a candidate must not be added before the description it
    // belongs to has been applied, and applying descriptions is asynchronous.
    this.steps = Promise.resolve();
    this.pc = new RTCPeerConnection({ iceServers });
    this.localStream = localStream;
    if (localStream) {
      for (const track of localStream.getTracks()) this.pc.addTrack(track, localStream);
    }
    this.pc.onicecandidate = (event) => {
      if (event.candidate) this.signal(() => client.sendIceCandidate(peerId, event.candidate));
    };
    let remote = null;
    this.pc.ontrack = (event) => {
      const stream = event.streams[0] || (remote ||= new MediaStream());
      if (!event.streams[0]) stream.addTrack(event.track);
      onStream(stream);
    };
    this.pc.onconnectionstatechange = () => onState(this.pc.connectionState);
    onState(this.pc.connectionState);
  }

  /** Makes the offer (when this side is the offerer). */
  offer() {
    this.step(async () => {
      if (!this.localStream) {
        // Nothing to send, but still ask for the peer's audio and video.
        this.pc.addTransceiver('audio', { direction: 'recvonly' });
        this.pc.addTransceiver('video', { direction: 'recvonly' });
      }
      await this.pc.setLocalDescription(await this.pc.createOffer());
      this.signal(() => this.client.sendOffer(this.peerId, this.pc.localDescription));
    });
  }

  /** Applies the peer's offer and answers it. */
  handleOffer(description) {
    this.step(async () => {
      await this.pc.setRemoteDescription(description);
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      this.signal(() => this.client.sendAnswer(this.peerId, this.pc.localDescription));
    });
  }

  /** Applies the peer's answer to our offer. */
  handleAnswer(description) {
    this.step(() => this.pc.setRemoteDescription(description));
  }

  /** Adds one of the peer's ICE candidates. */
  handleCandidate(candidate) {
    this.step(() => this.pc.addIceCandidate(candidate));
  }

  /** Hangs up. */
  close() {
    this.pc.onicecandidate = this.pc.ontrack = this.pc.onconnectionstatechange = null;
    this.pc.close();
  }

  step(fn) {
    this.steps = this.steps.then(fn).catch((e) => this.onError(e));
  }

  // Sending fails only while the signaling connection is down; the client then reconnects and the
  // call is rebuilt with the peer's new id, so the message would be useless anyway.
  signal(send) {
    try {
      send();
    } catch (e) {
      this.onError(e);
    }
  }
}
