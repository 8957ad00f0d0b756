// xmpp-gateway control panel: plain JavaScript, no build step, no external resources. Every
// view is built from the JSON API under /api (the same API scripts use); writes carry the
// session's CSRF token and, for edits, the ETag the form was read with (a stale form is refused).
'use strict';

const PROPS = ['Identity', 'AdditionalDomains', 'ConnectionLimit', 'Description', 'EnableKeepAlive', 'PartnerType',
  'ProxyFqdn', 'SaslNegotiation', 'SupportDialbackNegotiation', 'TlsNegotiation'];
const NEGOTIATION = ['Required', 'Optional', 'NotSupported'];
const PARTNER_TYPES = ['Federated', 'PublicVerified', 'PublicUnverified'];
const DEFAULTS = { AdditionalDomains: [], ConnectionLimit: null, Description: null, EnableKeepAlive: true, PartnerType: 'PublicUnverified',
  ProxyFqdn: null, SaslNegotiation: 'Required', SupportDialbackNegotiation: true, TlsNegotiation: 'Required' };
const HELP = {
  Identity: 'Primary domain of the partner, e.g. partner.example.',
  AdditionalDomains: 'More domains of the same partner, separated by commas.',
  ConnectionLimit: 'Authenticated streams per direction; empty: the gateway\'s partnerConnectionLimit.',
  Description: 'Free text shown in listings.',
  EnableKeepAlive: 'The partner must show traffic within keepAliveIntervalSeconds.',
  PartnerType: 'Trust tier: PublicUnverified users reach local users only after these reached out first.',
  ProxyFqdn: 'host[:port] to connect to instead of DNS SRV.',
  SaslNegotiation: 'Required: SASL EXTERNAL (certificates) is the only way in.',
  SupportDialbackNegotiation: 'Whether Server Dialback may authenticate this partner\'s streams.',
  TlsNegotiation: 'Required: only STARTTLS is offered first.',
};

const state = { user: null, role: null, csrf: null, timer: null };

// ---- small DOM helpers (text only: nothing from the server is parsed as HTML) ----
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
const main = () => document.getElementById('main');
function show(...nodes) {
  const m = main();
  m.replaceChildren(...nodes);
}
function say(text, bad) {
  const s = document.getElementById('status');
  s.textContent = text || '';
  s.className = bad ? 'bad' : '';
}
function fmt(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (Array.isArray(v)) return v.join(', ');
  return String(v);
}
function age(s) {
  s = Math.max(0, Math.floor(s));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}
const canWrite = () => state.role === 'CsAdministrator';

// ---- the API ----
class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}
async function api(method, path, body, headers) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json', ...(headers || {}) } };
  if (method !== 'GET' && state.csrf) init.headers['x-csrf-token'] = state.csrf;
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = { error: text }; }
  if (res.status === 401 && path !== '/login') {
    state.user = null;
    renderLogin('Your session has ended; log in again.');
    throw new ApiError(401, json);
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return { json, etag: res.headers.get('etag') };
}

// ---- routing ----
function stopPolling() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}
function poll(fn, ms) {
  stopPolling();
  state.timer = setInterval(() => { fn().catch(() => undefined); }, ms);
}
async function route() {
  stopPolling();
  if (!state.user) return;
  const hash = location.hash || '#/partners';
  for (const a of document.querySelectorAll('nav a')) {
    if (hash.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const [, view, arg] = /^#\/([a-z]+)(?:\/(.*))?$/.exec(hash) || [];
  try {
    if (view === 'new') await renderForm(null);
    else if (view === 'edit') await renderForm(decodeURIComponent(arg));
    else if (view === 'partner') await renderPartner(decodeURIComponent(arg));
    else if (view === 'streams') await renderStreams();
    else if (view === 'audit') await renderAudit();
    else await renderPartners(arg ? decodeURIComponent(arg) : '');
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) say(err.message, true);
  }
}

// ---- login ----
function renderLogin(message) {
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  const err = h('p', { class: 'error', id: 'login-error', role: 'alert' }, message || '');
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'current-password', required: true, 'aria-describedby': 'token-hint login-error' });
  const form = h('form', { id: 'login', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const { json } = await api('POST', '/login', { token: input.value });
      state.user = json.user;
      state.role = json.role;
      state.csrf = json.csrf;
      input.value = '';
      loggedIn();
    } catch (e2) {
      err.textContent = e2.message;
      input.focus();
    }
  } },
  h('h2', {}, 'Log in'),
  h('div', { class: 'field' }, h('label', { for: 'token' }, 'Admin token'), input,
    h('span', { class: 'hint', id: 'token-hint' }, 'From xmpp-gateway admin-user add NAME --role ROLE (shown once).')),
  h('button', { type: 'submit', class: 'primary' }, 'Log in'), err);
  show(form);
  input.focus();
}
function loggedIn() {
  document.getElementById('nav').hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('who-name').textContent = `${state.user} (${state.role})`;
  say('');
  if (!location.hash) location.hash = '#/partners';
  else route();
}

