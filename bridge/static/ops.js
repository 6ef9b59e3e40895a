/*
 * pstn-bridge ops page: the live table of calls and the detail view of one record.
 *
 * Theory of operation: the page holds no secret of its own. It asks for the ops bearer token,
 * keeps it in sessionStorage (this tab only) and hands it to the feed (ops-feed.js), which
 * loads GET /api/calls and then follows GET /api/stream. Every call is kept in
 * window.pstnOps.calls by id: its latest record (DESIGN.md section 4), its phase (the last
 * phase event: started, dialing, early-media, ringing, answered, ending, refused, ended) and
 * the sequence number of the last update taken. A stream update is taken only when it is newer
 * than the last one and the call is not final yet; a record from GET /api/calls only fills in
 * a call the stream has not described, or ends one the stream missed the end of. Each leg is a
 * badge whose style follows the record's ``encrypted`` alone: true is "encrypted", false "not
 * encrypted", null "unknown" (the PSTN leg is always null: carrier-dependent); a badge never
 * says more than the record. Clicking a row opens the detail view: every field of the record
 * and the call's events (GET /api/calls/{id}/events), kept up to date by the stream.
 * Everything from the network is rendered with textContent, never as HTML. The page's state
 * is window.pstnOps (read by people in the console and by the browser tests); it never holds
 * the token. window.PstnOpsRender.legBadge(leg) draws one badge (for tests).
 */
