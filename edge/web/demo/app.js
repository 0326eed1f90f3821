// The demo page: a room from the URL (/r/<room>) or the lobby form, camera and microphone, a tile per
// remote peer, text chat over `message` events, and the connection's state in plain sight. On an edge in
// hosted mode (--auth tokens) it joins with the join token in its URL: /r/<room>?token=<JWT>.
import { SwitchboardClient, defaultUrl, mergeIceServers } from '/sdk/switchboard.js';
import { PeerCall, browserName, shouldOffer } from '/call.js';

const $ = (id) => document.getElementById(id);
const NAME_KEY = 'switchboard-demo-name';
const OWN_AGENT = browserName();

// ---- which room, and who we are ----

function roomFromPath() {
  const match = /^\/r\/([^/]+)$/.exec(location.pathname);
  if (!match) return null;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return null;
  }
}

// Per tab (sessionStorage), so that two tabs of one browser are two people.
function ownName() {
  const fromUrl = new URLSearchParams(location.search).get('name');
  const name = (fromUrl || sessionStorage.getItem(NAME_KEY) || '').trim()
    || `Guest ${Math.floor(1000 + Math.random() * 9000)}`;
  sessionStorage.setItem(NAME_KEY, name);
  return name;
}

function roomUrl(room) {
  return `${location.origin}/r/${encodeURIComponent(room)}`;
}

// The join token of hosted mode, from `?token=`. It stays out of the share link: it is this person's.
function ownToken() {
  return new URLSearchParams(location.search).get('token') || null;
}

// The `name` claim of a token: the edge shows it to the others instead of the page's name, so the page
// shows it too. Read without checking the signature, for display only (the edge checks it).
function tokenName(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
    return typeof claims.name === 'string' && claims.name.trim() ? claims.name : null;
  } catch {
    return null;
  }
}

function showLobby() {
  $('lobby').hidden = false;
  $('lobby-room').value = `room-${Math.random().toString(36).slice(2, 7)}`;
  $('lobby-name').value = sessionStorage.getItem(NAME_KEY) || '';
  $('lobby-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('lobby-name').value.trim();
    sessionStorage.setItem(NAME_KEY, name);
    const token = ownToken();
    location.assign(`${roomUrl($('lobby-room').value.trim())}?name=${encodeURIComponent(name)}` +
      (token ? `&token=${encodeURIComponent(token)}` : ''));
  });
}

// ---- the call ----

const state = {
  client: null,
  room: null,
  name: null,
  token: null,
  localStream: null,
  /** From /config.json (--ice-server). */
  configIceServers: [],
  /** What new calls use: configIceServers, merged with those of the last joined_room. */
  iceServers: [],
  /** peerId -> {call, tile, name, status} */
  peers: new Map(),
  /** Peers that left: ids are never reused, so anything later from them is stale. */
  gone: new Set(),
  micOn: true,
  cameraOn: true,
  unread: 0,
};

// Shown to the tests and to curious developers (window.switchboardDemo.describe() in the console).
window.switchboardDemo = {
  state,
  describe: () => [...state.peers].map(([peerId, p]) => ({
    peerId, name: p.name, connectionState: p.call.pc.connectionState,
    iceConnectionState: p.call.pc.iceConnectionState, signalingState: p.call.pc.signalingState,
  })),
};

let bannerTimer = null;

// One message at a time above the tiles; `info` ones go away by themselves.
function banner(text, action) {
  clearTimeout(bannerTimer);
  if (text && (action?.kind || 'info') === 'info') bannerTimer = setTimeout(() => banner(''), 4000);
  $('banner').hidden = !text;
  $('banner').dataset.kind = action?.kind || 'info';
  $('banner-text').textContent = text || '';
  const button = $('banner-action');
  button.hidden = !action?.label;
  button.textContent = action?.label || '';
  button.onclick = action?.run || null;
}

// The connection's state, shown once there is one: the lobby has tried nothing, so it shows none.
function setConnection(label, stateName) {
  const pill = $('connection');
  pill.textContent = label;
  pill.dataset.state = stateName;
  pill.hidden = false;
}

async function startCall(room) {
  state.room = room;
  state.token = ownToken();
  state.name = (state.token && tokenName(state.token)) || ownName();
  document.title = `${room} · Switchboard`;
  $('room-label').textContent = room;
  $('call').hidden = false;
  $('local-name').textContent = state.name;
  $('share-link').textContent = roomUrl(room);
  $('share-link').href = roomUrl(room);
  wireControls();
  setConnection('connecting…', 'connecting');

  const [config, media] = await Promise.all([loadConfig(), openMedia()]);
  state.configIceServers = config.ice_servers || [];
  state.iceServers = state.configIceServers;
  state.localStream = media;
  showLocalMedia();
  join();
}

async function loadConfig() {
  try {
    const response = await fetch('/config.json', { cache: 'no-cache' });
    if (response.ok) return await response.json();
  } catch {
    // Without the configuration the call still works on one network (host candidates).
  }
  return {};
}