// ---- partner list (Get-CsXmppAllowedPartner) ----
async function renderPartners(filter) {
  const q = filter ? `?filter=${encodeURIComponent(filter)}` : '';
  const { json: partners } = await api('GET', `/api/partners${q}`);
  const input = h('input', { type: 'text', id: 'filter', name: 'filter', value: filter, placeholder: '*.org', 'aria-describedby': 'filter-hint' });
  const toolbar = h('form', { class: 'toolbar', role: 'search', onsubmit: (e) => {
    e.preventDefault();
    location.hash = input.value ? `#/partners/${encodeURIComponent(input.value)}` : '#/partners';
  } },
  h('div', {}, h('label', { for: 'filter' }, 'Filter'), input, h('div', { class: 'hint muted', id: 'filter-hint' }, 'Identity wildcards as -Filter takes them: *.org, contoso.*')),
  h('button', { type: 'submit' }, 'Apply'),
  canWrite() ? h('button', { type: 'button', id: 'new-partner', class: 'primary', onclick: () => { location.hash = '#/new'; } }, 'New…') : null);
  const rows = partners.map((p) => {
    const open = () => { location.hash = canWrite() ? `#/edit/${encodeURIComponent(p.Identity)}` : `#/partner/${encodeURIComponent(p.Identity)}`; };
    return h('tr', { tabindex: 0, 'data-identity': p.Identity, ondblclick: open, onkeydown: (e) => { if (e.key === 'Enter') open(); } },
      PROPS.map((name, i) => h('td', {}, i === 0 ? h('a', { href: `#/partner/${encodeURIComponent(p.Identity)}` }, p.Identity) : fmt(p[name]))));
  });
  const table = h('table', { id: 'partners' },
    h('caption', { class: 'muted' }, `${partners.length} partner${partners.length === 1 ? '' : 's'}${filter ? ` matching ${filter}` : ''}. ${canWrite() ? 'Double-click a row (or press Enter on it) to edit.' : ''}`),
    h('thead', {}, h('tr', {}, PROPS.map((p) => h('th', { scope: 'col' }, p)))), h('tbody', {}, rows));
  show(h('h2', {}, 'XMPP Federated Partners'), toolbar, table);
}

// ---- new / edit form ----
function field(name, control, extra) {
  return h('div', { class: 'field', id: `field-${name}` }, h('label', { for: `f-${name}` }, name), control,
    h('span', { class: 'hint muted', id: `hint-${name}` }, HELP[name] || ''), h('span', { class: 'field-error', id: `err-${name}`, role: 'alert' }), extra || null);
}
function select(name, options, value) {
  return h('select', { id: `f-${name}`, name, 'aria-describedby': `hint-${name} err-${name}` }, options.map((o) => h('option', { value: o, selected: o === value }, o)));
}
function checkbox(name, value) {
  return h('input', { type: 'checkbox', id: `f-${name}`, name, checked: value, 'aria-describedby': `hint-${name} err-${name}` });
}
function text(name, value, attrs) {
  return h('input', { type: 'text', id: `f-${name}`, name, value: value ?? '', 'aria-describedby': `hint-${name} err-${name}`, ...(attrs || {}) });
}

