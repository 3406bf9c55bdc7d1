// The midge dashboard: polls the admin API (/api/v1, relative to the page) and draws what
// it answers. No framework, no build step.
//
// Invariants:
// - Data from the broker reaches the page only through textContent or attributes, never
//   through innerHTML: client ids, topics and payloads are untrusted.
// - Every request carries the admin token (`Authorization: Bearer`, or `token=` in the
//   query for EventSource, which cannot set headers). A 401 stops all polling and shows
//   the login form.
// - Everything is bounded: the chart window (WINDOW_SECS samples), table rows (LIMIT),
//   watch rows (WATCH_ROWS), request time (REQUEST_TIMEOUT_MS), one request per kind at a
//   time.
'use strict';

(() => {
  const API = 'api/v1/';
  const TOKEN_KEY = 'midge.admin-token';
  /** Width of the charts, seconds; one sample per POLL_MS. */
  const WINDOW_SECS = 120;
  const POLL_MS = 1000;
  /** Clients are refreshed every CLIENTS_EVERY polls, the other tables every TABLES_EVERY. */
  const CLIENTS_EVERY = 2;
  const TABLES_EVERY = 5;
  const LIMIT = 100;
  const WATCH_ROWS = 200;
  const REQUEST_TIMEOUT_MS = 10000;
  const PREVIEW_CHARS = 120;

  const $ = (id) => document.getElementById(id);

  let token = null;
  /** Bumped by every start and stop: an answer for an older generation is dropped. */
  let generation = 0;
  let pollTimer = null;
  /** Set while a poll runs to have the next one follow at once. */
  let pollAgain = false;
  let ticks = 0;
  /** Chart samples, oldest first: {t (ms, performance.now), clients, inRate, outRate}. */
  let samples = [];
  /** The previous counters, to turn totals into rates. */
  let prev = null;
  let watch = null;

  // ---------------------------------------------------------------------------------
  // Start-up and authentication

  document.addEventListener('DOMContentLoaded', init);

  function init() {
    $('login').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('login-token').value.trim();
      if (!t) return;
      $('login-token').value = '';
      saveToken(t);
      start(t);
    });
    $('logout').addEventListener('click', () => {
      forgetToken();
      stop();
      showLogin();
      setStatus('idle', 'logged out');
    });
    window.addEventListener('hashchange', () => {
      const t = tokenFromFragment();
      if (t) start(t);
    });
    window.addEventListener('resize', drawCharts);
    initClients();
    initSubscriptions();
    initRetained();
    initWatch();

    const t = tokenFromFragment() || storedToken();
    if (t) {
      start(t);
    } else {
      showLogin();
    }
  }

  /** The token of `#token=...`, saved and removed from the address bar (and history). */
  function tokenFromFragment() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return null;
    let t;
    try {
      t = decodeURIComponent(m[1]);
    } catch (_) {
      t = m[1];
    }
    history.replaceState(null, '', location.pathname + location.search);
    if (!t) return null;
    saveToken(t);
    return t;
  }

  function storedToken() {
    try {
      return localStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }

  function saveToken(t) {
    try {
      localStorage.setItem(TOKEN_KEY, t);
    } catch (_) {
      // Private mode or storage disabled: the token lives as long as the page.
    }
  }

  function forgetToken() {
    try {
      localStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Nothing stored.
    }
  }

  function showLogin() {
    $('dashboard').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    $('login-token').focus();
  }

  function start(t) {
    stop();
    token = t;
    samples = [];
    prev = null;
    ticks = 0;
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('logout').hidden = false;
    setStatus('idle', 'connecting…');
    poll();
    refreshSubscriptions();
    refreshRetained();
  }

  function stop() {
    generation += 1;
    token = null;
    if (pollTimer !== null) clearTimeout(pollTimer);
    pollTimer = null;
    pollAgain = false;
    stopWatch();
  }

  function unauthorized() {
    if (token === null) return;
    stop();
    forgetToken();
    showLogin();
    setStatus('error', '401 Unauthorized: the broker refused the admin token; enter a valid one');
  }

  // ---------------------------------------------------------------------------------
  // Requests and the status line

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** One API call; resolves to the parsed JSON (null for 204), rejects with ApiError. */
  async function api(method, path, body) {
    const sent = token;
    if (sent === null) throw new ApiError(401, 'not logged in');
    const headers = { Authorization: 'Bearer ' + sent, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const abort = new AbortController();
    init.signal = abort.signal;
    const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
    let res;
    try {
      res = await fetch(API + path, init);
    } catch (e) {
      throw new ApiError(0, abort.signal.aborted
        ? `${method} ${path}: no answer within ${REQUEST_TIMEOUT_MS / 1000} s`
        : `${method} ${path}: network error (is the broker running?)`);
    } finally {
      clearTimeout(timer);
    }
    if (res.status === 401) {
      // Only the token of this request is known bad; a newer one may have been entered.
      if (sent === token) unauthorized();
      throw new ApiError(401, 'unauthorized');
    }
    if (!res.ok) {
      let msg = res.statusText || 'request failed';
      try {
        const j = await res.json();
        if (j && typeof j.error === 'string') msg = j.error;
      } catch (_) {
        // Not JSON: keep the status text.
      }
      throw new ApiError(res.status, `${res.status}: ${msg}`);
    }
    if (res.status === 204) return null;
    return res.json();
  }

  let statusSource = null;
  let statusTimer = null;

  /**
   * Shows `text` in the status line. `state` is idle, ok or error. A message from the
   * poller (`source` 'poll') is cleared by the next successful poll; others fade after
   * a while.
   */
  function setStatus(state, text, source) {
    const el = $('status');
    el.dataset.state = state;
    el.textContent = text;
    statusSource = source || null;
    if (statusTimer !== null) clearTimeout(statusTimer);
    statusTimer = null;
    if (state !== 'idle' && source !== 'poll' && token !== null) {
      statusTimer = setTimeout(() => {
        statusTimer = null;
        if (token !== null) setStatus('idle', '');
      }, state === 'error' ? 15000 : 4000);
    }
  }

  function reportError(e, what) {
    if (e instanceof ApiError && e.status === 401) return; // unauthorized() said it
    setStatus('error', `${what}: ${e.message}`);
  }

  // ---------------------------------------------------------------------------------
  // Polling the broker and the charts

  async function poll() {
    const mine = generation;
    pollTimer = null;
    try {
      const b = await api('GET', 'broker');
      if (mine !== generation) return;
      showBroker(b);
      addSample(b);
      drawCharts();
      if (statusSource === 'poll' || $('status').textContent === 'connecting…') {
        setStatus('idle', '');
      }
    } catch (e) {
      if (mine !== generation) return;
      if (!(e instanceof ApiError && e.status === 401)) setStatus('error', e.message, 'poll');
      // A gap in the rates rather than one huge step after the outage.
      prev = null;
    }
    if (mine !== generation || token === null) return;
    if (ticks % CLIENTS_EVERY === 0) refreshClients();
    if (ticks > 0 && ticks % TABLES_EVERY === 0) {
      refreshSubscriptions();
      refreshRetained();
    }
    ticks += 1;
    pollTimer = setTimeout(poll, pollAgain ? 0 : POLL_MS);
    pollAgain = false;
  }

  /** Polls the broker now (after a change made from this page) instead of within a second. */
  function pollNow() {
    if (token === null) return;
    if (pollTimer === null) {
      pollAgain = true; // a poll is running
      return;
    }
    clearTimeout(pollTimer);
    poll();
  }

  function showBroker(b) {
    $('broker-version').textContent = b.version;
    $('broker-uptime').textContent = duration(b.uptime_secs);
    $('clients-count').textContent = num(b.clients_connected);
    $('connections-now').textContent = num(b.clients_connected);
    $('stat-sessions').textContent = num(b.sessions);
    $('stat-subscriptions').textContent = num(b.subscriptions);
    $('stat-retained').textContent = num(b.retained);
    $('stat-received').textContent = num(b.messages_received);
    $('stat-sent').textContent = num(b.messages_sent);
    $('stat-bytes-in').textContent = bytes(b.bytes_received);
    $('stat-bytes-out').textContent = bytes(b.bytes_sent);
    $('stat-dropped').textContent = num(b.messages_dropped);
    $('stat-queued').textContent = num(b.queued_messages);
    $('stat-inflight').textContent = num(b.inflight);
    $('stat-memory').textContent = bytes(b.memory_bytes);
    $('stat-memory').title = typeof b.memory_budget_bytes === 'number'
      ? `budget ${bytes(b.memory_budget_bytes)}` : '';
    $('reading-paused').hidden = !b.reading_paused;
  }

  function addSample(b) {
    const t = performance.now();
    let inRate = null;
    let outRate = null;
    const received = Number(b.messages_received);
    const sent = Number(b.messages_sent);
    // Counters that went down mean a restarted broker: start the rates over.
    if (prev && t > prev.t && received >= prev.received && sent >= prev.sent) {
      const dt = (t - prev.t) / 1000;
      inRate = (received - prev.received) / dt;
      outRate = (sent - prev.sent) / dt;
    }
    prev = { t, received, sent };
    samples.push({ t, clients: Number(b.clients_connected), inRate, outRate });
    const oldest = t - WINDOW_SECS * 1000;
    while (samples.length > 0 && samples[0].t < oldest) samples.shift();
    $('messages-in-rate').textContent = inRate === null ? '–' : rate(inRate);
    $('messages-out-rate').textContent = outRate === null ? '–' : rate(outRate);
  }

  function drawCharts() {
    if ($('dashboard').hidden) return;
    const now = samples.length > 0 ? samples[samples.length - 1].t : performance.now();
    const conn = $('chart-connections');
    const clients = samples.map((s) => ({ t: s.t, v: s.clients }));
    drawChart(conn, now, [{ color: '--chart-1', points: clients }], false);
    conn.dataset.points = String(clients.length);
    conn.dataset.last = clients.length > 0 ? String(clients[clients.length - 1].v) : '';

    const msgs = $('chart-messages');
    const ins = samples.filter((s) => s.inRate !== null).map((s) => ({ t: s.t, v: s.inRate }));
    const outs = samples.filter((s) => s.outRate !== null).map((s) => ({ t: s.t, v: s.outRate }));
    drawChart(msgs, now, [
      { color: '--chart-1', points: ins },
      { color: '--chart-2', points: outs },
    ], true);
    msgs.dataset.points = String(ins.length);
    msgs.dataset.peakIn = String(peak(ins));
    msgs.dataset.peakOut = String(peak(outs));
  }

  function peak(points) {
    let m = 0;
    for (const p of points) m = Math.max(m, p.v);
    return Math.round(m * 100) / 100;
  }

  /**
   * A line chart of `series` (each {color: CSS variable, points: [{t, v}]}) over the
   * WINDOW_SECS before `now`, drawn at the device's pixel ratio.
   */
  function drawChart(canvas, now, series, fractional) {
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim() || '#888';
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const cw = w / dpr;
    const ch = h / dpr;
    ctx.clearRect(0, 0, cw, ch);

    let max = 0;
    for (const s of series) for (const p of s.points) max = Math.max(max, p.v);
    const lines = 4;
    const top = axisTop(max, lines, fractional);
    const left = 44;
    const right = 8;
    const topPad = 8;
    const bottom = 18;
    const pw = Math.max(1, cw - left - right);
    const ph = Math.max(1, ch - topPad - bottom);
    const x = (t) => left + ((t - (now - WINDOW_SECS * 1000)) / (WINDOW_SECS * 1000)) * pw;
    const y = (v) => topPad + ph - (v / top) * ph;

    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    ctx.strokeStyle = color('--grid');
    ctx.fillStyle = color('--muted');
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= lines; i += 1) {
      const v = (top * i) / lines;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(left + pw, yy);
      ctx.stroke();
      ctx.fillText(axisLabel(v), left - 6, yy);
    }
    ctx.textBaseline = 'alphabetic';
    ctx.textAlign = 'left';
    ctx.fillText(`−${WINDOW_SECS / 60} min`, left, ch - 4);
    ctx.textAlign = 'right';
    ctx.fillText('now', left + pw, ch - 4);

    ctx.lineWidth = 1.75;
    ctx.lineJoin = 'round';
    for (const s of series) {
      ctx.strokeStyle = color(s.color);
      ctx.fillStyle = color(s.color);
      if (s.points.length === 1) {
        ctx.beginPath();
        ctx.arc(x(s.points[0].t), y(s.points[0].v), 2.5, 0, 2 * Math.PI);
        ctx.fill();
        continue;
      }
      ctx.beginPath();
      s.points.forEach((p, i) => {
        if (i === 0) ctx.moveTo(x(p.t), y(p.v));
        else ctx.lineTo(x(p.t), y(p.v));
      });
      ctx.stroke();
    }
  }

  /**
   * The top of the y axis: `lines` grid steps of 1, 2, 2.5 or 5 times a power of ten
   * (whole steps for counts), at or above `max`.
   */
  function axisTop(max, lines, fractional) {
    const least = fractional ? 0.25 : 1;
    const raw = Math.max(max / lines, least);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const steps = fractional ? [1, 2, 2.5, 5, 10] : [1, 2, 5, 10];
    for (const m of steps) {
      if (m * p >= raw && (fractional || m * p >= 1)) return m * p * lines;
    }
    return 10 * p * lines;
  }

  function axisLabel(v) {
    if (v >= 1e9) return `${+(v / 1e9).toFixed(1)}G`;
    if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
    if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
    return `${+v.toFixed(2)}`;
  }

  // ---------------------------------------------------------------------------------
  // Tables

  /**
   * Runs `load` for a table, at most one at a time: a request asked for while one is
   * running runs once when it ends, with the inputs of that moment, so an old answer never
   * overwrites a newer one.
   */
  function serialized(load) {
    let running = false;
    let again = false;
    return async function run() {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        await load();
      } finally {
        running = false;
        if (again && token !== null) {
          again = false;
          run();
        }
      }
    };
  }

  function debounce(f, ms) {
    let timer = null;
    return () => {
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        f();
      }, ms);
    };
  }

  /** Replaces the rows of `table`'s tbody; an empty list shows `empty` instead. */
  function fillTable(table, rows, empty) {
    const tbody = table.tBodies[0];
    if (rows.length === 0) {
      const tr = document.createElement('tr');
      const td = cell(empty, 'empty');
      td.colSpan = table.tHead.rows[0].cells.length;
      tr.appendChild(td);
      rows = [tr];
    }
    tbody.replaceChildren(...rows);
  }

  function cell(text, className, title) {
    const td = document.createElement('td');
    td.textContent = text === null || text === undefined ? '' : String(text);
    if (className) td.className = className;
    if (title) td.title = title;
    return td;
  }

  function button(text, className, label) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = className;
    b.textContent = text;
    if (label) b.setAttribute('aria-label', label);
    return b;
  }

  function totalNote(shown, total) {
    if (total > shown) return `first ${num(shown)} of ${num(total)}: refine the search`;
    return `${num(total)} total`;
  }

  // Clients ---------------------------------------------------------------------------

  let refreshClients = () => {};

  function initClients() {
    refreshClients = serialized(loadClients);
    $('clients-search').addEventListener('input', debounce(() => refreshClients(), 250));
    $('clients-table').tBodies[0].addEventListener('click', (e) => {
      const tr = e.target.closest('tr[data-client-id]');
      if (!tr) return;
      const id = tr.dataset.clientId;
      const kick = e.target.closest('button.kick');
      if (kick) {
        kickClient(id, kick);
      } else if (e.target.closest('button.show-subs')) {
        $('subs-client').value = id;
        $('subs-filter').value = '';
        refreshSubscriptions();
        $('subscriptions').scrollIntoView({ behavior: 'smooth', block: 'start' });
      }
    });
  }

  async function loadClients() {
    if (token === null) return;
    const q = $('clients-search').value.trim();
    let res;
    try {
      res = await api('GET', `clients?q=${encodeURIComponent(q)}&limit=${LIMIT}&offset=0`);
    } catch (e) {
      reportError(e, 'clients');
      return;
    }
    const now = Date.now();
    const rows = res.clients.map((c) => {
      const tr = document.createElement('tr');
      tr.dataset.clientId = c.client_id;
      const idCell = document.createElement('td');
      const link = button(c.client_id, 'link show-subs', `subscriptions of ${c.client_id}`);
      link.title = 'show its subscriptions';
      idCell.appendChild(link);
      tr.appendChild(idCell);
      tr.appendChild(cell(c.username === null ? '—' : c.username));
      tr.appendChild(cell(c.address, 'mono'));
      tr.appendChild(cell(c.protocol));
      tr.appendChild(cell(c.listener, 'mono'));
      const since = new Date(c.connected_since_ms);
      tr.appendChild(cell(`${duration((now - c.connected_since_ms) / 1000)} ago`, null,
        isNaN(since.getTime()) ? '' : since.toISOString()));
      tr.appendChild(cell(c.keep_alive_secs === 0 ? 'off' : `${c.keep_alive_secs} s`, 'num'));
      tr.appendChild(cell(num(c.subscriptions), 'num'));
      tr.appendChild(cell(num(c.inflight), 'num'));
      tr.appendChild(cell(num(c.queued), 'num'));
      const act = document.createElement('td');
      act.appendChild(button('Kick', 'kick', `disconnect ${c.client_id}`));
      tr.appendChild(act);
      return tr;
    });
    fillTable($('clients-table'), rows, q ? 'no connected client matches' : 'no client connected');
    $('clients-total').textContent = totalNote(res.clients.length, res.total);
  }

  async function kickClient(id, btn) {
    btn.disabled = true;
    try {
      await api('POST', `clients/${encodeURIComponent(id)}/kick`);
      setStatus('ok', `disconnected ${id}`);
    } catch (e) {
      reportError(e, `kick ${id}`);
    }
    refreshClients();
    refreshSubscriptions();
    pollNow();
  }

  // Subscriptions -----------------------------------------------------------------------

  let refreshSubscriptions = () => {};

  function initSubscriptions() {
    refreshSubscriptions = serialized(loadSubscriptions);
    const later = debounce(() => refreshSubscriptions(), 250);
    $('subs-client').addEventListener('input', later);
    $('subs-filter').addEventListener('input', later);
    $('subs-refresh').addEventListener('click', () => refreshSubscriptions());
  }

  async function loadSubscriptions() {
    if (token === null) return;
    const client = $('subs-client').value.trim();
    const q = $('subs-filter').value.trim();
    let query = `q=${encodeURIComponent(q)}&limit=${LIMIT}&offset=0`;
    if (client) query += `&client_id=${encodeURIComponent(client)}`;
    let res;
    try {
      res = await api('GET', `subscriptions?${query}`);
    } catch (e) {
      reportError(e, 'subscriptions');
      return;
    }
    const rows = res.subscriptions.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.clientId = s.client_id;
      tr.dataset.filter = s.filter;
      tr.appendChild(cell(s.client_id, 'mono'));
      tr.appendChild(cell(s.filter, 'mono'));
      tr.appendChild(cell(s.qos, 'num'));
      const opts = [];
      if (s.no_local) opts.push('no local');
      if (s.retain_as_published) opts.push('retain as published');
      if (s.retain_handling) opts.push(`retain handling ${s.retain_handling}`);
      tr.appendChild(cell(opts.join(', ')));
      tr.appendChild(cell(s.subscription_id === null ? '' : s.subscription_id, 'num'));
      return tr;
    });
    fillTable($('subs-table'), rows, 'no subscription matches');
    $('subs-total').textContent = totalNote(res.subscriptions.length, res.total);
  }

  // Retained messages -------------------------------------------------------------------

  let refreshRetained = () => {};

  function initRetained() {
    refreshRetained = serialized(loadRetained);
    $('retained-filter').addEventListener('input', debounce(() => refreshRetained(), 400));
    $('retained-refresh').addEventListener('click', () => refreshRetained());
    $('retained-table').tBodies[0].addEventListener('click', (e) => {
      const del = e.target.closest('button.delete');
      const tr = e.target.closest('tr[data-topic]');
      if (del && tr) deleteRetained(tr.dataset.topic, del);
    });
  }

  async function loadRetained() {
    if (token === null) return;
    const filter = $('retained-filter').value.trim() || '#';
    let res;
    try {
      res = await api('GET', `retained?filter=${encodeURIComponent(filter)}&limit=${LIMIT}&offset=0`);
    } catch (e) {
      reportError(e, 'retained messages');
      return;
    }
    const rows = res.messages.map((m) => {
      const tr = document.createElement('tr');
      tr.dataset.topic = m.topic;
      tr.appendChild(cell(m.topic, 'mono'));
      tr.appendChild(cell(m.qos, 'num'));
      tr.appendChild(cell(bytes(m.payload_bytes), 'num'));
      const p = preview(m.payload, m.payload_encoding);
      tr.appendChild(cell(p.text, 'payload', p.title));
      const act = document.createElement('td');
      act.appendChild(button('Delete', 'delete', `delete the retained message of ${m.topic}`));
      tr.appendChild(act);
      return tr;
    });
    fillTable($('retained-table'), rows, 'no retained message matches');
    $('retained-total').textContent = totalNote(res.messages.length, res.total);
  }

  async function deleteRetained(topic, btn) {
    btn.disabled = true;
    try {
      await api('DELETE', `retained?topic=${encodeURIComponent(topic)}`);
      setStatus('ok', `deleted the retained message of ${topic}`);
    } catch (e) {
      reportError(e, `delete ${topic}`);
    }
    refreshRetained();
    pollNow();
  }

  // Topic watch -------------------------------------------------------------------------

  /** Messages received but not yet shown, newest last; shown in batches. */
  let watchPending = [];
  let watchFlush = null;
  let watchTotal = 0;

  function initWatch() {
    $('watch-form').addEventListener('submit', (e) => {
      e.preventDefault();
      startWatch();
    });
    $('watch-stop').addEventListener('click', () => {
      stopWatch();
      setWatchState('stopped', 'stopped');
    });
    $('watch-clear').addEventListener('click', () => {
      watchPending = [];
      watchTotal = 0;
      $('watch-table').tBodies[0].replaceChildren();
      $('watch-count').textContent = '';
    });
  }

  function setWatchState(state, text) {
    const el = $('watch-state');
    el.dataset.state = state;
    el.textContent = text;
  }

  function startWatch() {
    if (token === null) return;
    stopWatch();
    const filter = $('watch-filter').value.trim() || '#';
    const url = `${API}watch?filter=${encodeURIComponent(filter)}&token=${encodeURIComponent(token)}`;
    const es = new EventSource(url);
    watch = es;
    $('watch-start').disabled = true;
    $('watch-stop').disabled = false;
    setWatchState('connecting', 'connecting…');
    es.addEventListener('open', () => {
      if (watch === es) setWatchState('open', `watching ${filter}`);
    });
    es.addEventListener('message', (e) => {
      if (watch !== es) return;
      let m;
      try {
        m = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      watchTotal += 1;
      watchPending.push(m);
      if (watchPending.length > WATCH_ROWS) watchPending.splice(0, watchPending.length - WATCH_ROWS);
      if (watchFlush === null) watchFlush = setTimeout(flushWatch, 100);
    });
    es.addEventListener('error', () => {
      if (watch !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // EventSource hides the status; ask the same URL again to say why.
        stopWatch();
        setWatchState('closed', 'failed');
        explainWatchFailure(url, filter);
      } else {
        setWatchState('connecting', 'reconnecting…');
      }
    });
  }

  function stopWatch() {
    if (watch !== null) watch.close();
    watch = null;
    $('watch-start').disabled = false;
    $('watch-stop').disabled = true;
    if (watchFlush !== null) clearTimeout(watchFlush);
    watchFlush = null;
    flushWatch();
  }

  async function explainWatchFailure(url, filter) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
    try {
      const res = await fetch(url, { cache: 'no-store', credentials: 'omit', signal: abort.signal });
      if (res.status === 401) {
        unauthorized();
        return;
      }
      let msg = `${res.status} ${res.statusText}`;
      if (!res.ok) {
        try {
          const j = await res.json();
          if (j && typeof j.error === 'string') msg = `${res.status}: ${j.error}`;
        } catch (_) {
          // Not JSON: keep the status line.
        }
      }
      setStatus('error', `watch ${filter}: ${res.ok ? 'the stream ended' : msg}`);
    } catch (_) {
      setStatus('error', `watch ${filter}: network error (is the broker running?)`);
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
  }

  function flushWatch() {
    watchFlush = null;
    if (watchPending.length === 0) return;
    const tbody = $('watch-table').tBodies[0];
    const frag = document.createDocumentFragment();
    // Newest first.
    for (let i = watchPending.length - 1; i >= 0; i -= 1) frag.appendChild(watchRow(watchPending[i]));
    watchPending = [];
    tbody.insertBefore(frag, tbody.firstChild);
    while (tbody.rows.length > WATCH_ROWS) tbody.deleteRow(-1);
    $('watch-count').textContent = `${num(watchTotal)} received, latest ${num(tbody.rows.length)} shown`;
  }

  function watchRow(m) {
    const tr = document.createElement('tr');
    tr.dataset.topic = m.topic;
    const at = new Date(m.received_ms);
    tr.appendChild(cell(isNaN(at.getTime()) ? '' : clock(at), 'mono', isNaN(at.getTime()) ? '' : at.toISOString()));
    tr.appendChild(cell(m.topic, 'mono'));
    tr.appendChild(cell(m.qos, 'num'));
    tr.appendChild(cell(m.retain ? 'retained' : ''));
    tr.appendChild(cell(bytes(m.payload_bytes), 'num'));
    const p = preview(m.payload, m.payload_encoding);
    tr.appendChild(cell(p.text, 'payload', p.title));
    return tr;
  }

  // ---------------------------------------------------------------------------------
  // Formatting

  /** A short text for a payload; binary payloads (base64) as hex. */
  function preview(payload, encoding) {
    if (typeof payload !== 'string') return { text: '', title: '' };
    if (encoding === 'base64') {
      let raw;
      try {
        raw = atob(payload);
      } catch (_) {
        return { text: '(binary)', title: '' };
      }
      const n = Math.min(raw.length, PREVIEW_CHARS / 3);
      let hex = '';
      for (let i = 0; i < n; i += 1) hex += raw.charCodeAt(i).toString(16).padStart(2, '0') + ' ';
      return { text: `hex ${hex.trim()}${raw.length > n ? ' …' : ''}`, title: 'binary payload' };
    }
    const text = payload.length > PREVIEW_CHARS ? payload.slice(0, PREVIEW_CHARS) + ' …' : payload;
    return { text, title: payload.length > PREVIEW_CHARS ? payload.slice(0, 2000) : '' };
  }

  function num(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '–';
    return n.toLocaleString('en-US');
  }

  function rate(r) {
    if (r >= 100) return Math.round(r).toLocaleString('en-US');
    return (Math.round(r * 10) / 10).toString();
  }

  function bytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let u = 0;
    while (n >= 1024 && u < units.length - 1) {
      n /= 1024;
      u += 1;
    }
    return u === 0 ? `${n} B` : `${n.toFixed(n >= 100 ? 0 : 1)} ${units[u]}`;
  }

  function duration(secs) {
    if (typeof secs !== 'number' || !isFinite(secs)) return '–';
    let s = Math.max(0, Math.floor(secs));
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (d > 0) return `${d}d ${h}h ${m}m`;
    if (h > 0) return `${h}h ${m}m ${s}s`;
    if (m > 0) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function clock(d) {
    const p = (n, w) => String(n).padStart(w, '0');
    return `${p(d.getHours(), 2)}:${p(d.getMinutes(), 2)}:${p(d.getSeconds(), 2)}.${p(d.getMilliseconds(), 3)}`;
  }
})();