async function openMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    banner('This page cannot use the camera: open it over HTTPS, or as http://127.0.0.1 or http://localhost. ' +
      'You can still watch and chat.', { kind: 'warning' });
    return null;
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: 640 }, height: { ideal: 480 } } });
  } catch (error) {
    banner(`No camera or microphone (${error.name}: ${error.message}). You can still watch and chat.`, { kind: 'warning' });
    return null;
  }
}

function showLocalMedia() {
  const video = $('local-video');
  video.srcObject = state.localStream;
  const has = (kind) => Boolean(state.localStream?.getTracks().some((t) => t.kind === kind));
  $('toggle-mic').disabled = !has('audio');
  $('toggle-camera').disabled = !has('video');
  state.micOn = has('audio');
  state.cameraOn = has('video');
  renderOwnMedia();
}

function join() {
  const client = new SwitchboardClient(defaultUrl(), state.token ? { token: state.token } : {});
  state.client = client;
  client.on('state', ({ state: s }) => {
    const labels = { idle: 'offline', connecting: 'connecting…', open: 'online', reconnecting: 'reconnecting…', closed: 'left' };
    setConnection(labels[s] || s, s);
  });
  client.on('reconnecting', ({ attempt, delay, error }) => {
    banner(`Disconnected from the server. Reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${attempt}; ` +
      `${error.message}).`, { kind: 'warning' });
  });
  client.on('shutdown', () => banner('The server is restarting. Reconnecting…', { kind: 'warning' }));
  client.on('joined', ({ peers, iceServers, rejoin }) => {
    // joined_room may carry ICE servers (TURN credentials minted for this join): they come first, and
    // /config.json's servers (STUN, say) stay for what they do not cover. Calls made from now on use them.
    state.iceServers = mergeIceServers(iceServers, state.configIceServers);
    if (rejoin) banner('Reconnected.', { kind: 'info' });
    for (const peer of peers) addPeer(peer, wantOffer(peer, true));
  });
  client.on('peer_joined', (peer) => addPeer(peer, wantOffer(peer, false)));
  client.on('peer_left', ({ peerId }) => {
    state.gone.add(peerId);
    removePeer(peerId);
  });
  client.on('peer_status', ({ peerId, status }) => {
    const peer = state.peers.get(peerId);
    if (peer && status.name) setPeerName(peer, status.name);
  });
  // In a cluster a newcomer's offer travels edge to edge, and new_peer from the room's router: the offer
  // can come first. Answer it at once; new_peer then only fills in the name.
  // A leaver's last messages may also come after its peer_left: those are dropped.
  client.on('offer', ({ peerId, description }) => {
    if (!state.gone.has(peerId)) addPeer({ peerId, status: {} }, false).call.handleOffer(description);
  });
  client.on('answer', ({ peerId, description }) => state.peers.get(peerId)?.call.handleAnswer(description));
  client.on('ice_candidate', ({ peerId, candidate }) => state.peers.get(peerId)?.call.handleCandidate(candidate));
  client.on('message', ({ peerId, data }) => onPeerMessage(peerId, data));
  client.on('error', (error) => banner(`Server: ${error.message} (${error.code})`, { kind: 'error' }));

  client.join(state.room, { name: state.name, user_agent: OWN_AGENT }).then(
    () => { if ($('banner').dataset.kind !== 'warning') banner(''); },
    (error) => {
      setConnection('offline', 'idle');
      banner(`Could not join "${state.room}": ${error.message} (${error.code}).${refusalHint(error)}`, {
        kind: 'error', label: 'Try again', run: () => { banner(''); client.close(); join(); },
      });
    },
  );
}

// Browsers do not say why a WebSocket upgrade was refused; in hosted mode the usual reason is the token.
function refusalHint(error) {
  if (!['connection_failed', 'unauthorized', 'forbidden'].includes(error.code)) return '';
  return state.token
    ? ' The server may have refused the token (expired, or not for this page\'s origin); its ' +
      'switchboard_connections_refused_total metric says why.'
    : ' If this server requires join tokens (hosted mode), open this page with ?token=<join token>.';
}

function wantOffer(peer, weJoinedLast) {
  return shouldOffer({ weJoinedLast, ownUserAgent: OWN_AGENT, peerStatus: peer.status });
}

// The peer's entry, made (with a tile and a call, offering if `offer`) if it is new.
function addPeer({ peerId, status }, offer) {
  const known = state.peers.get(peerId);
  if (known) {
    if (status.name) setPeerName(known, status.name);
    return known;
  }
  const tile = $('tile-template').content.firstElementChild.cloneNode(true);
  tile.dataset.peerId = peerId;
  const video = tile.querySelector('video');
  const peer = { tile, name: '', status, call: null };
  setPeerName(peer, status.name || 'someone');
  peer.call = new PeerCall({
    client: state.client,
    peerId,
    iceServers: state.iceServers,
    localStream: state.localStream,
    onStream: (stream) => attachRemote(tile, video, stream),
    onState: (connectionState) => {
      tile.dataset.state = connectionState;
      tile.querySelector('.state').textContent = STATE_LABELS[connectionState] || connectionState;
    },
    onError: (error) => console.warn(`call with ${peer.name}:`, error),
  });
  state.peers.set(peerId, peer);
  $('tiles').append(tile);
  updateEmpty();
  if (offer) peer.call.offer();
  sendTo(peerId, mediaMessage());
  return peer;
}