async function renderForm(identity) {
  let record = { Identity: '', ...DEFAULTS };
  let etag = null;
  if (identity !== null) {
    const got = await api('GET', `/api/partners/${encodeURIComponent(identity)}`);
    record = got.json;
    etag = got.etag;
  }
  const isNew = identity === null;
  const form = h('form', { id: 'partner-form', novalidate: true },
    field('Identity', text('Identity', record.Identity, isNew ? { required: true, 'aria-required': 'true' } : { readonly: true })),
    field('AdditionalDomains', text('AdditionalDomains', record.AdditionalDomains.join(', '))),
    field('TlsNegotiation', select('TlsNegotiation', NEGOTIATION, record.TlsNegotiation)),
    field('SaslNegotiation', select('SaslNegotiation', NEGOTIATION, record.SaslNegotiation)),
    field('SupportDialbackNegotiation', checkbox('SupportDialbackNegotiation', record.SupportDialbackNegotiation)),
    field('EnableKeepAlive', checkbox('EnableKeepAlive', record.EnableKeepAlive)),
    field('PartnerType', select('PartnerType', PARTNER_TYPES, record.PartnerType)),
    field('ConnectionLimit', h('input', { type: 'number', id: 'f-ConnectionLimit', name: 'ConnectionLimit', min: 1, value: record.ConnectionLimit ?? '', 'aria-describedby': 'hint-ConnectionLimit err-ConnectionLimit' })),
    field('ProxyFqdn', text('ProxyFqdn', record.ProxyFqdn)),
    field('Description', h('textarea', { id: 'f-Description', name: 'Description', 'aria-describedby': 'hint-Description err-Description' }, record.Description ?? '')),
    h('div', { class: 'toolbar' },
      h('button', { type: 'submit', class: 'primary', id: 'review' }, 'Review change…'),
      isNew ? null : h('button', { type: 'button', class: 'danger', id: 'remove', onclick: () => reviewRemove(record.Identity, etag, review) }, 'Remove…'),
      h('a', { href: '#/partners' }, 'Cancel')));
  const review = h('section', { id: 'review-area', 'aria-live': 'polite' });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const value = readForm(form);
    let answer;
    try {
      ({ json: answer } = await api('POST', '/api/whatif', { action: isNew ? 'new' : 'set', identity: isNew ? undefined : record.Identity, record: value }));
    } catch (err) {
      say(err.message, true);
      return;
    }
    if (!answer.ok) {
      fieldError(form, answer.field, answer.error);
      return;
    }
    renderReview(review, answer, 'Save', async (confirmed) => {
      const force = answer.warnings.length > 0 && confirmed ? '?force=true' : '';
      try {
        if (isNew) await api('POST', `/api/partners${force}`, value);
        else await api('PUT', `/api/partners/${encodeURIComponent(record.Identity)}${force}`, value, etag ? { 'if-match': etag } : {});
        say(`Saved ${value.Identity || record.Identity}.`);
        location.hash = '#/partners';
      } catch (err) {
        if (err.status === 412) {
          review.replaceChildren(h('p', { class: 'error', role: 'alert', id: 'stale' }, err.message, ' ', h('a', { href: location.hash, onclick: (ev) => { ev.preventDefault(); route(); } }, 'Reload the form')));
        } else if (err.body && err.body.field) {
          review.replaceChildren();
          fieldError(form, err.body.field, err.message);
        } else say(err.message, true);
      }
    });
  });
  show(h('h2', {}, isNew ? 'New XMPP federated partner' : `Edit ${record.Identity}`), form, review);
  (isNew ? form.elements.Identity : form.elements.AdditionalDomains).focus();
}

function readForm(form) {
  const f = form.elements;
  const domains = f.AdditionalDomains.value.split(',').map((s) => s.trim()).filter(Boolean);
  const limit = f.ConnectionLimit.value.trim();
  return {
    Identity: f.Identity.value.trim(),
    AdditionalDomains: domains,
    ConnectionLimit: limit === '' ? null : /^\d+$/.test(limit) ? Number(limit) : limit,
    Description: f.Description.value === '' ? null : f.Description.value,
    EnableKeepAlive: f.EnableKeepAlive.checked,
    PartnerType: f.PartnerType.value,
    ProxyFqdn: f.ProxyFqdn.value.trim() === '' ? null : f.ProxyFqdn.value.trim(),
    SaslNegotiation: f.SaslNegotiation.value,
    SupportDialbackNegotiation: f.SupportDialbackNegotiation.checked,
    TlsNegotiation: f.TlsNegotiation.value,
  };
}
function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of form.querySelectorAll('.field.invalid')) el.classList.remove('invalid');
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}
function fieldError(form, name, message) {
  const target = document.getElementById(`err-${name}`);
  if (!target) {
    say(message, true);
    return;
  }
  target.textContent = message;
  document.getElementById(`field-${name}`).classList.add('invalid');
  const control = form.elements[name];
  if (control) {
    control.setAttribute('aria-invalid', 'true');
    control.focus();
  }
}

