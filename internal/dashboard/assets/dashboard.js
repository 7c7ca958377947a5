// mailtee's migration dashboard. Everything that comes from the ledger
// (addresses, replies, queue IDs) is attacker-controlled: it reaches the
// page only as text nodes (textContent) and SVG attributes set one by
// one, never as HTML; the CSP (default-src 'self') forbids inline code.
'use strict';

(() => {
  const SVG = 'http://www.w3.org/2000/svg';
  const params = new URLSearchParams(location.search);
  // ?refresh=N (seconds) makes tests fast; the default suits a wall screen.
  const refresh = Math.max(0.2, Number(params.get('refresh')) || Number(document.body.dataset.refresh) || 5);
  // ?since=7d (or all) widens the window the figures cover (24 hours).
  const since = params.get('since') ? 'since=' + encodeURIComponent(params.get('since')) : '';
  let lastOK = 0;
  let userQuery = params.get('user') || '';
  const toggled = new Map(); // a path's details, opened or folded by the reader

  function $(id) { return document.getElementById(id); }

  // el builds an element; children are nodes or strings (text nodes).
  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function setFigure(name, v) {
    for (const e of document.querySelectorAll('[data-figure="' + name + '"]')) e.textContent = String(v);
  }

  function age(seconds) {
    if (!(seconds > 0)) return '–';
    const s = Math.round(seconds);
    if (s < 60) return s + 's';
    const m = Math.floor(s / 60);
    if (m < 60) return m + 'm';
    const h = Math.floor(m / 60);
    if (h < 48) return h + 'h ' + (m % 60) + 'm';
    return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
  }

  function when(t) {
    if (!t) return '';
    const d = new Date(t);
    if (isNaN(d)) return String(t);
    return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  // percent: the ratio as the page shows it, one decimal, never rounded
  // up to 100.0% while a delivery is missing.
  function percent(r, delivered, required) {
    let p = Math.floor(r * 1000) / 10;
    if (delivered === required) p = 100;
    return p.toFixed(1) + '%';
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin' });
    if (!r.ok) throw new Error(url + ': ' + r.status + ' ' + (await r.text()).slice(0, 200));
    return r.json();
  }

  function renderSummary(rep) {
    const rc = rep.reconciliation || {};
    const sum = rep.summary || {};
    const dl = sum.deliveries || {}, ms = sum.messages || {}, cp = sum.copies || {};
    const ratio = $('ratio');
    setFigure('ratio', percent(rc.ratio || 0, rc.delivered || 0, rc.required || 0));
    ratio.className = (rc.delivered === rc.required) ? 'good' : (dl.failed > 0 ? 'bad' : 'warn');
    setFigure('delivered', rc.delivered || 0);
    setFigure('required', rc.required || 0);
    setFigure('misses', (rc.required || 0) - (rc.delivered || 0));
    setFigure('deliveries-pending', dl.pending || 0);
    setFigure('deliveries-failed', dl.failed || 0);
    setFigure('accepted', sum.accepted || 0);
    setFigure('messages-delivered', ms.delivered || 0);
    setFigure('messages-pending', ms.pending || 0);
    setFigure('messages-failed', ms.failed || 0);
    setFigure('copies-delivered', cp.delivered || 0);
    setFigure('copies-pending', cp.pending || 0);
    setFigure('copies-failed', cp.failed || 0);
    $('oldest-pending').textContent = sum.oldest_pending_age_seconds > 0 ? 'oldest pending: ' + age(sum.oldest_pending_age_seconds) : 'nothing pending';

    const peers = rep.peers || [];
    $('peers').textContent = peers.length ? 'peers: ' + peers.map(p => p.url + (p.error ? ' (unreachable: ' + p.error + ')' : ' (' + p.followed + ' followed)')).join('; ') : '';

    const m = $('meter');
    clear(m);
    const total = (dl.delivered || 0) + (dl.pending || 0) + (dl.failed || 0);
    if (total > 0) {
      let x = 0;
      for (const [n, c] of [[dl.delivered, 'bar-ok'], [dl.pending, 'bar-pend'], [dl.failed, 'bar-bad']]) {
        const w = 100 * (n || 0) / total;
        m.append(svg('rect', { x: x, y: 0, width: w, height: 6, class: c }));
        x += w;
      }
    }

    const inc = $('incomplete');
    const why = (rc.incomplete || []).slice();
    for (const g of rep.gaps || []) why.push('gap on ' + g.node + ' from ' + when(g.since) + ' to ' + when(g.until) + ': ' + g.reason);
    if (rc.complete === false || why.length) {
      inc.textContent = 'The figure may be incomplete: ' + (why.length ? [...new Set(why)].join('; ') : 'the ledger has gaps');
      inc.hidden = false;
    } else {
      inc.hidden = true;
    }
  }

  // renderCharts draws one stacked bar chart per destination: required
  // deliveries by bucket of arrival time, coloured by their state now.
  function renderCharts(series) {
    const box = $('charts');
    clear(box);
    const points = (series && series.points) || [];
    if (!points.length) { box.append(el('p', 'muted', 'No deliveries in the ledger yet.')); return; }
    const starts = [...new Set(points.map(p => p.start))].sort();
    const byDest = new Map();
    for (const p of points) {
      if (!byDest.has(p.destination)) byDest.set(p.destination, new Map());
      byDest.get(p.destination).set(p.start, p);
    }
    const W = 360, H = 120, L = 30, B = 16, T = 6;
    const bw = (W - L) / starts.length;
    for (const [dest, pts] of [...byDest.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
      let max = 1, tot = { delivered: 0, pending: 0, failed: 0 };
      for (const p of pts.values()) {
        max = Math.max(max, p.delivered + p.pending + p.failed);
        tot.delivered += p.delivered; tot.pending += p.pending; tot.failed += p.failed;
      }
      const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img' });
      const title = svg('title');
      title.textContent = dest + ': ' + tot.delivered + ' delivered, ' + tot.pending + ' pending, ' + tot.failed + ' failed';
      s.append(title);
      s.append(svg('line', { x1: L, y1: H - B, x2: W, y2: H - B, class: 'axis' }));
      s.append(svg('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }));
      const ymax = svg('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }); ymax.textContent = String(max); s.append(ymax);
      const y0 = svg('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }); y0.textContent = '0'; s.append(y0);
      const scale = (H - B - T) / max;
      starts.forEach((st, i) => {
        const p = pts.get(st);
        if (!p) return;
        let y = H - B;
        for (const [n, cls, label] of [[p.delivered, 'bar-ok', 'delivered'], [p.pending, 'bar-pend', 'pending'], [p.failed, 'bar-bad', 'failed']]) {
          if (!n) continue;
          const h = Math.max(1, n * scale);
          y -= h;
          const r = svg('rect', { x: L + i * bw + bw * 0.1, y: y, width: Math.max(1, bw * 0.8), height: h, class: cls });
          const t = svg('title'); t.textContent = when(st) + ': ' + n + ' ' + label; r.append(t);
          s.append(r);
        }
      });
      const x0 = svg('text', { x: L, y: H - 3 }); x0.textContent = when(starts[0]); s.append(x0);
      const x1 = svg('text', { x: W, y: H - 3, 'text-anchor': 'end' }); x1.textContent = when(starts[starts.length - 1]); s.append(x1);
      const cap = el('figcaption', null, dest, ' ', el('span', 'muted', '· ' + tot.delivered + ' delivered, ' + tot.pending + ' pending, ' + tot.failed + ' failed'));
      box.append(el('figure', 'chart', cap, s));
    }
  }

  function row(cells) {
    const tr = el('tr');
    for (const [text, cls] of cells) tr.append(el('td', cls || null, text));
    return tr;
  }

  function emptyRow(tbody, cols, text) {
    const td = el('td', 'empty', text);
    td.colSpan = cols;
    tbody.append(el('tr', null, td));
  }

  function renderTables(data) {
    const rep = data.report;
    let tb = $('dests').tBodies[0];
    clear(tb);
    for (const d of rep.destinations || []) {
      const c = d.all || {};
      tb.append(row([[d.name, 'name'], [c.delivered || 0, 'n ok'], [c.pending || 0, 'n pend'], [c.failed || 0, 'n bad'], [age(d.oldest_pending_age_seconds), 'n']]));
    }
    if (!tb.rows.length) emptyRow(tb, 5, 'none');

    tb = $('queue').tBodies[0];
    clear(tb);
    for (const q of data.queue || []) {
      tb.append(row([[q.destination, 'name'], [q.recipients, 'n'], [q.messages, 'n'], [age(q.oldest_age_seconds), 'n']]));
    }
    if (!tb.rows.length) emptyRow(tb, 4, 'the queue is empty');

    tb = $('deferrals').tBodies[0];
    clear(tb);
    for (const d of rep.deferrals || []) {
      const tr = row([[d.count, 'n'], [d.destination, 'name']]);
      const adv = (data.advice || {})[d.reply || ''];
      tr.append(el('td', 'reply', el('div', null, d.reply || ''), adv ? el('div', 'hint', adv) : null));
      tb.append(tr);
    }
    if (!tb.rows.length) emptyRow(tb, 3, 'nothing deferred');
  }

  function statusTag(state) { return el('span', 'st ' + state, state); }

  function renderFailures(data) {
    const ol = $('failures');
    clear(ol);
    const failed = (data.report.misses || []).filter(m => m.state === 'failed');
    failed.sort((a, b) => String(b.at || b.arrival).localeCompare(String(a.at || a.arrival)));
    for (const m of failed.slice(0, 20)) {
      const li = el('li', 'failure',
        el('p', 'what', el('span', 'addr', m.rcpt), m.copy ? el('span', 'tag', 'copy') : null, ' ', statusTag(m.status || 'failed'), ' ', el('span', 'muted', when(m.at || m.arrival))),
        el('p', 'mono', m.reply || '(no reply recorded)'),
        el('p', 'muted', 'message ' + m.queue_id + ' on ' + m.node + ' from ' + (m.from || '<>') + (m.relay ? ', last hop ' + m.relay : '')));
      const adv = (data.advice || {})[m.reply || ''];
      if (adv) li.append(el('p', 'advice', adv));
      ol.append(li);
    }
    if (!failed.length) ol.append(el('li', 'muted', 'No failed delivery.'));
    if (failed.length > 20) ol.append(el('li', 'muted', (failed.length - 20) + ' more: mailtee report lists them all.'));
  }

  function renderHop(h) {
    let s = (h.node || '') + ' ' + (h.queue_id || '') + ': to=<' + (h.rcpt || '') + '>';
    if (h.relay) s += ', relay=' + h.relay;
    if (h.dsn) s += ', dsn=' + h.dsn;
    s += ', status=' + (h.status || '');
    if (h.reply) s += ' (' + h.reply + ')';
    return el('li', 'hop', s);
  }

  function renderUser(data) {
    const ol = $('user-results');
    clear(ol);
    const msgs = (data.report && data.report.messages) || [];
    const rc = (data.report && data.report.reconciliation) || {};
    $('user-summary').textContent = msgs.length + ' message' + (msgs.length === 1 ? '' : 's') + ' for ' + userQuery + (msgs.length ? ': ' + (rc.delivered || 0) + ' of ' + (rc.required || 0) + ' required deliveries delivered' : '') + (data.truncated ? ' (the newest ' + msgs.length + ')' : '');
    for (const m of msgs) {
      const dl = el('ul', 'deliveries');
      for (const r of m.required || []) {
        const li = el('li', null,
          el('p', null, el('span', 'addr', r.rcpt), r.copy ? el('span', 'tag', 'copy') : el('span', 'tag', 'mailbox'), r.via ? el('span', 'tag', 'via ' + r.via) : null, ' ', statusTag(r.state || r.status)),
          r.reply ? el('p', 'mono', r.reply) : null);
        if ((r.chain || []).length) {
          // Delivered paths start folded, the others open; what the
          // reader opens or folds stays so across refreshes.
          const key = m.node + ' ' + m.queue_id + ' ' + r.rcpt;
          const d = el('details', 'path', el('summary', null, 'path: ' + r.chain.length + (r.chain.length === 1 ? ' hop' : ' hops')));
          d.open = toggled.has(key) ? toggled.get(key) : r.state !== 'delivered';
          d.addEventListener('toggle', () => toggled.set(key, d.open));
          const ch = el('ol', 'chain');
          for (const h of r.chain) ch.append(renderHop(h));
          d.append(ch);
          li.append(d);
        }
        if (r.note) li.append(el('p', 'muted', r.note));
        const adv = r.state === 'failed' ? (data.advice || {})[r.reply || ''] : '';
        if (adv) li.append(el('p', 'advice', adv));
        dl.append(li);
      }
      ol.append(el('li', 'message state-' + (m.state || ''),
        el('p', null, el('strong', null, when(m.arrival)), ' ', el('span', 'mono', m.queue_id), ' on ', m.node, ' ', statusTag(m.state || '')),
        el('p', 'muted', 'from ' + (m.from || '<>') + ' to ' + (m.rcpts || []).join(', ') + (m.message_id ? ' · ' + m.message_id : '')),
        dl));
    }
  }

  async function refreshUser() {
    if (!userQuery) { clear($('user-results')); $('user-summary').textContent = ''; return; }
    renderUser(await getJSON('api/user?q=' + encodeURIComponent(userQuery) + (since ? '&' + since : '')));
  }

  async function tick() {
    try {
      const data = await getJSON('api/overview' + (since ? '?' + since : ''));
      renderSummary(data.report);
      renderCharts(data.report.series);
      renderTables(data);
      renderFailures(data);
      await refreshUser();
      lastOK = Date.now();
      $('error').hidden = true;
      $('status').textContent = (data.report.since ? 'arrivals since ' + new Date(data.report.since).toLocaleString() + ' · ' : 'all arrivals · ') +
        'updated ' + new Date().toLocaleTimeString() + ' · every ' + refresh + 's';
      $('status-dot').className = 'dot live';
      document.body.dataset.state = 'ready';
      document.body.dataset.generated = data.report.generated || '';
    } catch (e) {
      // Also to the console: the browser test counts these.
      console.error('dashboard refresh failed:', e);
      const err = $('error');
      err.textContent = 'Could not refresh: ' + (e && e.message ? e.message : String(e)) + (lastOK ? ' (figures from ' + new Date(lastOK).toLocaleTimeString() + ')' : '');
      err.hidden = false;
      $('status-dot').className = 'dot stale';
    } finally {
      setTimeout(tick, refresh * 1000);
    }
  }

  $('user').value = userQuery;
  $('user-form').addEventListener('submit', ev => {
    ev.preventDefault();
    userQuery = $('user').value.trim();
    const u = new URL(location.href);
    if (userQuery) u.searchParams.set('user', userQuery); else u.searchParams.delete('user');
    history.replaceState(null, '', u);
    refreshUser().catch(e => { $('user-summary').textContent = 'Search failed: ' + e.message; });
  });
  tick();
})();