const STATE_LABELS = {
  new: 'waiting', connecting: 'connecting…', connected: 'connected', disconnected: 'interrupted', failed: 'failed', closed: 'closed',
};

function setPeerName(peer, name) {
  peer.name = name;
  peer.tile.querySelector('.name').textContent = name;
}

function attachRemote(tile, video, stream) {
  if (video.srcObject === stream) return;
  video.srcObject = stream;
  video.play().catch(() => {
    // Autoplay with sound needs a user gesture in some browsers: play muted, offer to unmute.
    video.muted = true;
    video.play().catch(() => {});
    const unmute = tile.querySelector('.unmute');
    unmute.hidden = false;
    unmute.onclick = () => { video.muted = false; unmute.hidden = true; };
  });
}

function removePeer(peerId) {
  const peer = state.peers.get(peerId);
  if (!peer) return;
  state.peers.delete(peerId);
  peer.call.close();
  peer.tile.remove();
  updateEmpty();
}

function updateEmpty() {
  $('empty').hidden = state.peers.size > 0;
  $('tiles').dataset.count = String(state.peers.size + 1);
}

// ---- what peers tell each other: chat lines and whether their camera and microphone are on ----

function sendTo(peerId, data) {
  try {
    state.client.sendMessage(peerId, data);
  } catch (e) {
    console.warn('message not sent:', e.message);
  }
}

function mediaMessage() {
  return { type: 'media', audio: state.micOn, video: state.cameraOn };
}

function onPeerMessage(peerId, data) {
  const peer = state.peers.get(peerId);
  if (!peer || !data || typeof data !== 'object') return;
  if (data.type === 'chat' && typeof data.text === 'string') {
    appendChat(peer.name, data.text, false);
  } else if (data.type === 'media') {
    peer.tile.querySelector('.media').textContent = mediaIcons(data.audio !== false, data.video !== false);
    peer.tile.querySelector('.placeholder').hidden = data.video !== false;
  }
}

function mediaIcons(audio, video) {
  return [audio ? '' : 'muted', video ? '' : 'camera off'].filter(Boolean).join(' · ');
}

function appendChat(name, text, own) {
  const item = document.createElement('li');
  item.className = own ? 'own' : 'theirs';
  const who = document.createElement('strong');
  who.textContent = own ? 'You' : name;
  const body = document.createElement('span');
  body.textContent = text;
  item.append(who, body);
  $('chat-log').append(item);
  item.scrollIntoView({ block: 'end' });
  if (!own && !document.body.classList.contains('chat-open') && matchMedia('(max-width: 899px)').matches) {
    state.unread += 1;
    $('unread').textContent = String(state.unread);
    $('unread').hidden = false;
  }
}

function renderOwnMedia() {
  $('toggle-mic').textContent = state.micOn ? 'Mute' : 'Unmute';
  $('toggle-mic').setAttribute('aria-pressed', String(!state.micOn));
  $('toggle-camera').textContent = state.cameraOn ? 'Stop camera' : 'Start camera';
  $('toggle-camera').setAttribute('aria-pressed', String(!state.cameraOn));
  $('local-media').textContent = mediaIcons(state.micOn, state.cameraOn);
  $('local-placeholder').hidden = state.cameraOn;
}

function setTracks(kind, on) {
  // Disabling a track sends silence or black frames: nothing to renegotiate, instant to undo.
  for (const track of state.localStream?.getTracks() || []) if (track.kind === kind) track.enabled = on;
  renderOwnMedia();
  for (const peerId of state.peers.keys()) sendTo(peerId, mediaMessage());
}

function wireControls() {
  $('toggle-mic').onclick = () => { state.micOn = !state.micOn; setTracks('audio', state.micOn); };
  $('toggle-camera').onclick = () => { state.cameraOn = !state.cameraOn; setTracks('video', state.cameraOn); };
  $('toggle-chat').onclick = () => {
    const open = document.body.classList.toggle('chat-open');
    $('toggle-chat').setAttribute('aria-expanded', String(open));
    state.unread = 0;
    $('unread').hidden = true;
    if (open) $('chat-input').focus();
  };
  $('leave').onclick = () => {
    state.client?.close();
    for (const track of state.localStream?.getTracks() || []) track.stop();
    location.assign('/');
  };
  $('copy-link').onclick = async () => {
    try {
      await navigator.clipboard.writeText(roomUrl(state.room));
      $('copy-link').textContent = 'Copied';
    } catch {
      getSelection().selectAllChildren($('share-link'));
    }
  };
  $('chat-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = $('chat-input').value.trim();
    if (!text) return;
    if (!state.peers.size) {
      appendChat('', `${text} (nobody is here to read this)`, true);
    } else {
      for (const peerId of state.peers.keys()) sendTo(peerId, { type: 'chat', text });
      appendChat('', text, true);
    }
    $('chat-input').value = '';
  });
}

const room = roomFromPath();
if (room) {
  startCall(room);
} else {
  showLobby();
}