(() => {
  'use strict';

  const TOKEN_KEY = 'pstn-bridge.ops-token';
  const MAX_CALLS = 500;
  const PHASES = new Set(['started', 'dialing', 'early-media', 'ringing', 'answered', 'ending',
    'refused', 'ended']);
  const LEG_NAMES = { webrtc: 'browser', gateway: 'gateway', pstn: 'PSTN' };
  const Feed = window.PstnOpsFeed;
  const $ = (id) => document.getElementById(id);

  const state = {
    auth: 'signed-out', // signed-out | checking | ok | unauthorized
    feed: 'idle', // idle | connecting | live | down
    feedError: null,
    retryInMs: null,
    calls: {}, // call_id -> { record, phase, lastSeq, final }
    selected: null,
    detail: null, // { callId, record, events, error, loading }
    counters: null,
    cspViolations: [],
    loadedAt: new Date().toISOString(),
  };
  window.pstnOps = state;

  document.addEventListener('securitypolicyviolation', (e) => {
    state.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
  });

  // ---------------------------------------------------------------------------------------
  // Token

  function readToken() {
    try { return window.sessionStorage.getItem(TOKEN_KEY); } catch (err) { return null; }
  }

  function storeToken(value) {
    try {
      if (value) window.sessionStorage.setItem(TOKEN_KEY, value);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (err) { /* storage disabled: the token lives until the page closes */ }
    memoryToken = value;
  }

  let memoryToken = readToken();
  const feed = Feed.createFeed(() => memoryToken, {
    calls: mergeList, update: takeUpdate, status: feedStatus, keepAlive: () => {},
  });
  state.counters = feed.counters;

  function onTokenSubmit(event) {
    event.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    $('token').value = '';
    storeToken(value);
    connect();
  }

  function connect() {
    state.auth = 'checking';
    setLine($('auth-status'), 'Connecting…', 'busy');
    feed.start();
  }

  function signOut() {
    feed.stop();
    storeToken(null);
    state.calls = {};
    closeDetail();
    state.auth = 'signed-out';
    feedStatus('idle', null);
    setLine($('auth-status'), 'Signed out.', null);
  }

  // ---------------------------------------------------------------------------------------
  // Calls

  function mergeList(records) {
    records.forEach((record) => {
      if (!record || typeof record.call_id !== 'string') return;
      const known = state.calls[record.call_id];
      const ended = Boolean(record.ended_at);
      if (known && (known.final || (known.lastSeq > 0 && !ended))) return;
      state.calls[record.call_id] = {
        record,
        phase: record.phase || (ended ? 'ended' : (record.answered_at ? 'answered' : 'started')),
        lastSeq: known ? known.lastSeq : 0,
        final: ended,
      };
    });
    trim();
    scheduleRender();
  }

  function takeUpdate(update, record) {
    const id = update.call_id;
    const known = state.calls[id];
    if (known && (known.final || update.seq <= known.lastSeq)) return;
    const call = known || { record, phase: 'started', lastSeq: 0, final: false };
    call.record = record;
    call.lastSeq = update.seq;
    call.final = Boolean(update.final);
    if (call.final) call.phase = 'ended';
    else if (PHASES.has(update.event)) call.phase = update.event;
    state.calls[id] = call;
    if (!known) trim();
    if (state.detail && state.detail.callId === id) {
      state.detail.record = record;
      const events = state.detail.events;
      if (events && !events.some((e) => e.seq >= update.seq)) events.push(update);
    }
    scheduleRender();
  }

  /** Forget the oldest finished calls beyond MAX_CALLS. */
  function trim() {
    const ids = Object.keys(state.calls);
    if (ids.length <= MAX_CALLS) return;
    const finished = sortedCalls().filter((c) => c.final).reverse();
    finished.slice(0, ids.length - MAX_CALLS).forEach((c) => {
      if (c.record.call_id !== state.selected) delete state.calls[c.record.call_id];
    });
  }

  function sortedCalls() {
    return Object.values(state.calls).sort((a, b) => {
      const at = (c) => c.record.started_at || '';
      return at(b).localeCompare(at(a)) || b.record.call_id.localeCompare(a.record.call_id);
    });
  }

  // ---------------------------------------------------------------------------------------
  // Feed status

  function feedStatus(value, detail) {
    const banner = $('feed-banner');
    if (value === 'unauthorized') {
      storeToken(null);
      state.auth = 'unauthorized';
      state.feed = 'idle';
      state.feedError = detail;
      banner.hidden = true;
      setBadge('token refused', 'badge-bad');
      setLine($('auth-status'),
        'The bridge refused this token (401 Unauthorized). Enter the ops API token again.', 'bad');
      showBoard(false);
      $('token').focus();
      return;
    }
    state.feed = value;
    if (value === 'live' || value === 'connecting') {
      if (value === 'live') {
        state.auth = 'ok';
        state.feedError = null;
        state.retryInMs = null;
        banner.hidden = true;
        setLine($('auth-status'), 'Connected.', 'ok');
      }
      setBadge(value === 'live' ? 'live' : 'connecting…', value === 'live' ? 'badge-on' : 'badge-busy');
      if (state.auth === 'ok' || value === 'live') showBoard(true);
    } else if (value === 'down') {
      state.feedError = detail.reason;
      state.retryInMs = detail.retryInMs;
      setBadge('feed down', 'badge-bad');
      banner.textContent = `Live feed down: ${detail.reason}. Retrying in `
        + `${Math.round(detail.retryInMs / 1000)} s; the table shows the last known state.`;
      banner.hidden = false;
      if (state.auth !== 'ok') {
        setLine($('auth-status'), `Cannot connect: ${detail.reason}. Retrying…`, 'bad');
      }
    } else {
      state.feedError = null;
      banner.hidden = true;
      setBadge('signed out', 'badge-off');
      showBoard(false);
    }
  }

  function showBoard(on) {
    $('board').hidden = !on;
    $('login').hidden = on;
    $('sign-out').hidden = !on;
    if (on) scheduleRender();
  }

  function setBadge(text, tone) {
    const badge = $('feed-badge');
    badge.className = `badge ${tone}`;
    badge.textContent = text;
  }

  function setLine(element, text, tone) {
    element.textContent = text;
    element.classList.remove('ok', 'bad', 'busy');
    if (tone) element.classList.add(tone);
  }

  // ---------------------------------------------------------------------------------------
  // The table

  let renderQueued = false;

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    queueMicrotask(() => {
      renderQueued = false;
      renderTable();
      renderDetail();
    });
  }

  function renderTable() {
    const activeOnly = $('active-only').checked;
    const all = sortedCalls();
    const shown = all.filter((c) => !activeOnly || !c.final);
    const rows = shown.map(renderRow);
    $('call-rows').replaceChildren(...rows);
    $('no-calls').hidden = rows.length > 0;
    const active = all.filter((c) => !c.final).length;
    $('call-count').textContent = `(${shown.length} shown, ${active} active)`;
    const pstn = all.map((c) => legOf(c.record, 'pstn')).find((leg) => leg && leg.caveat);
    const caveat = $('pstn-caveat');
    caveat.hidden = !pstn;
    caveat.textContent = pstn ? `⚠ PSTN leg: ${pstn.caveat}.` : '';
  }

  function renderRow(call) {
    const r = call.record;
    const tr = document.createElement('tr');
    tr.dataset.callId = r.call_id;
    tr.dataset.phase = call.phase;
    tr.tabIndex = 0;
    const refusals = Array.isArray(r.policy_refusals) ? r.policy_refusals : [];
    tr.className = [call.final ? 'row-ended' : 'row-active', refusals.length ? 'row-refused' : '',
      state.selected === r.call_id ? 'row-selected' : ''].filter(Boolean).join(' ');
    const id = cell('call-id', '');
    id.classList.add('mono');
    r.call_id.split(/(?<=-)/).forEach((part) => id.append(part, document.createElement('wbr')));
    const direction = cell('direction', r.direction || '–');
    const parties = cell('parties', `${r.from || '?'} → ${r.to || '?'}`);
    const started = cell('started', clockTime(r.started_at));
    started.title = r.started_at || '';
    const duration = cell('duration', durationText(r));
    duration.title = 'since the call started (talk: since it was answered)';
    tr.append(id, direction, parties, stateCell(call, refusals), started, duration, legsCell(r));
    return tr;
  }

  function cell(name, text) {
    const td = document.createElement('td');
    td.dataset.col = name;
    td.textContent = text;
    return td;
  }

  function stateCell(call, refusals) {
    const r = call.record;
    const td = cell('state', '');
    const phase = document.createElement('span');
    phase.className = `phase phase-${call.final ? 'ended' : 'active'}`;
    phase.textContent = call.final
      ? `ended · ${r.end_reason || 'unknown reason'}${r.sip_status ? ` (${r.sip_status})` : ''}`
      : call.phase;
    td.appendChild(phase);
    refusals.forEach((refusal) => {
      const tag = document.createElement('span');
      tag.className = 'refusal-tag';
      tag.dataset.reason = refusal.reason || '';
      tag.textContent = `refused: ${refusal.reason || 'policy'}`;
      tag.title = refusal.detail || '';
      td.appendChild(tag);
    });
    return td;
  }

  function legsCell(record) {
    const td = cell('legs', '');
    const box = document.createElement('div');
    box.className = 'leg-badges';
    (Array.isArray(record.legs) ? record.legs : []).forEach((leg) => box.appendChild(legBadge(leg)));
    td.appendChild(box);
    return td;
  }

  function lockOf(leg) {
    return leg.encrypted === true ? 'true' : (leg.encrypted === false ? 'false' : 'null');
  }

  function lockWord(leg) {
    const lock = lockOf(leg);
    if (lock === 'true') return 'encrypted';
    if (lock === 'false') return 'not encrypted';
    return leg.leg === 'pstn' ? 'carrier-dependent' : 'unknown';
  }

  const yes = (value, good, bad, none) => (value === true ? good : (value === false ? bad : none));

  /** The facts a badge shows for one leg, one short line each. */
  function badgeLines(leg) {
    const sig = leg.signaling || {};
    const media = leg.media || {};
    if (leg.leg === 'webrtc') {
      return [
        `${media.protocol || 'DTLS-SRTP'} · ${media.dtls_version || 'DTLS not up'}`,
        media.srtp_profile || 'no SRTP profile',
        yes(media.fingerprint_matches_signaling, 'fingerprint ✓ matches SDP',
          'fingerprint ✗ MISMATCH', 'fingerprint not checked'),
      ];
    }
    if (leg.leg === 'gateway') {
      return [
        sig.tls_version ? `SIP-TLS · ${sig.tls_version}` : 'TLS not up',
        sig.tls_version ? sig.cipher || 'cipher not observed' : '',
        media.crypto_suite ? `${media.protocol || 'SRTP'} ${media.crypto_suite}` : 'no SRTP suite',
        yes(sig.peer_certificate_verified, 'cert verified ✓', 'cert NOT verified',
          'cert not checked'),
      ];
    }
    if (leg.leg === 'pstn') return leg.caveat ? ['⚠ see caveat'] : [leg.status || ''];
    return [leg.status || ''];
  }

  function legBadge(leg) {
    const badge = document.createElement('div');
    const lock = lockOf(leg);
    badge.className = `leg-badge lock-${lock}`;
    badge.dataset.leg = leg.leg;
    badge.dataset.encrypted = lock;
    const head = document.createElement('div');
    head.className = 'leg-badge-head';
    const name = document.createElement('span');
    name.className = 'leg-name';
    name.textContent = LEG_NAMES[leg.leg] || leg.leg;
    const word = document.createElement('span');
    word.className = 'lock';
    word.textContent = `${lock === 'false' ? '⚠ ' : ''}${lockWord(leg)}`;
    head.append(name, word);
    badge.appendChild(head);
    badgeLines(leg).filter(Boolean).forEach((text) => {
      const line = document.createElement('div');
      line.className = 'badge-line';
      line.textContent = text;
      badge.appendChild(line);
    });
    if (leg.caveat) badge.title = leg.caveat;
    return badge;
  }

  function legOf(record, name) {
    return Array.isArray(record.legs) ? record.legs.find((l) => l.leg === name) : undefined;
  }

  // ---------------------------------------------------------------------------------------
  // Times

  function clockTime(iso) {
    const at = iso ? new Date(iso) : null;
    if (!at || Number.isNaN(at.getTime())) return '–';
    const pad = (n) => String(n).padStart(2, '0');
    const time = `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
    const now = new Date();
    const today = at.toDateString() === now.toDateString();
    return today ? time : `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${time}`;
  }

  function span(fromIso, toIso) {
    const from = Date.parse(fromIso || '');
    const to = toIso ? Date.parse(toIso) : Date.now();
    if (Number.isNaN(from) || Number.isNaN(to)) return null;
    const seconds = Math.max(0, Math.round((to - from) / 1000));
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = String(seconds % 60).padStart(2, '0');
    return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
  }

  function durationText(r) {
    const total = span(r.started_at, r.ended_at);
    if (total === null) return '–';
    const talk = r.answered_at ? span(r.answered_at, r.ended_at) : null;
    return talk === null ? total : `${total} (talk ${talk})`;
  }

  /** Active calls' durations move on every second (only their cells are touched). */
  function tick() {
    document.querySelectorAll('#call-rows tr.row-active').forEach((tr) => {
      const call = state.calls[tr.dataset.callId];
      const td = tr.querySelector('td[data-col="duration"]');
      if (call && td) td.textContent = durationText(call.record);
    });
  }

  // ---------------------------------------------------------------------------------------
  // The detail view

  function select(callId) {
    const call = state.calls[callId];
    if (!call) return;
    state.selected = callId;
    const detail = { callId, record: call.record, events: [], error: null, loading: true };
    state.detail = detail;
    scheduleRender();
    const id = encodeURIComponent(callId);
    Promise.all([
      Feed.getJson(`/api/calls/${id}`, memoryToken),
      Feed.getJson(`/api/calls/${id}/events`, memoryToken),
    ]).then(([record, body]) => {
      if (state.detail !== detail) return;
      const current = state.calls[callId];
      if (record && record.call_id === callId && !(current && current.final && !record.ended_at)) {
        detail.record = record;
      }
      const events = body && Array.isArray(body.events) ? body.events : [];
      // updates the stream delivered while the list was loading, if the list misses them
      const pending = detail.events.filter((u) => !events.some((e) => e.seq >= u.seq));
      detail.events = events.concat(pending);
    }).catch((err) => {
      if (state.detail !== detail) return;
      if (err instanceof Feed.AuthError) {
        feedStatus('unauthorized', err.message);
        feed.stop();
        return;
      }
      detail.error = err.message || String(err);
    }).finally(() => {
      detail.loading = false;
      scheduleRender();
    });
  }

  function closeDetail() {
    state.selected = null;
    state.detail = null;
    scheduleRender();
  }

  function renderDetail() {
    const section = $('detail');
    const detail = state.detail;
    section.hidden = !detail;
    if (!detail) return;
    const r = detail.record;
    $('detail-title').textContent = `Call ${r.call_id}`;
    $('detail-summary').textContent = [r.direction, `${r.from || '?'} → ${r.to || '?'}`,
      r.end_reason ? `ended: ${r.end_reason}` : 'in progress',
      r.end_to_end_encrypted ? 'end-to-end encrypted' : 'not end-to-end encrypted']
      .join(' · ');
    const fields = $('detail-fields');
    fields.replaceChildren();
    Object.entries(r).forEach(([key, value]) => {
      if (key !== 'legs' && key !== 'policy_refusals') addFacts(fields, key, value);
    });
    $('detail-legs').replaceChildren(...(Array.isArray(r.legs) ? r.legs : []).map(detailLeg));
    const refusals = Array.isArray(r.policy_refusals) ? r.policy_refusals : [];
    $('detail-refusals').replaceChildren(...refusals.map((refusal) => {
      const p = document.createElement('p');
      p.className = 'refusal';
      p.textContent = `Refused by policy: ${refusal.reason || '?'}`
        + `${refusal.detail ? ` (${refusal.detail})` : ''}${refusal.at ? ` at ${refusal.at}` : ''}`;
      return p;
    }));
    renderEvents(detail);
  }

  function detailLeg(leg) {
    const box = document.createElement('div');
    box.className = `leg lock-${lockOf(leg)}`;
    box.dataset.leg = leg.leg;
    const head = document.createElement('div');
    head.className = 'leg-head';
    const name = document.createElement('span');
    name.className = 'leg-name';
    name.textContent = `${LEG_NAMES[leg.leg] || leg.leg} leg (${leg.leg})`;
    const lock = document.createElement('span');
    lock.className = 'lock';
    lock.textContent = lockWord(leg);
    head.append(name, lock);
    const facts = document.createElement('dl');
    facts.className = 'facts';
    Object.entries(leg).forEach(([key, value]) => {
      if (key !== 'leg') addFacts(facts, key, value);
    });
    box.append(head, facts);
    return box;
  }

  /** One dt/dd per scalar; objects flatten to dotted keys, as the JSON names them. */
  function addFacts(list, key, value) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      Object.entries(value).forEach(([k, v]) => addFacts(list, `${key}.${k}`, v));
      return;
    }
    const dt = document.createElement('dt');
    dt.textContent = key;
    const dd = document.createElement('dd');
    dd.dataset.field = key;
    if (value === null || value === undefined) {
      dd.textContent = 'null (not observed)';
      dd.className = 'fact-null';
    } else if (Array.isArray(value)) {
      dd.textContent = value.length ? value.map((v) => (typeof v === 'object' ? JSON.stringify(v) : String(v))).join(', ') : '[]';
    } else {
      dd.textContent = String(value);
      if (value === true) dd.className = 'fact-true';
      if (value === false) dd.className = 'fact-false';
    }
    list.append(dt, dd);
  }

  function renderEvents(detail) {
    const status = $('events-status');
    if (detail.error) status.textContent = `Could not load the events: ${detail.error}`;
    else status.textContent = detail.loading ? 'Loading…' : `${(detail.events || []).length} events`;
    const rows = (detail.events || []).slice().sort((a, b) => a.seq - b.seq).map((e) => {
      const tr = document.createElement('tr');
      tr.dataset.event = e.event;
      const at = typeof e.at === 'number' ? new Date(e.at * 1000) : new Date(e.at);
      const detailText = Object.entries(e.detail || {}).map(([k, v]) => `${k}=${v}`).join(' ');
      [String(e.seq), Number.isNaN(at.getTime()) ? '–' : at.toISOString().slice(11, 23),
        `${e.event}${e.final ? ' (final)' : ''}`, detailText].forEach((text) => {
        const td = document.createElement('td');
        td.textContent = text;
        tr.appendChild(td);
      });
      return tr;
    });
    $('event-rows').replaceChildren(...rows);
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  function rowTarget(event) {
    const tr = event.target.closest('tr[data-call-id]');
    return tr ? tr.dataset.callId : null;
  }

  function init() {
    $('token-form').addEventListener('submit', onTokenSubmit);
    $('sign-out').addEventListener('click', signOut);
    $('active-only').addEventListener('change', scheduleRender);
    $('detail-close').addEventListener('click', closeDetail);
    $('call-rows').addEventListener('click', (e) => {
      const id = rowTarget(e);
      if (id) select(id);
    });
    $('call-rows').addEventListener('keydown', (e) => {
      const id = rowTarget(e);
      if (id && (e.key === 'Enter' || e.key === ' ')) {
        e.preventDefault();
        select(id);
      }
    });
    setInterval(tick, 1000);
    if (memoryToken) connect();
    else $('token').focus();
  }

  window.PstnOpsRender = Object.freeze({ legBadge });
  init();
})();
