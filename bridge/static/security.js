/*
 * pstn-bridge dialer: the call security panel and the browser's own getStats() view.
 *
 * Theory of operation: pure helpers and DOM renderers used by dialer.js, exported as
 * window.PstnBridgeSecurity. summarize() turns an RTCStatsReport into the flat summary kept in
 * window.pstnBridge.stats; renderRecord() draws the bridge's security record (DESIGN.md
 * section 4: one row per leg with its lock state, the facts, the PSTN caveat, policy
 * refusals); crossCheck() compares the browser's view with the record's webrtc leg. Record
 * content comes from the network: it is only ever set as textContent.
 */
(() => {
  'use strict';

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------------------
  // The browser's own view: an RTCStatsReport summary

  function summarize(report, pc) {
    let transport = null;
    let inbound = null;
    let outbound = null;
    report.forEach((r) => {
      if (r.type === 'transport' && (!transport || r.dtlsState === 'connected')) transport = r;
      if (r.type === 'inbound-rtp' && r.kind === 'audio') inbound = r;
      if (r.type === 'outbound-rtp' && r.kind === 'audio') outbound = r;
    });
    const t = transport || {};
    const codec = report.get((outbound && outbound.codecId) || (inbound && inbound.codecId) || '') || {};
    const codecIn = report.get((inbound && inbound.codecId) || '') || {};
    const remoteCert = fingerprint(report, t.remoteCertificateId);
    return {
      dtlsState: t.dtlsState || null,
      tlsVersion: t.tlsVersion || null,
      dtlsCipher: t.dtlsCipher || null,
      srtpCipher: t.srtpCipher || null,
      dtlsRole: t.dtlsRole || null,
      iceState: t.iceState || null,
      candidatePair: candidatePair(report, t.selectedCandidatePairId),
      codec: codec.mimeType || null,
      codecName: codecName(codec),
      codecIn: codecName(codecIn),
      payloadType: codec.payloadType === undefined ? null : codec.payloadType,
      packetsReceived: inbound ? inbound.packetsReceived : null,
      packetsSent: outbound ? outbound.packetsSent : null,
      audioLevel: inbound && inbound.audioLevel !== undefined ? inbound.audioLevel : null,
      totalSamplesReceived: inbound ? inbound.totalSamplesReceived : null,
      localFingerprint: fingerprint(report, t.localCertificateId),
      remoteFingerprint: remoteCert || sdpFingerprint(pc.remoteDescription),
      remoteFingerprintSource: remoteCert ? 'dtls' : 'sdp',
      at: new Date().toISOString(),
    };
  }

  function candidatePair(report, id) {
    const pair = id ? report.get(id) : null;
    if (!pair) return null;
    const end = (c) => (c ? `${c.address || c.ip}:${c.port} ${c.protocol} ${c.candidateType}` : '?');
    return `${end(report.get(pair.localCandidateId))} ↔ ${end(report.get(pair.remoteCandidateId))}`;
  }

  /** Chromium reports no remote certificate; the peer's SDP fingerprint is what DTLS checked. */
  function sdpFingerprint(description) {
    if (!description || !description.sdp) return null;
    const found = [...description.sdp.matchAll(/^a=fingerprint:([^ \r\n]+) ([^\r\n]+)/gm)]
      .map((m) => `${m[1].toLowerCase()} ${m[2].trim().toUpperCase()}`);
    return found.find((f) => f.startsWith('sha-256 ')) || found[0] || null;
  }

  function codecName(codec) {
    if (!codec || !codec.mimeType) return null;
    const name = codec.mimeType.replace(/^audio\//i, '');
    return `${name}/${codec.clockRate}${codec.channels && codec.channels > 1 ? `/${codec.channels}` : ''}`;
  }

  function fingerprint(report, id) {
    const cert = id ? report.get(id) : null;
    return cert ? `${cert.fingerprintAlgorithm} ${cert.fingerprint.toUpperCase()}` : null;
  }

  // ---------------------------------------------------------------------------------------
  // Cross-check

  function normalizeSrtp(name) {
    return name ? name.toUpperCase().replace(/^SRTP_/, '').replace('HMAC_', '') : null;
  }

  function dtlsName(version) {
    return { FEFD: 'DTLSv1.2', FEFC: 'DTLSv1.3', FEFF: 'DTLSv1.0' }[String(version).toUpperCase()] || version;
  }

  function agree(a, b) {
    return a && b ? a === b : null;
  }

  /** Does the browser's view agree with the bridge's record of the webrtc leg? null: no data. */
  function crossCheck(record, stats) {
    const leg = record && Array.isArray(record.legs) && record.legs.find((l) => l.leg === 'webrtc');
    if (!leg || !stats) return null;
    const media = leg.media || {};
    const fp = (value) => (value ? value.toUpperCase() : null);
    return {
      srtp: agree(normalizeSrtp(media.srtp_profile), normalizeSrtp(stats.srtpCipher)),
      dtlsVersion: agree(media.dtls_version, stats.tlsVersion ? dtlsName(stats.tlsVersion) : null),
      fingerprint: agree(fp(media.remote_fingerprint), fp(stats.localFingerprint)),
    };
  }

  function renderCrossCheck(result) {
    const line = $('cross-check');
    if (!result) {
      line.textContent = '';
      return;
    }
    const word = (v) => (v === null ? 'not comparable' : (v ? 'agrees' : 'DIFFERS'));
    line.textContent = `Compared with the bridge's record: SRTP profile ${word(result.srtp)}, `
      + `DTLS version ${word(result.dtlsVersion)}, `
      + `my certificate fingerprint ${word(result.fingerprint)}.`;
  }

  // ---------------------------------------------------------------------------------------
  // Rendering

  const LEG_TITLES = {
    webrtc: 'Browser ↔ bridge',
    gateway: 'Bridge ↔ PSTN gateway',
    pstn: 'Beyond the gateway (telephone network)',
  };

  /** Show a record; without one, say whether a call is waiting for it (``inCall``). */
  function renderRecord(record, inCall) {
    const legs = $('legs');
    legs.replaceChildren();
    $('caveats').replaceChildren();
    $('refusals').replaceChildren();
    const banner = $('e2e-banner');
    if (!record) {
      $('record-meta').textContent = inCall ? 'Waiting for the bridge\'s security record…' : 'No security record received.';
      banner.className = 'banner banner-warn';
      banner.textContent = inCall ? 'Call in progress: waiting for the security record.'
        : 'No call yet. The bridge reports each leg\'s encryption when a call starts.';
      return;
    }
    $('record-meta').textContent = [record.call_id, record.direction,
      record.from && record.to ? `${record.from} → ${record.to}` : null,
      record.end_reason ? `ended: ${record.end_reason}` : null].filter(Boolean).join(' · ');
    banner.className = `banner ${record.end_to_end_encrypted ? 'banner-good' : 'banner-warn'}`;
    banner.textContent = record.end_to_end_encrypted
      ? 'End-to-end encrypted.'
      : 'Not end-to-end encrypted: the bridge and the telephone network can hear this call.';
    record.legs.forEach((leg) => legs.appendChild(renderLeg(leg)));
    renderCaveats(record);
    renderRefusals(record.policy_refusals);
  }

  function renderLeg(leg) {
    const lock = leg.encrypted === true ? 'true' : (leg.encrypted === false ? 'false' : 'null');
    const box = document.createElement('div');
    box.className = `leg lock-${lock}`;
    box.dataset.leg = leg.leg;
    const head = document.createElement('div');
    head.className = 'leg-head';
    const name = document.createElement('span');
    name.className = 'leg-name';
    name.textContent = `${LEG_TITLES[leg.leg] || leg.leg} (${leg.leg})`;
    const badge = document.createElement('span');
    badge.className = 'lock';
    badge.textContent = { true: 'encrypted', false: 'not encrypted', null: 'unknown' }[lock];
    head.append(name, badge);
    box.appendChild(head);
    const facts = document.createElement('dl');
    facts.className = 'facts';
    legFacts(leg).forEach(([label, value, tone]) => addFact(facts, label, value, tone));
    box.appendChild(facts);
    return box;
  }

  const yesNo = (v) => (v === true ? ['yes', 'fact-good'] : (v === false ? ['NO', 'fact-bad'] : [null, null]));

  function legFacts(leg) {
    const sig = leg.signaling || {};
    const media = leg.media || {};
    const facts = [];
    const add = (label, value, tone) => { if (value !== undefined && value !== null && value !== '') facts.push([label, String(value), tone]); };
    add('Peer', leg.peer);
    add('Status', leg.status);
    if (leg.signaling) add('Signaling', [String(sig.transport || '').toUpperCase(), sig.tls_version, sig.cipher].filter(Boolean).join(' · '));
    add('Peer certificate verified', ...yesNo(sig.peer_certificate_verified));
    add('Peer certificate', sig.peer_certificate_subject);
    add('Mutual TLS', ...yesNo(sig.mutual_tls));
    if (leg.media) add('Media', [media.protocol, media.keying].filter(Boolean).join(' · '));
    add('DTLS version', media.dtls_version);
    add('SRTP profile', media.srtp_profile);
    add('SDES suite', media.crypto_suite);
    add('Fresh keys per call', ...yesNo(media.keys_fresh));
    add('Fingerprint matches signaling', ...yesNo(media.fingerprint_matches_signaling));
    if (leg.leg === 'webrtc') add('Browser certificate', media.remote_fingerprint);
    else add('Remote fingerprint', media.remote_fingerprint);
    add('Codec', media.codec);
    const shown = new Set(['transport', 'tls_version', 'cipher', 'peer_certificate_verified',
      'peer_certificate_subject', 'mutual_tls', 'protocol', 'keying', 'dtls_version', 'srtp_profile',
      'crypto_suite', 'keys_fresh', 'fingerprint_matches_signaling', 'remote_fingerprint', 'codec']);
    [sig, media].forEach((part) => Object.entries(part).forEach(([key, value]) => {
      if (!shown.has(key) && value !== null && typeof value !== 'object') add(labelOf(key), value);
    }));
    return facts;
  }

  const ACRONYMS = /\b(dtls|tls|srtp|sdes|sdp|ice|rtp|sip|ip)\b/g;

  function labelOf(key) {
    const text = key.replace(/_/g, ' ').replace(ACRONYMS, (w) => w.toUpperCase());
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function addFact(list, label, value, tone) {
    const dt = document.createElement('dt');
    dt.textContent = label;
    const dd = document.createElement('dd');
    setFingerprint(dd, value);
    if (tone) dd.classList.add(tone);
    list.append(dt, dd);
  }

  /** Long certificate fingerprints are shortened on screen; the full value is the tooltip. */
  function setFingerprint(element, value) {
    const match = /^([a-z0-9-]+) ((?:[0-9A-F]{2}:){8,}[0-9A-F]{2})$/i.exec(value || '');
    element.classList.toggle('fp', Boolean(match));
    if (!match) {
      element.textContent = value;
      element.removeAttribute('title');
      return;
    }
    const bytes = match[2].split(':');
    element.textContent = `${match[1]} ${bytes.slice(0, 6).join(':')}…${bytes.slice(-6).join(':')}`;
    element.title = value;
  }

  function renderCaveats(record) {
    const box = $('caveats');
    record.legs.filter((l) => l.caveat).forEach((leg) => {
      const p = document.createElement('p');
      p.className = 'caveat';
      p.dataset.leg = leg.leg;
      p.textContent = `⚠ ${leg.caveat}`;
      box.appendChild(p);
    });
    if (Array.isArray(record.caveats) && record.caveats.length) {
      const p = document.createElement('p');
      p.className = 'hint';
      p.textContent = `Caveats: ${record.caveats.join(', ')}`;
      box.appendChild(p);
    }
  }

  function renderRefusals(refusals) {
    if (!Array.isArray(refusals)) return;
    refusals.forEach((refusal) => {
      const p = document.createElement('p');
      p.className = 'refusal';
      p.textContent = `Refused by policy: ${typeof refusal === 'string' ? refusal : JSON.stringify(refusal)}`;
      $('refusals').appendChild(p);
    });
  }

  function renderStats(s) {
    const view = $('browser-view');
    const values = s ? {
      dtlsState: s.dtlsState,
      tlsVersion: s.tlsVersion ? `${dtlsName(s.tlsVersion)} (${s.tlsVersion})` : null,
      dtlsCipher: s.dtlsCipher,
      srtpCipher: s.srtpCipher,
      codec: s.codecName ? `${s.codecName}${s.payloadType !== null ? ` (pt ${s.payloadType})` : ''}` : null,
      localFingerprint: s.localFingerprint,
      remoteFingerprint: s.remoteFingerprint,
      candidatePair: s.candidatePair,
      packets: `${s.packetsReceived ?? '–'} / ${s.packetsSent ?? '–'}`,
      audioLevel: s.audioLevel === null ? null : s.audioLevel.toFixed(3),
    } : {};
    view.querySelectorAll('dd[data-stat]').forEach((dd) => {
      const value = values[dd.dataset.stat];
      setFingerprint(dd, value === null || value === undefined ? '–' : String(value));
    });
  }

  window.PstnBridgeSecurity = Object.freeze({
    summarize, crossCheck, renderCrossCheck, renderRecord, renderStats,
  });
})();