/** The what-if: warnings to confirm and the live streams the change would close; then the action. */
function renderReview(area, answer, verb, act) {
  const confirm = answer.warnings.length > 0
    ? h('input', { type: 'checkbox', id: 'confirm-warnings', name: 'confirm-warnings' })
    : null;
  const go = h('button', { type: 'button', class: verb === 'Remove' ? 'danger' : 'primary', id: 'confirm', disabled: answer.warnings.length > 0 }, verb);
  if (confirm) confirm.addEventListener('change', () => { go.disabled = !confirm.checked; });
  go.addEventListener('click', () => act(confirm ? confirm.checked : true));
  area.replaceChildren(h('div', { class: 'review' },
    h('h3', {}, 'What this change does'),
    answer.warnings.length > 0
      ? h('div', { class: 'warnings', id: 'warnings' }, h('p', {}, 'Warnings:'), h('ul', {}, answer.warnings.map((w) => h('li', {}, w))),
        h('div', { class: 'check' }, confirm, ' ', h('label', { for: 'confirm-warnings' }, 'I have read the warnings; save anyway')))
      : null,
    closeTable(answer.close),
    h('div', { class: 'toolbar' }, go, h('button', { type: 'button', onclick: () => area.replaceChildren() }, 'Back'))));
  (confirm || go).focus();
}
function closeTable(close) {
  if (close.length === 0) return h('p', { id: 'whatif-none' }, 'No live stream would be closed.');
  return h('div', {}, h('p', {}, `${close.length} live stream${close.length === 1 ? '' : 's'} would be closed:`),
    h('table', { id: 'whatif' }, h('thead', {}, h('tr', {}, ['Partner', 'Direction', 'Remote', 'Auth', 'Rule', 'Why'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, close.map((c) => h('tr', {}, [c.partner, c.stream.direction, c.stream.remoteDomain, c.stream.auth, c.rule, c.text].map((v) => h('td', {}, fmt(v))))))));
}

async function reviewRemove(identity, etag, area) {
  const { json: answer } = await api('POST', '/api/whatif', { action: 'remove', identity });
  if (!answer.ok) {
    say(answer.error, true);
    return;
  }
  renderReview(area, answer, 'Remove', async () => {
    try {
      await api('DELETE', `/api/partners/${encodeURIComponent(identity)}`, undefined, etag ? { 'if-match': etag } : {});
      say(`Removed ${identity}.`);
      location.hash = '#/partners';
    } catch (err) {
      area.replaceChildren(h('p', { class: 'error', role: 'alert', id: err.status === 412 ? 'stale' : 'remove-error' }, err.message));
    }
  });
}

// ---- one partner: record, live streams, refusals, traffic ----
function sparkline(points) {
  if (points.length < 2) points = [...Array(2 - points.length).fill(0), ...points];
  const w = 240, hgt = 40, max = Math.max(1, ...points);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', w); svg.setAttribute('height', hgt); svg.setAttribute('class', 'spark'); svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `stanzas per 5 seconds, last ${points.length} steps, latest ${points.at(-1) ?? 0}, peak ${Math.max(0, ...points)}`);
  const line = document.createElementNS(ns, 'polyline');
  const step = points.length > 1 ? w / (points.length - 1) : w;
  line.setAttribute('points', points.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`).join(' '));
  line.setAttribute('fill', 'none'); line.setAttribute('stroke', '#0a5bc4'); line.setAttribute('stroke-width', '1.5');
  svg.append(line);
  return svg;
}
function streamsTable(streams, id, withPartner) {
  if (streams.length === 0) return h('p', { id: `${id}-none` }, 'No live streams.');
  const cols = [...(withPartner ? ['Partner'] : []), 'Direction', 'Remote', 'TLS', 'Auth', 'Age', 'Stanzas in', 'Stanzas out', 'Bytes in', 'Bytes out'];
  return h('table', { id }, h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, streams.map((s) => h('tr', {}, [...(withPartner ? [s.partner] : []), s.direction, s.remoteDomain, s.tls || 'plain', s.auth, age(s.ageSeconds), s.stanzasIn, s.stanzasOut, s.bytesIn, s.bytesOut].map((v) => h('td', {}, fmt(v)))))));
}
function refusalsList(refusals, id) {
  if (refusals.length === 0) return h('p', { id: `${id}-none` }, 'No recent refusals.');
  return h('table', { id }, h('thead', {}, h('tr', {}, ['Time', 'Partner', 'Direction', 'Rule', 'Condition', 'Text'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, refusals.map((r) => h('tr', {}, [r.time, r.partner ?? '(not a partner)', r.direction, r.rule, r.condition, r.text].map((v) => h('td', {}, fmt(v)))))));
}
async function renderPartner(identity) {
  const [{ json: record, etag }, live] = await Promise.all([
    api('GET', `/api/partners/${encodeURIComponent(identity)}`),
    api('GET', `/api/streams?partner=${encodeURIComponent(identity)}`),
  ]);
  const liveArea = h('section', { id: 'live', 'aria-live': 'off' });
  const fill = (data) => liveArea.replaceChildren(
    h('h3', {}, 'Traffic'), sparkline(data.traffic), ' ', h('span', { class: 'muted' }, 'stanzas per 5 s, both directions'),
    h('h3', {}, 'Live streams'), streamsTable(data.streams, 'partner-streams', false),
    h('h3', {}, 'Recent refusals'), refusalsList(data.refusals, 'partner-refusals'));
  fill(live.json);
  const review = h('section', { id: 'review-area', 'aria-live': 'polite' });
  show(h('h2', {}, identity),
    h('dl', { class: 'record' }, PROPS.flatMap((p) => [h('dt', {}, p), h('dd', {}, fmt(record[p]))])),
    canWrite() ? h('div', { class: 'toolbar' },
      h('button', { type: 'button', id: 'edit', onclick: () => { location.hash = `#/edit/${encodeURIComponent(identity)}`; } }, 'Edit…'),
      h('button', { type: 'button', class: 'danger', id: 'remove', onclick: () => reviewRemove(identity, etag, review) }, 'Remove…')) : null,
    review, liveArea);
  poll(async () => fill((await api('GET', `/api/streams?partner=${encodeURIComponent(identity)}`)).json), 2000);
}

// ---- all live streams ----
async function renderStreams() {
  const area = h('section', { id: 'all-live' });
  const fill = (data) => area.replaceChildren(h('h3', {}, 'Streams'), streamsTable(data.streams, 'streams', true), h('h3', {}, 'Recent refusals'), refusalsList(data.refusals, 'refusals'));
  fill((await api('GET', '/api/streams')).json);
  show(h('h2', {}, 'Live streams'), area);
  poll(async () => fill((await api('GET', '/api/streams')).json), 2000);
}

// ---- audit trail ----
async function renderAudit() {
  const { json } = await api('GET', '/api/audit?limit=200');
  const entries = json.entries.slice().reverse();
  show(h('h2', {}, 'Audit trail'),
    h('p', { class: 'muted' }, 'Every change of the partner list, from the command line or this panel; reloads and refused attempts too. Newest first. xmpp-gateway audit --since 2h shows the same.'),
    entries.length === 0 ? h('p', {}, 'No entries yet.') : h('table', { id: 'audit' },
      h('thead', {}, h('tr', {}, ['Time', 'Who', 'Result', 'What', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, entries.map((e) => h('tr', {},
        h('td', {}, e.time), h('td', {}, `${e.who} (${e.via})`), h('td', { class: e.result === 'ok' ? '' : 'error' }, e.result),
        h('td', {}, e.cmdlet || e.action, e.error ? h('div', { class: 'error' }, e.error) : null),
        h('td', {}, e.before || e.after ? h('details', {}, h('summary', {}, 'before / after'), h('pre', {}, `before: ${JSON.stringify(e.before, null, 1)}\nafter: ${JSON.stringify(e.after, null, 1)}`)) : null))))));
}

// ---- start ----
window.addEventListener('hashchange', () => { say(''); route(); });
document.addEventListener('DOMContentLoaded', async () => {
  document.getElementById('logout').addEventListener('click', async () => {
    try { await api('POST', '/logout'); } catch { /* already gone */ }
    state.user = null;
    renderLogin('Logged out.');
  });
  try {
    const { json } = await api('GET', '/api/session');
    state.user = json.user;
    state.role = json.role;
    state.csrf = json.csrf;
    loggedIn();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) renderLogin(err.message);
  }
});
