/* truenas-net-exporter live view: polls api/v1/interfaces every 2 s and updates
 * the server-rendered tables in place (the structure html.rs renders), with
 * a sparkline of the last minutes per owner and NIC kept in this tab only,
 * the workloads (traffic per cgroup) under their owners with their top
 * peers, the clients of this host's services, and the share of the
 * uplinks' traffic the workloads and the VMs account for. Loopback is apart,
 * in a table of its own below the owners, never in an owner's figures.
 * Names come from outside: the DOM is only built with createElement +
 * textContent / setAttribute, never from HTML strings. */
(() => {
'use strict';
const API = 'api/v1/interfaces', PERIOD = 2000, TIMEOUT = 5000;
const KINDS = ['app', 'container', 'vm', 'system container', 'network', 'service', 'bridge', 'nic', 'host'];
const UNITS = ['b/s', 'kb/s', 'Mb/s', 'Gb/s', 'Tb/s'], BYTES = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
// History: at most POINTS reads per series, none older than SPAN seconds; a
// longer silence than GAP (paused, hidden, unreachable) breaks the line.
const SPAN = 180, POINTS = 90, GAP = 3 * PERIOD / 1000, SW = 120, SH = 24;
const SVG = 'http://www.w3.org/2000/svg', SIDE_KEY = 'truenas-net-exporter.side';
// Peers shown by name under a workload, and clients listed, at most (as html.rs).
const PEER_ROWS = 8, CLIENT_ROWS = 50;
const SIDES = { server: 'served here', client: 'served there' };
// The host's end of a veth or a tap receives what its owner sends: from the
// owner's side, rx and tx swap. A macvtap already counts as its VM does, and
// NICs, bridges and the host's own interfaces have no other side.
const WORKLOADS = new Set(['app', 'container', 'vm', 'system container']);
const PAIRED = new Set(['docker', 'incus', 'lxc', 'vm']);
const d = document, body = d.body, $ = (r, s) => r.querySelector(s);
const owners = $(d, '#owners'), nicBody = $(d, '#nics tbody'), statusEl = $(d, '#status'), namedEl = $(d, '#named');
const pauseBtn = $(d, '#pause'), sideEl = $(d, '#side');
const clientsEl = $(d, '#clients'), clientBody = $(d, '#clients tbody');
const loopEl = $(d, '#loopback'), loopBody = $(d, '#loopback tbody');
const isLo = it => str(it.instance_type) === 'loopback';
if (!owners || !nicBody || !statusEl) return;

let prev = null;        // last read: {t: server time, c: Map iface -> [rx, tx] bytes, w: the same per workload}
let rates = new Map();  // iface -> [rx, tx] bits/s
let wrates = new Map(); // workload key -> [rx, tx] bits/s, its own side
let pprev = null;       // last peers tick: {t, c: Map peer key -> [rx, tx] bytes}
let prates = new Map(); // peer key -> [rx, tx] bits/s, the workload's side, between two ticks
let names = new Map();  // peer -> its names (peer_name, user, share, initiator, ...)
let refreshes = 0, lastOk = '', timer = 0, inflight = false, paused = false;
let side = 'host', last = null;  // the last read, to redraw on a switch
const hist = new Map();  // ownerKey -> [[t, rx, tx, owner's rx, owner's tx] bits/s, ...]
d.documentElement.classList.remove('nojs');

const str = v => v == null ? '' : String(v);
const num = v => typeof v === 'number' && isFinite(v) ? v : NaN;
const cmp = (a, b) => a < b ? -1 : a > b ? 1 : 0;
const byIface = (a, b) => cmp(str(a.interface), str(b.interface));
const rank = k => (KINDS.indexOf(k) + KINDS.length + 1) % (KINDS.length + 1);  // unknown kinds last
const numAttr = v => isNaN(v) ? '' : String(Math.round(v * 1000) / 1000);
const attr = (e, a) => str(e.getAttribute(a));
const setText = (e, t) => { if (e.textContent !== t) e.textContent = t; };
const setAttr = (e, a, v) => { if (e.getAttribute(a) !== v) e.setAttribute(a, v); };
const add = (a, b) => isNaN(b) ? a : (isNaN(a) ? 0 : a) + b;
// A counter that went down (reset) counts as 0 for the interval.
const rate = (now, was, dt) => isNaN(now) || isNaN(was) ? NaN : now >= was ? (now - was) * 8 / dt : 0;
function el(tag, cls, text, attrs) {
  const e = d.createElement(tag);
  if (cls) e.className = cls;
  if (text) e.textContent = text;
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}

// Bits/s, 3 significant digits: "0 b/s", "999 b/s", "1.23 kb/s", "45.6 Mb/s".
function fmtRate(bps) {
  if (isNaN(bps)) return '';
  if (bps <= 0) return '0 b/s';
  let u = 0;
  while (u < 4 && Number(bps.toPrecision(3)) >= 1000) { bps /= 1000; u++; }
  return bps.toPrecision(3) + ' ' + UNITS[u];
}
// Bytes, 3 significant digits, as html.rs writes them: "512 B", "1.23 kB".
function fmtBytes(n) {
  let b = num(n), u = 0;
  if (isNaN(b)) return '';
  while (u < 5 && Number(b.toPrecision(3)) >= 1000) { b /= 1000; u++; }
  return (u ? b.toPrecision(3) : String(b)) + ' ' + BYTES[u];
}
const fmtPct = p => p.toFixed(1) + ' %';
// Link speed in bytes/s: "2.5 Gb/s", "10 Gb/s", "100 Mb/s"; '' if unknown.
function fmtSpeed(bytes) {
  let b = num(bytes) * 8, u = 0;
  if (!(b > 0)) return '';
  while (u < 3 && b >= 1000) { b /= 1000; u++; }
  return Math.round(b * 100) / 100 + ' ' + UNITS[u];
}

// Make the `sel` children of `parent` (after node `after`) match `items` in
// order: reuse elements by key, create the missing, drop the rest, move only
// what is out of place (keeps text selection and focus).
function sync(parent, sel, keyOf, items, key, make, update, after) {
  const have = new Map();
  parent.querySelectorAll(sel).forEach(n => { const k = keyOf(n); if (have.has(k)) n.remove(); else have.set(k, n); });
  const els = items.map(it => {
    const k = key(it);
    let n = have.get(k);
    if (n) have.delete(k); else n = make(it);
    update(n, it);
    return n;
  });
  have.forEach(n => n.remove());
  let cur = after ? after.nextElementSibling : parent.firstElementChild;
  for (const n of els) {
    if (n === cur) cur = cur.nextElementSibling; else parent.insertBefore(n, cur);
  }
}
const ifName = it => str(it.interface), ifKey = e => attr(e, 'data-interface');
const wlKey = w => str(w.instance_type) + '\0' + str(w.instance);
const wlRowKey = e => attr(e, 'data-type') + '\0' + attr(e, 'data-workload');
const ownerKey = (kind, name) => kind + '\0' + name;
const peerKey = p => wlKey(p) + '\0' + str(p.peer) + '\0' + str(p.protocol) + '\0' + str(p.side);
// The rows under an owner's interfaces: workloads and their peers.
const subRowKey = e => e.classList.contains('peer')
  ? 'p\0' + [attr(e, 'data-type'), attr(e, 'data-workload'), attr(e, 'data-peer'), attr(e, 'data-protocol'),
    attr(e, 'data-side')].join('\0')
  : 'w\0' + wlRowKey(e);
const subKey = it => it.w ? 'w\0' + wlKey(it.w) : 'p\0' + wlKey(it.of) + '\0' + it.peer + '\0' + it.protocol + '\0' + it.side;
const sumRates = rs => rs.reduce((a, r) => r ? [add(a[0], r[0]), add(a[1], r[1])] : a, [NaN, NaN]);
const busy = r => r && !isNaN(r[0] + r[1]) ? r[0] + r[1] : -1;
const bytesOf = p => (num(p.rx_bytes) || 0) + (num(p.tx_bytes) || 0);
const itOwner = it => it.owner || {};
const swaps = it => WORKLOADS.has(str(itOwner(it).kind)) && PAIRED.has(str(it.instance_type));
// An interface's rates as the chosen side sees them.
const seen = (it, r) => r && side === 'owner' && swaps(it) ? [r[1], r[0]] : r;
function setRates(e, r) {
  const rx = r ? r[0] : NaN, tx = r ? r[1] : NaN;
  setAttr(e, 'data-rx-bps', numAttr(rx));
  setAttr(e, 'data-tx-bps', numAttr(tx));
  setText($(e, '.rx-rate'), fmtRate(rx));
  setText($(e, '.tx-rate'), fmtRate(tx));
}
function setState(td, s) { setAttr(td, 'data-state', s); setText(td, s); }
function newRow(cls, name, cells) {
  const tr = el('tr', cls, '', { 'data-interface': name, 'data-rx-bps': '', 'data-tx-bps': '' });
  tr.append(el('td', '', name), ...cells.map(c => el('td', c)));
  return tr;
}
function newWorkload(w) {
  const tr = el('tr', 'wl', '', { 'data-workload': str(w.instance), 'data-type': str(w.instance_type),
    'data-rx-bps': '', 'data-tx-bps': '' });
  const name = el('td', '', str(w.instance));
  name.append(el('small', 'totals'));
  tr.append(name, el('td', '', str(w.instance_type)), el('td'), el('td'), el('td'), el('td', 'rx-rate'), el('td', 'tx-rate'));
  return tr;
}
function newPeer(it) {
  const tr = el('tr', 'peer', '', { 'data-workload': str(it.of.instance), 'data-type': str(it.of.instance_type),
    'data-peer': it.peer, 'data-protocol': it.protocol, 'data-side': it.side, 'data-rx-bps': '', 'data-tx-bps': '' });
  tr.append(el('td'), el('td', '', it.protocol), el('td'), el('td'), el('td'), el('td', 'rx-rate'), el('td', 'tx-rate'));
  return tr;
}
function newClient(c) {
  const tr = el('tr', 'client', '', { 'data-peer': c.peer, 'data-protocol': c.protocol, 'data-rx-bps': '', 'data-tx-bps': '' });
  tr.append(el('td'), el('td', '', c.protocol), el('td'), el('td', 'rx-rate'), el('td', 'tx-rate'));
  return tr;
}
// What a row of `protocol` says of its peer's sessions (as html.rs): SMB's
// users and shares, iSCSI's initiators.
function about(protocol, n) {
  const part = (l, v) => v ? [l + (v.includes(',') ? 's ' : ' ') + v.split(',').join(', ')] : [];
  return (protocol === 'smb' ? part('user', str(n.user)).concat(part('share', str(n.share)))
    : protocol === 'iscsi' ? part('initiator', str(n.initiator)) : []).join(' \u00b7 ');
}
// A peer's cell: its name with the address after it (or the address
// alone), what its protocol knows of it, then the totals.
function setWho(td, peer, protocol) {
  const n = names.get(peer) || {}, name = str(n.peer_name);
  if (!$(td, '.about')) {
    const t = $(td, '.totals') || el('small', 'totals');
    td.textContent = '';
    td.append(el('span', 'who'), ' ', el('span', 'addr'), el('small', 'about'), t);
  }
  setText($(td, '.who'), name || peer);
  setText($(td, '.addr'), name ? peer : '');
  setText($(td, '.about'), about(protocol, n));
}
const totals = (about, rx, tx) => (about ? about + ' \u00b7 ' : '') + `rx ${fmtBytes(rx)} \u00b7 tx ${fmtBytes(tx)}`;
// A workload's rows under it: its busiest peers by name (by rate, then
// bytes), then one `other` row with the rest, if they counted anything.
function peerRows(w, list) {
  const named = list.filter(p => str(p.peer) !== 'other').sort((a, b) =>
    busy(prates.get(peerKey(b))) - busy(prates.get(peerKey(a))) || bytesOf(b) - bytesOf(a)
    || cmp(str(a.peer), str(b.peer)) || cmp(str(a.protocol), str(b.protocol)) || cmp(str(a.side), str(b.side)));
  const rows = named.slice(0, PEER_ROWS).map(p => ({ of: w, peer: str(p.peer), protocol: str(p.protocol),
    side: str(p.side), about: SIDES[str(p.side)] || '', rx: num(p.rx_bytes), tx: num(p.tx_bytes),
    r: prates.get(peerKey(p)) }));
  const rest = named.slice(PEER_ROWS).concat(list.filter(p => str(p.peer) === 'other'));
  const rx = rest.reduce((a, p) => a + (num(p.rx_bytes) || 0), 0), tx = rest.reduce((a, p) => a + (num(p.tx_bytes) || 0), 0);
  if (rx > 0 || tx > 0) {
    rows.push({ of: w, peer: 'other', protocol: '', side: '', about: 'the rest of its peers', rx, tx,
      r: sumRates(rest.map(p => prates.get(peerKey(p)))) });
  }
  return rows;
}
// Who uses this host's services: the server side's peers by peer and
// protocol across workloads, busiest first, `other` last.
function clients(peers) {
  if (!clientsEl || !clientBody) return;
  const by = new Map();
  for (const p of peers) {
    if (str(p.side) !== 'server') continue;
    const k = str(p.peer) + '\0' + str(p.protocol);
    let c = by.get(k);
    if (!c) by.set(k, c = { k, peer: str(p.peer), protocol: str(p.protocol), rx: 0, tx: 0, r: [NaN, NaN], via: [] });
    c.rx += num(p.rx_bytes) || 0; c.tx += num(p.tx_bytes) || 0;
    c.r = sumRates([c.r, prates.get(peerKey(p))]);
    if (!c.via.includes(str(p.instance))) c.via.push(str(p.instance));
  }
  // An `other` that counted nothing is no one.
  const rows = [...by.values()].filter(c => c.peer !== 'other' || c.rx > 0 || c.tx > 0).sort((a, b) => (a.peer === 'other') - (b.peer === 'other')
    || busy(b.r) - busy(a.r) || (b.rx + b.tx) - (a.rx + a.tx) || cmp(a.peer, b.peer) || cmp(a.protocol, b.protocol))
    .slice(0, CLIENT_ROWS);
  sync(clientBody, 'tr.client', e => attr(e, 'data-peer') + '\0' + attr(e, 'data-protocol'), rows, c => c.k, newClient,
    (tr, c) => {
      setWho(tr.cells[0], c.peer, c.protocol);
      setText($(tr, '.totals'), totals('', c.rx, c.tx));
      setText(tr.cells[2], c.via.join(', '));
      setRates(tr, isNaN(c.r[0]) ? null : c.r);
    });
  clientsEl.hidden = !rows.length;
}
function newOwner(g) {
  const tb = el('tbody', 'owner', '', { 'data-kind': g.kind, 'data-name': g.name, 'data-rx-bps': '', 'data-tx-bps': '' });
  const tr = el('tr', 'owner-head'), th = el('th', '', '', { colspan: '5' });
  th.append(el('span', 'kind', g.kind), ' ', el('span', 'name', g.name));
  tr.append(th, el('td', 'rx-rate'), el('td', 'tx-rate'));
  tb.append(tr);
  return tb;
}

// The interfaces and workloads under their owners, with each owner's rates
// from both sides.
function group(list, wl) {
  const groups = new Map();
  const of = it => {
    const o = itOwner(it), kind = str(o.kind), name = str(o.name), k = ownerKey(kind, name);
    let g = groups.get(k);
    if (!g) groups.set(k, g = { k, kind, name, ifs: [], wls: [], rx: NaN, tx: NaN, orx: NaN, otx: NaN, wrx: NaN, wtx: NaN });
    return g;
  };
  for (const it of list) {
    const r = rates.get(ifName(it)), g = of(it);
    g.ifs.push(it);
    if (r) {
      const s = swaps(it) ? 1 : 0;
      g.rx = add(g.rx, r[0]); g.tx = add(g.tx, r[1]);
      g.orx = add(g.orx, r[s]); g.otx = add(g.otx, r[1 - s]);
    }
  }
  for (const w of wl) {
    const r = wrates.get(wlKey(w)), g = of(w);
    g.wls.push(w);
    if (r) { g.wrx = add(g.wrx, r[0]); g.wtx = add(g.wtx, r[1]); }
  }
  // An owner with interfaces is counted by them (its workloads' sockets are
  // behind them); one without by its workloads, the same on either side.
  groups.forEach(g => {
    if (!g.ifs.length) { g.rx = g.orx = g.wrx; g.tx = g.otx = g.wtx; }
  });
  return groups;
}

// The line under the NICs: the workloads' and VMs' traffic against the
// uplinks' (physical NICs and bonds; a bond's ports are in the bond), per
// direction, over the same interval. Loopback and local traffic count as
// named too, so the raw share can pass 100 %: shown capped, and said so.
function named(list, groups, wl) {
  if (!namedEl) return;
  let state = 'ok', text;
  const up = list.filter(it => itOwner(it).kind === 'nic' && !str(it.bond));
  const ur = up.map(it => rates.get(ifName(it))).filter(Boolean);
  const pct = { rx: NaN, tx: NaN }, raw = { rx: NaN, tx: NaN };
  if (!wl) {
    state = 'off';
    text = 'Traffic per workload is not counted on this host, so the page cannot say how much of the uplinks\u2019 traffic it names.';
  } else if (!up.length) {
    state = 'none';
    text = 'No physical NIC or bond here: no uplink traffic to name.';
  } else if (!ur.length) {
    state = 'wait';
    text = 'Named share of the uplinks\u2019 traffic: after the next read.';
  } else {
    let nrx = 0, ntx = 0, urx = 0, utx = 0;
    for (const r of ur) { urx = add(urx, r[0]); utx = add(utx, r[1]); }
    for (const w of wl) { const r = wrates.get(wlKey(w)); if (r) { nrx = add(nrx, r[0]); ntx = add(ntx, r[1]); } }
    groups.forEach(g => { if (g.kind === 'vm') { nrx = add(nrx, g.orx); ntx = add(ntx, g.otx); } });
    const part = (dir, n, u, verb) => {
      if (!(u > 0)) return `the uplinks ${verb} nothing`;
      raw[dir] = n / u * 100;
      pct[dir] = Math.min(raw[dir], 100);
      return `${fmtPct(pct[dir])} of the ${fmtRate(u)} the uplinks ${verb} (${fmtPct(100 - pct[dir])} not)`;
    };
    text = `Named by workloads and VMs: ${part('tx', ntx, utx, 'sent')}; ${part('rx', nrx, urx, 'received')}.`;
    if (raw.tx > 100 || raw.rx > 100) {
      state = 'capped';
      text += ' Capped at 100 %: they exchanged more than the uplinks carried, the rest on the host.';
    }
  }
  setAttr(namedEl, 'data-named', state);
  for (const dir of ['rx', 'tx']) {
    setAttr(namedEl, `data-${dir}-pct`, numAttr(pct[dir]));
    setAttr(namedEl, `data-${dir}-raw`, numAttr(raw[dir]));
  }
  setText(namedEl, text);
}

// One point per owner for a read with fresh rates; owners gone are forgotten.
function record(t, groups) {
  groups.forEach(g => {
    if (isNaN(g.rx)) return;
    let h = hist.get(g.k);
    if (!h) hist.set(g.k, h = []);
    h.push([t, ...[g.rx, g.tx, g.orx, g.otx].map(v => isNaN(v) ? 0 : v)]);
    while (h.length > POINTS || h[0][0] < t - SPAN) h.shift();
  });
  hist.forEach((_, k) => { if (!groups.has(k)) hist.delete(k); });
}

function svg(tag, attrs) {
  const e = d.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}
// The sparkline in `parent` (made on first use): rx and tx of the last SPAN
// seconds, on one scale (the peak, at least 1 kb/s), the newest point at
// the right edge, the oldest at the left one (a young tab's few seconds
// span the width, not a dash at its end). `own`: the owner's side.
function spark(parent, key, own) {
  let s = $(parent, 'svg.spark');
  if (!s) {
    const line = cls => svg('path', { class: cls, d: '', 'vector-effect': 'non-scaling-stroke' });
    s = svg('svg', { class: 'spark', viewBox: `0 0 ${SW} ${SH}`, preserveAspectRatio: 'none', role: 'img',
      'data-max': '' });
    s.append(svg('title'), line('rx'), line('tx'));
    parent.prepend(s);
  }
  const h = hist.get(key) || [], i = own ? 3 : 1, end = h.length ? h[h.length - 1][0] : 0;
  let rx = 0, tx = 0;
  for (const p of h) { rx = Math.max(rx, p[i]); tx = Math.max(tx, p[i + 1]); }
  const top = Math.max(rx, tx, 1000), span = h.length > 1 ? end - h[0][0] : SPAN;
  for (let n = 0; n < 2; n++) {
    let path = '', was = -Infinity;
    for (const p of h) {
      const x = SW - (end - p[0]) * SW / span, y = SH - 1 - p[i + n] * (SH - 2) / top;
      path += (p[0] - was > GAP ? 'M' : 'L') + x.toFixed(1) + ' ' + y.toFixed(1);
      was = p[0];
    }
    setAttr(s.children[n + 1], 'd', path);
  }
  setAttr(s, 'data-max', numAttr(Math.max(rx, tx)));
  s.classList.toggle('none', h.length < 2);  // no stray axis before a line
  setText(s.firstChild, h.length < 2 ? 'No history yet'
    : `Last ${Math.round(end - h[0][0])} s: rx peak ${fmtRate(rx)}, tx peak ${fmtRate(tx)}`);
}

function render(list, wl, peers, loop) {
  last = [list, wl, peers, loop];
  const byWl = new Map();
  for (const p of peers || []) {
    const k = wlKey(p);
    if (!byWl.has(k)) byWl.set(k, []);
    byWl.get(k).push(p);
  }
  const groups = group(list, wl || []), own = side === 'owner';
  const total = g => isNaN(g.rx) ? -1 : g.rx + g.tx;
  // Busiest first; owners without a rate yet last; ties: kind rank, kind, name.
  const sorted = [...groups.values()].sort((a, b) =>
    total(b) - total(a) || rank(a.kind) - rank(b.kind) || cmp(a.kind, b.kind) || cmp(a.name, b.name));
  sync(owners, 'tbody.owner', e => ownerKey(attr(e, 'data-kind'), attr(e, 'data-name')), sorted, g => g.k, newOwner,
    (tb, g) => {
      setRates(tb, isNaN(g.rx) ? null : own ? [g.orx, g.otx] : [g.rx, g.tx]);
      spark($(tb, 'tr.owner-head').cells[0], g.k, own);
      sync(tb, 'tr.iface', ifKey, g.ifs.sort(byIface), ifName,
        it => newRow('iface', ifName(it), ['', '', '', '', 'rx-rate', 'tx-rate']),
        (tr, it) => {
          const c = tr.cells, name = ifName(it), inst = str(it.instance);
          let small = $(c[0], 'small');
          if (inst && inst !== name && inst !== g.name) {
            if (!small) c[0].append(small = el('small'));
            setText(small, inst);
          } else if (small) small.remove();
          setText(c[1], str(it.instance_type));
          setText(c[2], str(it.bridge));
          setText(c[3], str(it.vlan));
          setState(c[4], str(it.state));
          setRates(tr, seen(it, rates.get(name)));
        }, $(tb, 'tr.owner-head'));
      const ifs = tb.querySelectorAll('tr.iface');
      // A workload's own sockets, then its peers: never swapped.
      const subs = [];
      for (const w of g.wls) subs.push({ w }, ...peerRows(w, byWl.get(wlKey(w)) || []));
      sync(tb, 'tr.wl, tr.peer', subRowKey, subs, subKey, it => it.w ? newWorkload(it.w) : newPeer(it), (tr, it) => {
        const w = it.w;
        if (!w) {
          setWho(tr.cells[0], it.peer, it.protocol);
          setText($(tr, '.totals'), totals(it.about, it.rx, it.tx));
          setRates(tr, it.r && !isNaN(it.r[0]) ? it.r : null);
          return;
        }
        setText($(tr, '.totals'), `sockets: rx ${fmtBytes(w.rx_bytes)} \u00b7 tx ${fmtBytes(w.tx_bytes)}`);
        setText(tr.cells[1], str(w.instance_type));
        setRates(tr, wrates.get(wlKey(w)));
      }, ifs.length ? ifs[ifs.length - 1] : $(tb, 'tr.owner-head'));
    }, $(owners, 'thead'));
  named(list, groups, wl);
  clients(peers || []);
  if (loopBody) {
    sync(loopBody, 'tr.loop', ifKey, loop.sort(byIface), ifName, it => newRow('loop', ifName(it), ['', 'rx-rate', 'tx-rate']),
      (tr, it) => { setText(tr.cells[1], str(itOwner(it).name)); setRates(tr, rates.get(ifName(it))); });
    loopEl.hidden = !loop.length;
  }

  sync(nicBody, 'tr.nic', ifKey, list.filter(it => itOwner(it).kind === 'nic').sort(byIface), ifName,
    it => newRow('nic', ifName(it), ['', '', 'rx-rate', 'tx-rate', 'util']),
    (tr, it) => {
      const r = rates.get(ifName(it)), cap = num(it.speed_bytes) * 8, td = $(tr, '.util');
      // Full duplex: the busier direction's share of the link speed.
      const util = r && cap > 0 ? Math.max(r[0], r[1]) / cap * 100 : NaN;
      let m = $(td, 'meter');
      setState(tr.cells[1], str(it.state));
      setText(tr.cells[2], fmtSpeed(it.speed_bytes));
      setRates(tr, r);
      // A NIC is its own owner: its series is that owner's.
      spark(tr.cells[0], ownerKey('nic', str(itOwner(it).name)), false);
      setAttr(tr, 'data-util', numAttr(util));
      if (isNaN(util)) {
        if (m) m.remove();
        setText(td, cap > 0 ? '' : '\u2014');
        return;
      }
      if (!m) {
        td.textContent = '';
        td.append(el('span', 'pct'), m = el('meter', '', '', { min: 0, max: 100, low: 50, high: 80, optimum: 0 }));
      }
      m.value = Math.min(util, 100);
      setText(td.firstChild, util.toFixed(1) + ' %');
    });
}

function apply(data) {
  const t = data ? num(data.time) : NaN;
  let list = data && data.interfaces;
  if (isNaN(t) || !Array.isArray(list)) throw new Error('bad response');
  list = list.filter(it => it && it.interface != null);
  // Absent where the kernel does not count per workload.
  const wl = Array.isArray(data.workloads) ? data.workloads.filter(w => w && w.instance != null) : null;
  // Absent where the kernel does not count per peer; they change once a tick.
  const peers = Array.isArray(data.peers) ? data.peers.filter(p => p && p.instance != null && p.peer != null) : null;
  const pt = num(data.peers_time);
  names = new Map((Array.isArray(data.names) ? data.names : []).filter(n => n && n.peer != null).map(n => [str(n.peer), n]));
  const counts = (xs, key) => new Map(xs.map(it => [key(it), [num(it.rx_bytes), num(it.tx_bytes)]]));
  const deltas = (now, was, dt) => {
    const out = new Map();
    now.forEach((c, k) => {
      const b = was.get(k);
      if (b) out.set(k, [rate(c[0], b[0], dt), rate(c[1], b[1], dt)]);
    });
    return out;
  };
  const cur = { t, c: counts(list, ifName), w: counts(wl || [], wlKey) };
  let fresh = false;
  if (prev && t > prev.t) {
    fresh = true;
    rates = deltas(cur.c, prev.c, t - prev.t);
    wrates = deltas(cur.w, prev.w, t - prev.t);
    prev = cur;
  } else if (!prev || t < prev.t) {  // first read, or the server clock went back
    rates = new Map();
    wrates = new Map();
    prev = cur;
  }                                   // same time = same read: keep the rates
  if (peers && !isNaN(pt)) {
    const pc = counts(peers, peerKey);
    if (pprev && pt > pprev.t) {
      prates = deltas(pc, pprev.c, pt - pprev.t);
      pprev = { t: pt, c: pc };
    } else if (!pprev || pt < pprev.t) {
      prates = new Map();
      pprev = { t: pt, c: pc };
    }                                 // the same tick: keep its rates
  } else {
    prates = new Map();
    pprev = null;
  }
  // Loopback apart: in no owner's figures, rank or sparkline.
  const loop = list.filter(isLo);
  list = list.filter(it => !isLo(it));
  if (fresh) record(t, group(list, wl || []));
  render(list, wl, peers, loop);
  body.setAttribute('data-refreshes', String(++refreshes));
  lastOk = new Date().toLocaleTimeString();
  status(paused ? 'paused' : 'ok');
}

function status(state, why) {
  const t = lastOk ? 'updated ' + lastOk : 'no data yet';
  body.setAttribute('data-live', state);
  setText(statusEl, state === 'error' ? `exporter unreachable${why ? ` (${why})` : ''} \u00b7 ${lastOk ? 'last ' : ''}${t}`
    : state === 'paused' ? 'Paused \u00b7 ' + t : state === 'ok' ? 'Live \u00b7 ' + t : 'Connecting\u2026');
}

async function tick() {
  timer = 0;
  if (paused || d.hidden || inflight) return;
  inflight = true;
  const start = Date.now(), ctl = new AbortController(), to = setTimeout(() => ctl.abort(), TIMEOUT);
  try {
    const res = await fetch(API, { cache: 'no-store', signal: ctl.signal, headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    apply(await res.json());
  } catch (e) {
    status('error', e.name === 'AbortError' ? 'timeout' : /^(HTTP|bad)/.test(e.message) ? e.message : '');
  }
  clearTimeout(to);
  inflight = false;
  if (!paused && !d.hidden) timer = setTimeout(tick, Math.max(250, PERIOD - (Date.now() - start)));
}
// Resuming after a pause or a hidden tab: the next rates come from two fresh
// reads, not averaged over the whole gap.
const kick = () => { if (!timer && !inflight && !paused && !d.hidden) { prev = pprev = null; tick(); } };
d.addEventListener('visibilitychange', kick);

if (pauseBtn) {
  pauseBtn.hidden = false;
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.setAttribute('aria-pressed', String(paused));
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    if (paused) { clearTimeout(timer); timer = 0; status('paused'); } else kick();
  });
}

if (sideEl) {
  try { if (localStorage.getItem(SIDE_KEY) === 'owner') side = 'owner'; } catch (e) { /* storage off */ }
  sideEl.querySelectorAll('input').forEach(i => { i.checked = i.value === side; });
  body.setAttribute('data-side', side);
  sideEl.hidden = false;
  sideEl.addEventListener('change', e => {
    side = e.target.value === 'owner' ? 'owner' : 'host';
    body.setAttribute('data-side', side);
    try { localStorage.setItem(SIDE_KEY, side); } catch (e) { /* storage off */ }
    if (last) render(...last);
  });
}

status('wait');
tick();
})();
