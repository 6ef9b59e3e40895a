/*
 * pstn-bridge ops page: the authenticated API client and the live feed.
 *
 * Theory of operation: every request carries the ops bearer token in an Authorization header,
 * so the live feed (GET /api/stream, Server-Sent Events) is read with fetch() and a
 * ReadableStream rather than EventSource, which cannot send headers. createSseParser() is the
 * SSE framing of the HTML standard (lines end in CRLF, LF or CR; "event:" and "data:" fields;
 * a blank line dispatches; ":" lines are comments such as the API's keep-alive), fed text in
 * whatever chunks the network delivers. createFeed() owns one connection at a time: each
 * attempt loads GET /api/calls (the table), opens the stream, loads the table once more when
 * the stream is open (nothing falls between the two), then reads until the stream ends, fails,
 * or stays silent for three keep-alive periods. A failed attempt is retried with exponential
 * back-off (1 s doubling to 30 s, at least the server's Retry-After); a 401 stops everything
 * and reports it, so the page can ask for the token again. Exported as window.PstnOpsFeed.
 */
(() => {
  'use strict';

  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  const STALL_MS = 45000; // the API sends a keep-alive comment every 15 s
  const MAX_BUFFER = 1 << 20; // one SSE message larger than this is a broken feed

  /** A 401 from the API: the token is missing, wrong or revoked. */
  class AuthError extends Error {}

  /** Any other failed request; ``retryAfterMs`` from a 429's Retry-After. */
  class ApiError extends Error {
    constructor(message, status, retryAfterMs) {
      super(message);
      this.status = status;
      this.retryAfterMs = retryAfterMs || 0;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Server-Sent Events framing

  function createSseParser(onMessage, onComment) {
    let buffer = '';
    let data = [];
    let type = '';

    function line(text) {
      if (text === '') {
        if (data.length) onMessage(type || 'message', data.join('\n'));
        data = [];
        type = '';
        return;
      }
      if (text[0] === ':') {
        onComment(text.slice(1).trim());
        return;
      }
      const colon = text.indexOf(':');
      const field = colon < 0 ? text : text.slice(0, colon);
      let value = colon < 0 ? '' : text.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'event') type = value;
      // "id" and "retry" are not used by this feed: the page resynchronises on reconnect
    }

    return {
      push(text) {
        buffer += text;
        const ends = /\r\n|\r|\n/g;
        let start = 0;
        let match = ends.exec(buffer);
        while (match !== null) {
          if (match[0] === '\r' && match.index === buffer.length - 1) break; // maybe half a CRLF
          line(buffer.slice(start, match.index));
          start = ends.lastIndex;
          match = ends.exec(buffer);
        }
        buffer = buffer.slice(start);
        if (buffer.length > MAX_BUFFER) throw new ApiError('a feed message exceeded 1 MiB', 0);
      },
    };
  }

  // ---------------------------------------------------------------------------------------
  // Requests

  function headers(token, accept) {
    return { Authorization: `Bearer ${token}`, Accept: accept };
  }

  function retryAfterMs(response) {
    const value = Number(response.headers.get('Retry-After'));
    return Number.isFinite(value) && value > 0 ? value * 1000 : 0;
  }

  async function failure(response) {
    let message = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      if (body && typeof body.error === 'string') message += `: ${body.error}`;
    } catch (err) { /* not JSON */ }
    return new ApiError(message, response.status, retryAfterMs(response));
  }

  /** GET a JSON document of the ops API. Throws AuthError on 401, ApiError otherwise. */
  async function getJson(path, token, signal) {
    const response = await fetch(path, {
      headers: headers(token, 'application/json'),
      cache: 'no-store',
      credentials: 'omit',
      signal,
    });
    if (response.status === 401) throw new AuthError('the bridge refused the token (401)');
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  // ---------------------------------------------------------------------------------------
  // The live feed

  /**
   * hooks: calls(list) with GET /api/calls's records, update(update, record) per SSE call
   * message, status(feed, detail) with feed in connecting|live|down|unauthorized|stopped,
   * keepAlive().
   */
  function createFeed(getToken, hooks) {
    let generation = 0;
    let controller = null;
    let retryTimer = null;
    let stallTimer = null;
    let stalled = false;
    let backoff = BACKOFF_MIN_MS;
    const counters = { attempts: 0, reconnects: 0, messages: 0, keepAlives: 0 };

    function stop() {
      generation += 1;
      clearTimeout(retryTimer);
      clearTimeout(stallTimer);
      retryTimer = null;
      if (controller) controller.abort();
      controller = null;
    }

    function start() {
      stop();
      backoff = BACKOFF_MIN_MS;
      attempt(generation);
    }

    async function loadCalls(token, signal) {
      const body = await getJson('/api/calls?limit=100', token, signal);
      if (!body || !Array.isArray(body.calls)) throw new ApiError('GET /api/calls: no calls list', 0);
      hooks.calls(body.calls);
    }

    async function attempt(gen) {
      counters.attempts += 1;
      controller = new AbortController();
      const { signal } = controller;
      const token = getToken();
      stalled = false;
      hooks.status('connecting', counters.attempts > 1 ? `attempt ${counters.attempts}` : null);
      try {
        await loadCalls(token, signal);
        const response = await fetch('/api/stream', {
          headers: headers(token, 'text/event-stream'),
          cache: 'no-store',
          credentials: 'omit',
          signal,
        });
        if (gen !== generation) return;
        if (response.status === 401) throw new AuthError('the bridge refused the token (401)');
        if (!response.ok) throw await failure(response);
        if (!response.body) throw new ApiError('the feed has no body', 0);
        await loadCalls(token, signal);
        if (gen !== generation) return;
        backoff = BACKOFF_MIN_MS;
        hooks.status('live', null);
        await read(response.body, gen);
        if (gen === generation) throw new ApiError('the bridge closed the feed', 0);
      } catch (err) {
        if (gen !== generation) return;
        clearTimeout(stallTimer);
        if (err instanceof AuthError) {
          stop();
          hooks.status('unauthorized', err.message);
          return;
        }
        retry(gen, stalled ? 'no data or keep-alive for 45 s' : describe(err), err.retryAfterMs || 0);
      }
    }

    function describe(err) {
      if (err instanceof ApiError) return err.message;
      return `cannot reach the ops API (${err && err.message ? err.message : err})`;
    }

    function retry(gen, reason, atLeastMs) {
      const delay = Math.min(BACKOFF_MAX_MS, Math.max(backoff, atLeastMs));
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
      hooks.status('down', { reason, retryInMs: delay });
      retryTimer = setTimeout(() => {
        if (gen !== generation) return;
        counters.reconnects += 1;
        attempt(gen);
      }, delay);
    }

    function armStall() {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => {
        stalled = true;
        if (controller) controller.abort();
      }, STALL_MS);
    }

    async function read(body, gen) {
      const reader = body.getReader();
      const decoder = new TextDecoder();
      const parser = createSseParser(onMessage, () => {
        counters.keepAlives += 1;
        hooks.keepAlive();
      });
      armStall();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (gen !== generation) return;
          if (done) break;
          armStall();
          parser.push(decoder.decode(value, { stream: true }));
        }
      } finally {
        clearTimeout(stallTimer);
        reader.cancel().catch(() => {});
      }
    }

    function onMessage(type, data) {
      if (type !== 'call') return;
      let message;
      try {
        message = JSON.parse(data);
      } catch (err) {
        throw new ApiError('the feed sent a message that is not JSON', 0);
      }
      const update = message && message.update;
      if (!update || typeof update.call_id !== 'string' || !message.record) {
        throw new ApiError('the feed sent a call message without update or record', 0);
      }
      counters.messages += 1;
      hooks.update(update, message.record);
    }

    return { start, stop, counters };
  }

  window.PstnOpsFeed = Object.freeze({ AuthError, ApiError, createSseParser, createFeed, getJson });
})();
