// Shared by every console page: the page's data, text in the reader's
// language, API calls with the session cookie and its CSRF token, and a
// few formatting helpers. Plain JavaScript, no build step.
'use strict';
const TD = JSON.parse(document.getElementById('td-data').textContent);

const clockOffset = (TD.server_now || Date.now()) - Date.now();
function serverNow() { return Date.now() + clockOffset; }

function t(key, values) {
  let text = TD.messages[key] || key;
  for (const [k, v] of Object.entries(values || {})) text = text.replace('{' + k + '}', v);
  return text;
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// Set while the page goes away on purpose (signing out, following a link):
// a socket closing then is no reason to send the person to the sign-in page.
let leaving = false;
window.addEventListener('beforeunload', () => { leaving = true; });
for (const form of document.querySelectorAll('form[action="/console/sign-out"]')) {
  form.addEventListener('submit', () => { leaving = true; });
}

function signedOut() {
  if (leaving) return;
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign('/console/sign-in?ended=1&next=' + next);
}

async function api(method, path, body) {
  const headers = {'Accept': 'application/json'};
  if (method !== 'GET') headers['X-CSRF-Token'] = TD.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, {method, headers, credentials: 'same-origin',
                                  body: body === undefined ? undefined : JSON.stringify(body)});
  const data = (resp.headers.get('Content-Type') || '').includes('json') ? await resp.json() : null;
  if (resp.status === 401) { signedOut(); throw new ApiError(401, 'unauthenticated', 'signed out'); }
  if (!resp.ok) {
    const e = (data && data.error) || {code: 'http_' + resp.status, message: resp.statusText};
    throw new ApiError(resp.status, e.code, e.message);
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) if (k === 'text') node.textContent = v; else node.setAttribute(k, v);
  for (const c of children.flat()) if (c) node.append(c);
  return node;
}

let toastTimer = null;
function toast(message) {
  const box = document.getElementById('toast');
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 6000);
}

function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return t('dur.s', {n: seconds});
  if (seconds < 3600) return t('dur.m', {n: Math.floor(seconds / 60)});
  return t('dur.h', {n: (seconds / 3600).toFixed(1)});
}

function ago(iso, now) {
  const s = ((now || serverNow()) - Date.parse(iso)) / 1000;
  if (s < 10) return t('ago.now');
  if (s < 60) return t('ago.s', {n: Math.round(s)});
  if (s < 3600) return t('ago.m', {n: Math.floor(s / 60)});
  return t('ago.h', {n: Math.floor(s / 3600)});
}

function clockTime(iso) {
  return new Date(iso).toLocaleTimeString(TD.lang === 'zh' ? 'zh-CN' : undefined, {hour: '2-digit', minute: '2-digit'});
}

function pct(ratio) {
  return ratio && ratio.value !== null && ratio.value !== undefined ? Math.round(ratio.value * 1000) / 10 + ' %' : '–';
}

function ratioText(ratio) {
  if (!ratio || !ratio.denominator) return t('figures.none');
  return pct(ratio) + ' (' + ratio.numerator + ' / ' + ratio.denominator + ')';
}
