/*
 * pstn-bridge dialer page.
 *
 * Theory of operation: one JsSIP user agent (SIP over WSS to the bridge) registers the user
 * and places or receives one call at a time. Every state change is written to the plain object
 * window.pstnBridge (read by people in the console and by the browser tests), then rendered.
 * The bridge sends the call's security record (DESIGN.md section 4) in an in-dialog SIP INFO
 * with Content-Type application/vnd.pstn-bridge.security+json; JsSIP answers it 200 by itself
 * (RTCSession/Info.js init_incoming) and emits 'newInfo', where the record is parsed and shown
 * next to the browser's own view of the same call (RTCPeerConnection.getStats(), every 2 s).
 * Everything from the network is rendered with textContent, never as HTML.
 */
(() => {
  'use strict';

  const SECURITY_TYPE = 'application/vnd.pstn-bridge.security+json';
  const STATS_INTERVAL_MS = 2000;
  const LOG_MAX = 200;
  const RECORDS_MAX = 100;
  const STORAGE_PREFIX = 'pstn-bridge.';
  const PCMU = '0';

  const MEDIA_CONSTRAINTS = {
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    video: false,
  };
  const PC_CONFIG = { iceServers: [], rtcpMuxPolicy: 'require' };

  /** The state every test and person can read; plain data except the getStats() function. */
  const state = {
    registered: false,
    registration: { state: 'unregistered', code: null, reason: null },
    transport: 'disconnected',
    call: emptyCall(),
    record: null,
    records: [],
    dtmfSent: '',
    stats: null,
    crossCheck: null,
    log: [],
    getStats: () => readStats(),
  };
  window.pstnBridge = state;

  let ua = null;
  let stoppingUa = null;
  let session = null;
  let connection = null;
  let statsTimer = null;
  let clockTimer = null;
  let localEnd = null;

  const $ = (id) => document.getElementById(id);
  const Security = window.PstnBridgeSecurity;

  function emptyCall() {
    return {
      state: 'idle', direction: null, code: null, reason: null, cause: null,
      originator: null, remote: null, callId: null,
      startedAt: null, answeredAt: null, endedAt: null,
    };
  }

  // ---------------------------------------------------------------------------------------
  // Log and small helpers

  function log(message) {
    const line = `${new Date().toISOString().slice(11, 23)} ${message}`;
    state.log.push(line);
    if (state.log.length > LOG_MAX) state.log.splice(0, state.log.length - LOG_MAX);
    const list = $('log');
    const item = document.createElement('li');
    item.textContent = line;
    list.appendChild(item);
    while (list.childElementCount > LOG_MAX) list.removeChild(list.firstElementChild);
    list.scrollTop = list.scrollHeight;
  }

  function setLine(element, text, tone) {
    element.textContent = text;
    element.classList.remove('ok', 'bad', 'busy');
    if (tone) element.classList.add(tone);
  }

  function statusText(code, reason) {
    return code ? `${code} ${reason || ''}`.trim() : (reason || '');
  }

  function remember(key, value) {
    try { window.localStorage.setItem(STORAGE_PREFIX + key, value); } catch (err) { /* private mode */ }
  }

  function recall(key) {
    try { return window.localStorage.getItem(STORAGE_PREFIX + key); } catch (err) { return null; }
  }

  // ---------------------------------------------------------------------------------------
  // Registration

  function onRegisterSubmit(event) {
    event.preventDefault();
    if (typeof window.JsSIP === 'undefined') {
      showLoadError('The SIP library (/static/jssip.bundle.js) did not load: build it with `make run`.');
      return;
    }
    const url = $('ws-url').value.trim();
    const user = $('sip-user').value.trim();
    const password = $('sip-password').value;
    let domain = $('sip-domain').value.trim();
    try {
      domain = domain || new URL(url).hostname;
    } catch (err) {
      setRegistration('failed', null, `bad WSS URL: ${url}`);
      return;
    }
    remember('wsUrl', url);
    remember('user', user);
    remember('domain', $('sip-domain').value.trim());
    startUa(url, user, password, domain);
  }

  function startUa(url, user, password, domain) {
    stopUa();
    let created;
    try {
      created = new window.JsSIP.UA({
        sockets: [new window.JsSIP.WebSocketInterface(url)],
        uri: `sip:${user}@${domain}`,
        password,
        register: true,
        register_expires: 300,
        session_timers: false,
        no_answer_timeout: 60,
        user_agent: `pstn-bridge-dialer JsSIP/${window.JsSIP.version}`,
      });
    } catch (err) {
      setRegistration('failed', null, `configuration refused: ${err.message || err}`);
      return;
    }
    ua = created;
    bindUaEvents(created);
    setRegistration('registering', null, null);
    log(`connecting to ${url} as sip:${user}@${domain}`);
    created.start();
  }

  function stopUa() {
    if (!ua) return;
    stoppingUa = ua;
    ua = null;
    stoppingUa.stop();
  }

  function onUnregister() {
    if (!ua) return;
    log('unregistering');
    setRegistration('unregistering', null, null);
    stopUa();
  }

  function bindUaEvents(agent) {
    const live = () => agent === ua || agent === stoppingUa;
    agent.on('connecting', () => { if (live()) setTransport('connecting'); });
    agent.on('connected', () => { if (live()) setTransport('connected'); });
    agent.on('disconnected', (e) => {
      if (!live()) return;
      setTransport('disconnected', e && e.error ? `error ${statusText(e.code, e.reason)}` : '');
      if (agent === stoppingUa) {
        stoppingUa = null;
        if (state.registration.state === 'unregistering') setRegistration('unregistered', null, null);
      }
    });
    agent.on('registered', (e) => {
      if (agent !== ua) return;
      setRegistration('registered', e.response.status_code, e.response.reason_phrase);
    });
    agent.on('unregistered', (e) => {
      if (!live()) return;
      const response = e && e.response;
      setRegistration('unregistered', response ? response.status_code : null,
        response ? response.reason_phrase : (e && e.cause) || null);
    });
    agent.on('registrationFailed', (e) => {
      if (agent !== ua) return;
      const response = e.response;
      setRegistration('failed', response ? response.status_code : null,
        response ? response.reason_phrase : e.cause);
    });
    agent.on('newRTCSession', (e) => { if (agent === ua) onNewSession(e); });
  }

  function setTransport(value, detail) {
    state.transport = value;
    log(`WebSocket ${value}${detail ? ` (${detail})` : ''}`);
  }

  function setRegistration(regState, code, reason) {
    state.registration = { state: regState, code: code || null, reason: reason || null };
    state.registered = regState === 'registered';
    const badge = $('reg-badge');
    const line = $('reg-status');
    badge.className = 'badge';
    const status = statusText(code, reason);
    if (regState === 'registered') {
      badge.classList.add('badge-on');
      badge.textContent = 'registered';
      setLine(line, `Registered${status ? ` (${status})` : ''}. Ready to call.`, 'ok');
    } else if (regState === 'failed') {
      badge.classList.add('badge-bad');
      badge.textContent = 'registration failed';
      setLine(line, `Registration failed: ${status || 'no answer'}`, 'bad');
    } else if (regState === 'registering' || regState === 'unregistering') {
      badge.classList.add('badge-busy');
      badge.textContent = `${regState}…`;
      setLine(line, `${regState === 'registering' ? 'Registering' : 'Unregistering'}…`, 'busy');
    } else {
      badge.classList.add('badge-off');
      badge.textContent = 'not registered';
      setLine(line, `Not registered${status ? ` (${status})` : ''}.`, null);
    }
    log(`registration ${regState}${status ? `: ${status}` : ''}`);
    updateControls();
  }

  // ---------------------------------------------------------------------------------------
  // Calls

  function cleanNumber(raw) {
    const number = raw.replace(/[\s\-.()]/g, '');
    return /^\+?[0-9*#]+$/.test(number) ? number : null;
  }

  function onCall() {
    if (!ua || !state.registered || session) return;
    const number = cleanNumber($('number').value);
    if (!number) {
      setLine($('call-status'), 'Enter a phone number: digits, optionally starting with +.', 'bad');
      return;
    }
    remember('lastNumber', number);
    try {
      ua.call(number, {
        mediaConstraints: MEDIA_CONSTRAINTS,
        pcConfig: PC_CONFIG,
        rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false },
      });
    } catch (err) {
      log(`call refused locally: ${err.message || err}`);
      setLine($('call-status'), `Cannot call: ${err.message || err}`, 'bad');
    }
  }

  function onNewSession(event) {
    const incoming = event.originator === 'remote';
    if (incoming && session) {
      log(`second incoming call from ${remoteOf(event.session)} refused: 486`);
      event.session.terminate({ status_code: 486, reason_phrase: 'Busy Here' });
      return;
    }
    session = event.session;
    localEnd = null;
    state.call = emptyCall();
    Object.assign(state.call, {
      state: incoming ? 'incoming' : 'trying',
      direction: incoming ? 'inbound' : 'outbound',
      remote: remoteOf(session),
      callId: event.request ? event.request.call_id : null,
      startedAt: new Date().toISOString(),
    });
    state.record = null;
    state.dtmfSent = '';
    state.stats = null;
    Security.renderRecord(null, true);
    Security.renderStats(null);
    renderCrossCheck();
    bindSessionEvents(session);
    log(`${state.call.direction} call ${incoming ? 'from' : 'to'} ${state.call.remote}`);
    renderCall();
  }

  function remoteOf(s) {
    const identity = s.remote_identity;
    if (!identity || !identity.uri) return 'unknown';
    return identity.uri.user || identity.display_name || identity.uri.toString();
  }

  function bindSessionEvents(s) {
    const mine = (handler) => (e) => { if (s === session) handler(e); };
    if (s.connection) watchConnection(s.connection);
    s.on('peerconnection', mine((e) => watchConnection(e.peerconnection)));
    s.on('sdp', mine(onSdp));
    s.on('sending', mine(() => callState('trying', null, null)));
    s.on('progress', mine(onProgress));
    s.on('accepted', mine(onAccepted));
    s.on('confirmed', mine(() => { if (state.call.state !== 'answered') onAccepted({}); }));
    s.on('ended', mine((e) => onFinished(e)));
    s.on('failed', mine((e) => onFinished(e)));
    s.on('newInfo', mine(onInfo));
    s.on('newDTMF', mine((e) => {
      if (e.originator === 'remote') log(`DTMF received by SIP INFO: ${e.dtmf.tone}`);
    }));
    s.on('getusermediafailed', mine((e) => log(`microphone refused: ${e.message || e}`)));
    s.on('peerconnection:setremotedescriptionfailed',
      mine((e) => log(`remote SDP refused by the browser: ${e.message || e}`)));
  }

  /** Codec preference: reorder the local offer's m=audio payload list (PCMU first if asked). */
  function onSdp(e) {
    if (e.originator !== 'local' || e.type !== 'offer' || !$('prefer-pcmu').checked) return;
    e.sdp = preferPayload(e.sdp, PCMU);
    log('offer reordered: PCMU (0) first');
  }

  function preferPayload(sdp, payload) {
    return sdp.replace(/^(m=audio [^ \r\n]+ [^ \r\n]+)((?: [^ \r\n]+)*)/gm, (line, head, list) => {
      const formats = list.trim().split(' ');
      if (!formats.includes(payload)) return line;
      return `${head} ${[payload, ...formats.filter((f) => f !== payload)].join(' ')}`;
    });
  }

  function onProgress(e) {
    if (e.originator !== 'remote' || !e.response) return;
    const r = e.response;
    callState(r.body ? 'early' : 'ringing', r.status_code, r.reason_phrase);
  }

  function onAccepted(e) {
    const r = e && e.response;
    state.call.answeredAt = state.call.answeredAt || new Date().toISOString();
    callState('answered', r ? r.status_code : state.call.code, r ? r.reason_phrase : state.call.reason);
    startTimers();
  }

  /** 'ended' or 'failed': code and reason are those of the message that ended the call. */
  function onFinished(e) {
    const message = e.message && e.message.status_code ? e.message : null;
    const ending = message ? { code: message.status_code, reason: message.reason_phrase } : localEnd;
    Object.assign(state.call, {
      cause: e.cause || null,
      originator: e.originator || null,
      endedAt: new Date().toISOString(),
      code: ending ? ending.code : null,
      reason: ending ? ending.reason : null,
    });
    const status = ending ? ` (${statusText(ending.code, ending.reason)})` : '';
    log(`call ended by ${e.originator}: ${e.cause}${status}`);
    stopTimers();
    connection = null;
    $('remote-audio').srcObject = null;
    session = null;
    if (!state.record) Security.renderRecord(null, false);
    callState('ended', null, null);
  }

  function callState(value, code, reason) {
    state.call.state = value;
    if (code) {
      state.call.code = code;
      state.call.reason = reason || null;
    }
    renderCall();
  }

  function onHangup() {
    if (!session) return;
    if (state.call.state === 'incoming') {
      onDecline();
      return;
    }
    log('hanging up');
    try { session.terminate(); } catch (err) { log(`hang-up failed: ${err.message || err}`); }
  }

  function onAnswer() {
    if (!session || state.call.state !== 'incoming') return;
    log('answering');
    try {
      session.answer({ mediaConstraints: MEDIA_CONSTRAINTS, pcConfig: PC_CONFIG });
    } catch (err) {
      log(`answer failed: ${err.message || err}`);
    }
  }

  function onDecline() {
    if (!session || state.call.state !== 'incoming') return;
    log('declining with 603');
    localEnd = { code: 603, reason: 'Decline' };
    try {
      session.terminate({ status_code: 603, reason_phrase: 'Decline' });
    } catch (err) {
      log(`decline failed: ${err.message || err}`);
    }
  }

  function watchConnection(pc) {
    if (!pc || pc === connection) return;
    connection = pc;
    pc.addEventListener('track', (event) => {
      const audio = $('remote-audio');
      audio.srcObject = event.streams && event.streams[0] ? event.streams[0] : new MediaStream([event.track]);
      audio.muted = false;
      const playing = audio.play();
      if (playing) playing.catch((err) => log(`audio playback blocked: ${err.message || err}`));
    });
    pc.addEventListener('connectionstatechange', () => log(`media ${pc.connectionState}`));
  }

  // ---------------------------------------------------------------------------------------
  // Keypad and DTMF

  function inCall() {
    return session !== null && (state.call.state === 'answered' || state.call.state === 'early');
  }

  function onKey(key) {
    if (inCall()) {
      sendDtmf(key);
      return;
    }
    const input = $('number');
    input.value += key;
    updateControls();
  }

  function dtmfMode() {
    const checked = document.querySelector('input[name="dtmf-mode"]:checked');
    return checked ? checked.value : 'RFC2833';
  }

  function sendDtmf(tone) {
    const mode = dtmfMode();
    if (mode === 'RFC2833' && !canInsertDtmf()) {
      log(`DTMF ${tone} not sent: the answer has no telephone-event (RFC 4733 unavailable)`);
      return;
    }
    try {
      session.sendDTMF(tone, { transportType: mode, duration: 100, interToneGap: 70 });
      state.dtmfSent += tone;
      $('dtmf-sent').textContent = state.dtmfSent;
      log(`DTMF ${tone} sent (${mode === 'INFO' ? 'SIP INFO' : 'RFC 4733'})`);
    } catch (err) {
      log(`DTMF ${tone} failed: ${err.message || err}`);
    }
  }

  function canInsertDtmf() {
    const pc = session && session.connection;
    if (!pc) return false;
    const sender = pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
    return Boolean(sender && sender.dtmf && sender.dtmf.canInsertDTMF);
  }

  // ---------------------------------------------------------------------------------------
  // Security record (SIP INFO from the bridge)

  function onInfo(e) {
    if (e.originator !== 'remote') return;
    const type = (e.info.contentType || '').split(';')[0].trim().toLowerCase();
    if (type !== SECURITY_TYPE) {
      log(`INFO with ${type || 'no content type'} ignored`);
      return;
    }
    let record;
    try {
      record = JSON.parse(e.info.body);
    } catch (err) {
      log(`security record is not JSON: ${err.message}`);
      return;
    }
    if (!record || typeof record !== 'object' || !Array.isArray(record.legs)) {
      log('security record without legs ignored');
      return;
    }
    state.record = record;
    state.records.push(record);
    if (state.records.length > RECORDS_MAX) state.records.shift();
    log(`security record received (${record.legs.length} legs, e2e ${record.end_to_end_encrypted})`);
    Security.renderRecord(record, true);
    renderCrossCheck();
  }

  // ---------------------------------------------------------------------------------------
  // The browser's own view: getStats()

  async function readStats() {
    const pc = (session && session.connection) || connection;
    if (!pc) return null;
    const report = await pc.getStats();
    return Security.summarize(report, pc);
  }

  async function refreshStats() {
    try {
      const summary = await readStats();
      if (summary) {
        state.stats = summary;
        Security.renderStats(summary);
        renderCrossCheck();
      }
    } catch (err) {
      log(`getStats failed: ${err.message || err}`);
    }
  }

  function renderCrossCheck() {
    state.crossCheck = Security.crossCheck(state.record, state.stats);
    Security.renderCrossCheck(state.crossCheck);
  }

  function startTimers() {
    stopTimers();
    refreshStats();
    statsTimer = window.setInterval(refreshStats, STATS_INTERVAL_MS);
    clockTimer = window.setInterval(renderCall, 1000);
  }

  function stopTimers() {
    if (statsTimer) window.clearInterval(statsTimer);
    if (clockTimer) window.clearInterval(clockTimer);
    statsTimer = null;
    clockTimer = null;
  }

  // ---------------------------------------------------------------------------------------
  // Rendering

  function renderCall() {
    const c = state.call;
    const line = $('call-status');
    const status = statusText(c.code, c.reason);
    const who = c.remote || '';
    const texts = {
      idle: ['No call.', null],
      incoming: [`Incoming call from ${who}…`, 'busy'],
      trying: [`Calling ${who}: trying…`, 'busy'],
      ringing: [`Ringing ${who}${status ? ` (${status})` : ''}…`, 'busy'],
      early: [`Early media from ${who}${status ? ` (${status})` : ''}`, 'busy'],
      answered: [`Answered: ${who}, ${elapsed(c.answeredAt)}`, 'ok'],
      ended: [`Call ended: ${c.cause || 'unknown cause'}${status ? ` (${status})` : ''}`
        + `${c.originator ? `, by ${({ local: 'me', remote: 'the other side' })[c.originator] || c.originator}` : ''}`, c.answeredAt ? null : 'bad'],
    };
    const [text, tone] = texts[c.state] || [c.state, null];
    setLine(line, text, tone);
    $('incoming').hidden = c.state !== 'incoming';
    $('incoming-from').textContent = who || 'unknown';
    document.title = c.state === 'incoming' ? `Incoming call: ${who}` : 'pstn-bridge dialer';
    $('dtmf-sent').textContent = state.dtmfSent || '–';
    updateControls();
  }

  function elapsed(since) {
    if (!since) return '00:00';
    const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 1000));
    const mm = String(Math.floor(seconds / 60)).padStart(2, '0');
    return `${mm}:${String(seconds % 60).padStart(2, '0')}`;
  }

  function updateControls() {
    const busy = session !== null;
    $('call').disabled = !state.registered || busy || !cleanNumber($('number').value);
    $('hangup').disabled = !busy;
    $('unregister').disabled = ua === null;
    const keypad = $('keypad');
    keypad.classList.toggle('in-call', inCall());
    $('keypad-hint').textContent = inCall()
      ? `Keypad: sends DTMF (${dtmfMode() === 'INFO' ? 'SIP INFO' : 'RFC 4733 in RTP'}).`
      : 'Keypad: dials the number.';
  }

  function showLoadError(text) {
    const banner = $('load-error');
    banner.textContent = text;
    banner.hidden = false;
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  function init() {
    $('ws-url').value = recall('wsUrl') || `wss://${window.location.host}/sip`;
    $('sip-user').value = recall('user') || '';
    $('sip-domain').value = recall('domain') || '';
    $('number').value = recall('lastNumber') || '';
    $('prefer-pcmu').checked = recall('preferPcmu') === '1';
    if (recall('dtmfMode') === 'INFO') $('dtmf-info').checked = true;
    $('login').addEventListener('submit', onRegisterSubmit);
    $('unregister').addEventListener('click', onUnregister);
    $('call').addEventListener('click', onCall);
    $('hangup').addEventListener('click', onHangup);
    $('answer').addEventListener('click', onAnswer);
    $('decline').addEventListener('click', onDecline);
    $('backspace').addEventListener('click', () => { $('number').value = $('number').value.slice(0, -1); updateControls(); });
    $('number').addEventListener('input', updateControls);
    $('number').addEventListener('keydown', (e) => { if (e.key === 'Enter') onCall(); });
    $('keypad').addEventListener('click', (e) => {
      const button = e.target.closest('button[data-key]');
      if (button) onKey(button.dataset.key);
    });
    document.addEventListener('keydown', onDocumentKey);
    $('prefer-pcmu').addEventListener('change', (e) => remember('preferPcmu', e.target.checked ? '1' : '0'));
    document.querySelectorAll('input[name="dtmf-mode"]').forEach((radio) => radio.addEventListener('change', () => {
      remember('dtmfMode', dtmfMode());
      updateControls();
    }));
    window.addEventListener('beforeunload', () => { if (ua) ua.stop(); });
    window.addEventListener('error', (e) => log(`page error: ${e.message}`));
    window.addEventListener('unhandledrejection', (e) => log(`unhandled rejection: ${e.reason}`));
    if (typeof window.JsSIP === 'undefined') {
      showLoadError('The SIP library (/static/jssip.bundle.js) did not load: build it with `make run`.');
    } else {
      log(`JsSIP ${window.JsSIP.version} loaded`);
    }
    renderCall();
  }

  function onDocumentKey(e) {
    const target = e.target;
    if (!inCall() || e.ctrlKey || e.metaKey || e.altKey) return;
    if (target && (target.tagName === 'INPUT' || target.tagName === 'TEXTAREA')) return;
    if (/^[0-9*#]$/.test(e.key)) sendDtmf(e.key);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
