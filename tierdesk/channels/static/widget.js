// tierdesk web chat widget. Plain JavaScript, no build step: embed it with
//   <script src="https://DESK/widget/widget.js" data-channel="chn_…" async></script>
// (data-lang="en" or "zh" to choose the language; else the browser's).
//
// It keeps a signed customer session in localStorage, so the conversation
// survives a reload. Each message gets its id here, before it is sent, and
// is sent again with the same id until the server has it: the server keeps
// the first and answers repeats with the same answer. Messages are shown by
// their server id, so a catch-up after a reload or a dropped connection
// never shows one twice. Everything lives in a shadow root: the host page's
// styles do not reach in, and ours do not leak out.
(function () {
  'use strict';
  const script = document.currentScript;
  if (!script || !script.dataset.channel) return;
  const channel = script.dataset.channel;
  const base = new URL(script.src, location.href).origin;
  const wsBase = base.replace(/^http/, 'ws');
  const storeKey = 'tierdesk.widget.' + channel;
  const askedLang = script.dataset.lang || '';

  let text = {};
  let lang = 'en';
  let saved = load();
  let ws = null;
  let wsTries = 0;
  let messages = [];          // from the server, in order
  const known = new Set();    // their ids
  let state = null;           // the conversation: status, queue, rating
  let unread = 0;
  let open = false;
  let sending = false;
  let lastTyping = 0;
  let rated = false;
  let outOfHours = null;
  let typingTimer = null;

  function load() {
    try {
      const s = JSON.parse(localStorage.getItem(storeKey) || 'null');
      // Expiry is the server's to judge (this device's clock may be off):
      // a session it refuses is replaced by a new one (check()).
      if (s && s.session) return {pending: [], ...s};
    } catch (e) { /* private mode or garbage: start afresh */ }
    return {session: null, pending: []};
  }
  function save() {
    try { localStorage.setItem(storeKey, JSON.stringify(saved)); } catch (e) { /* storage full or off */ }
  }
  function t(key, values) {
    let s = text[key] || key;
    for (const [k, v] of Object.entries(values || {})) s = s.replace('{' + k + '}', v);
    return s;
  }
  function newId() {
    if (window.crypto && crypto.randomUUID) return 'wm_' + crypto.randomUUID();
    const a = new Uint8Array(16);
    crypto.getRandomValues(a);
    return 'wm_' + Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  function duration(seconds) {
    if (seconds < 60) return t('widget.seconds');
    if (seconds < 3600) return t('widget.minutes', {n: Math.ceil(seconds / 60)});
    return t('widget.hours', {n: Math.round(seconds / 360) / 10});
  }
  function clock(iso) {
    try { return new Date(iso).toLocaleTimeString(lang === 'zh' ? 'zh-CN' : 'en', {hour: '2-digit', minute: '2-digit'}); }
    catch (e) { return ''; }
  }

  async function call(method, path, body) {
    const headers = {'Accept': 'application/json'};
    if (saved.session && !path.startsWith('/v1/widget/channels/')) headers['Authorization'] = 'Bearer ' + saved.session;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const resp = await fetch(base + path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    const data = (resp.headers.get('Content-Type') || '').includes('json') ? await resp.json() : null;
    if (!resp.ok) {
      const err = new Error((data && data.error && data.error.message) || ('HTTP ' + resp.status));
      err.status = resp.status;
      err.code = data && data.error && data.error.code;
      throw err;
    }
    return data;
  }

  // ------------------------------------------------------------------ DOM
  const host = document.createElement('div');
  host.id = 'tierdesk-widget';
  const root = host.attachShadow({mode: 'open'});
  const el = {};

  function build(cfg) {
    root.innerHTML = `
      <link rel="stylesheet" href="${base}/widget/widget.css">
      <button class="launcher" type="button" aria-expanded="false" aria-controls="panel">
        <svg class="bubble" aria-hidden="true" viewBox="0 0 24 24" width="28" height="28"><path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg><span class="badge" hidden></span>
      </button>
      <section class="panel" id="panel" role="dialog" hidden>
        <header>
          <div><h2 class="team"></h2><p class="usual"></p></div>
          <button class="close" type="button">×</button>
        </header>
        <p class="conn" data-state="connecting" aria-live="polite"></p>
        <p class="queue" data-state="none" aria-live="polite"></p>
        <ol class="messages" role="log" aria-live="polite"></ol>
        <p class="typing" hidden></p>
        <form class="rate" hidden>
          <fieldset><legend class="rate-title"></legend><div class="stars"></div></fieldset>
          <label class="comment-label" for="comment"></label>
          <textarea id="comment" class="comment" rows="2" maxlength="2000"></textarea>
          <button class="rate-send" type="submit"></button>
        </form>
        <p class="thanks" hidden></p>
        <form class="composer">
          <label class="input-label" for="input"></label>
          <div class="row"><textarea id="input" class="input" rows="2"></textarea>
          <button class="send" type="submit"></button></div>
          <p class="error" role="alert" hidden></p>
        </form>
      </section>`;
    for (const name of ['launcher', 'badge', 'panel', 'team', 'usual', 'close', 'conn', 'queue', 'messages',
                        'typing', 'rate', 'stars', 'comment', 'thanks', 'composer', 'input', 'send', 'error']) {
      el[name] = root.querySelector('.' + name);
    }
    el.launcher.setAttribute('aria-label', t('widget.open'));
    el.panel.setAttribute('aria-label', t('widget.title') + ' — ' + cfg.name);
    el.team.textContent = cfg.name;
    el.usual.textContent = cfg.usual_reply_seconds == null ? t('widget.usually_unknown')
      : t('widget.usually', {time: duration(cfg.usual_reply_seconds)});
    el.close.setAttribute('aria-label', t('widget.close'));
    el.messages.setAttribute('aria-label', t('widget.messages'));
    root.querySelector('.input-label').textContent = t('widget.input');
    el.send.textContent = t('widget.send');
    root.querySelector('.rate-title').textContent = t('widget.rate');
    root.querySelector('.comment-label').textContent = t('widget.comment');
    root.querySelector('.rate-send').textContent = t('widget.rate_send');
    el.stars.innerHTML = [1, 2, 3, 4, 5].map((n) =>
      `<label class="star"><input type="radio" name="rating" value="${n}" required>` +
      `<span aria-hidden="true">${n}</span><span class="sr">${t('widget.rate_n', {n})}</span></label>`).join('');

    el.launcher.addEventListener('click', () => toggle(!open));
    el.close.addEventListener('click', () => { toggle(false); el.launcher.focus(); });
    root.addEventListener('keydown', (e) => { if (e.key === 'Escape' && open) { toggle(false); el.launcher.focus(); } });
    el.composer.addEventListener('submit', (e) => { e.preventDefault(); submit(); });
    el.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
    });
    el.input.addEventListener('input', typing);
    el.rate.addEventListener('submit', (e) => { e.preventDefault(); rate(); });
    document.body.appendChild(host);
  }

  function toggle(on) {
    open = on;
    el.panel.hidden = !on;
    el.launcher.setAttribute('aria-expanded', String(on));
    if (on) {
      unread = 0;
      renderBadge();
      el.input.focus();
      if (!saved.session) start().catch(() => showError(t('widget.error')));
      scrollDown();
    }
    saved.open = on;
    save();
  }

  function renderBadge() {
    el.badge.hidden = unread === 0;
    el.badge.textContent = String(unread);
    el.launcher.setAttribute('aria-label', unread ? t('widget.open') + ' (' + t('widget.unread', {n: unread}) + ')'
      : t('widget.open'));
  }

  function showError(message) {
    el.error.hidden = !message;
    el.error.textContent = message || '';
  }

  function scrollDown() { el.messages.scrollTop = el.messages.scrollHeight; }

  function bubble(m, pending) {
    const li = document.createElement('li');
    li.className = 'msg ' + m.sender + (pending ? ' pending' : '');
    if (m.id) li.dataset.id = m.id;
    if (m.client_id) li.dataset.clientId = m.client_id;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = m.sender === 'customer' ? t('widget.you')
      : m.sender === 'bot' ? t('widget.assistant') : (m.agent_name || t('widget.agent'));
    const body = document.createElement('p');
    body.className = 'text';
    body.textContent = m.text;
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = pending ? (pending === 'refused' ? t('widget.refused') : pending === 'waiting'
      ? t('widget.not_sent') : t('widget.sending')) : clock(m.at);
    li.append(who, body, meta);
    return li;
  }

  function render() {
    el.messages.replaceChildren(...messages.map((m) => bubble(m)),
      ...saved.pending.map((p) => bubble({sender: 'customer', text: p.text, client_id: p.id}, p.state || 'sending')));
    if (!messages.length && !saved.pending.length) {
      const li = document.createElement('li');
      li.className = 'empty';
      li.textContent = t('widget.empty');
      el.messages.append(li);
    }
    renderState();
    scrollDown();
  }

  function renderState() {
    const s = state || {};
    let line = '';
    let kind = 'none';
    if (outOfHours) {
      kind = 'closed';
      line = t('widget.out_of_hours', {time: new Date(outOfHours).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en')});
    } else if (s.queue_full) {
      // The queue is full: the wait it would be, and the offer to leave a
      // message (the next message sent is that message).
      kind = 'full';
      line = t('widget.queue_full') + ' ' +
        (s.expected_wait_seconds == null ? t('widget.wait_unknown') : t('widget.wait', {time: duration(s.expected_wait_seconds)}));
    } else if (s.left_message) {
      kind = 'left';
      line = t('widget.message_left');
    } else if (s.status === 'queued') {
      kind = 'queued';
      line = t('widget.connecting') + ' ' + t('widget.position', {n: s.queue_position}) + ' ' +
        (s.expected_wait_seconds == null ? t('widget.wait_unknown') : t('widget.wait', {time: duration(s.expected_wait_seconds)}));
    } else if (s.status === 'assigned') {
      kind = 'assigned';
      line = t('widget.with_agent', {name: s.agent_name || t('widget.agent')});
    }
    el.queue.dataset.state = kind;
    el.queue.textContent = line;
    if (kind === 'full') {
      const leave = document.createElement('button');
      leave.type = 'button';
      leave.className = 'leave';
      leave.textContent = t('widget.leave_message');
      leave.addEventListener('click', () => {
        el.input.placeholder = t('widget.leave_message_hint');
        el.input.focus();
      });
      el.queue.append(' ', leave);
    } else {
      el.input.placeholder = '';
    }
    el.rate.hidden = !(s.rating_wanted && !rated);
    el.thanks.hidden = !rated;
    el.thanks.textContent = t('widget.thanks');
  }

  function merge(list) {
    let added = 0;
    for (const m of list || []) {
      if (known.has(m.id)) continue;
      known.add(m.id);
      messages.push(m);
      if (m.client_id) saved.pending = saved.pending.filter((p) => p.id !== m.client_id);
      if (m.sender !== 'customer') added++;
    }
    if (added && !open) { unread += added; renderBadge(); }
    save();
    render();
  }

  function setState(s) {
    if (!s) return;
    if (state && state.status === 'resolved' && s.status !== 'resolved') rated = false;
    state = s;
    // The state says whether the skill is closed now (business hours).
    outOfHours = s.status === 'queued' ? (s.opens_at || null) : null;
    renderState();
  }

  // ------------------------------------------------------------ the session
  async function start() {
    if (saved.session) return;
    const made = await call('POST', '/v1/widget/channels/' + encodeURIComponent(channel) + '/sessions', {});
    saved = {session: made.session, expires_at: made.expires_at, conversation_id: made.conversation_id,
             pending: saved.pending, open};
    save();
    connect();
  }

  function setConn(s) {
    el.conn.dataset.state = s;
    el.conn.textContent = s === 'live' ? t('widget.live') : s === 'offline' ? t('widget.offline')
      : t('widget.reconnecting');
  }

  function connect() {
    if (!saved.session) return;
    const last = messages.length ? messages[messages.length - 1].id : null;
    const url = wsBase + '/v1/widget/ws?token=' + encodeURIComponent(saved.session) +
      (last ? '&after=' + encodeURIComponent(last) : '');
    const sock = new WebSocket(url);
    ws = sock;
    let ping = null;
    sock.onopen = () => {
      wsTries = 0;
      setConn('live');
      ping = setInterval(() => { if (sock.readyState === 1) sock.send('ping'); }, 25000);
      flush();
    };
    sock.onmessage = (e) => {
      if (e.data === 'pong') return;
      const f = JSON.parse(e.data);
      if (f.type === 'hello') { setState(f.conversation); merge(f.messages); }
      else if (f.type === 'messages') merge(f.messages);
      else if (f.type === 'status') setState(f.conversation);
      else if (f.type === 'out_of_hours') { outOfHours = f.opens_at; renderState(); }
      else if (f.type === 'typing') showTyping(f);
    };
    sock.onclose = () => {
      clearInterval(ping);
      if (ws !== sock) return;
      ws = null;
      wsTries++;
      setConn(wsTries > 3 ? 'offline' : 'reconnecting');
      if (wsTries === 3) check();
      setTimeout(connect, Math.min(15000, 500 * 2 ** Math.min(wsTries, 5)));
    };
  }

  // The session may have ended (the channel's secret was rotated, it
  // expired): then start a new conversation rather than retry for ever.
  async function check() {
    try { await call('GET', '/v1/widget/conversation'); } catch (e) {
      if (e.status === 401) {
        saved = {session: null, pending: saved.pending};
        messages = []; known.clear(); state = null;
        save(); render();
        await start();
      }
    }
  }

  function showTyping(f) {
    el.typing.hidden = !f.typing;
    el.typing.textContent = t('widget.typing', {name: f.name || t('widget.agent')});
    clearTimeout(typingTimer);
    if (f.typing) typingTimer = setTimeout(() => { el.typing.hidden = true; }, 6000);
  }

  function typing() {
    const now = Date.now();
    if (ws && ws.readyState === 1 && now - lastTyping > 3000) {
      lastTyping = now;
      ws.send('{"type":"typing"}');
    }
  }

  // ------------------------------------------------------------- sending
  async function submit() {
    const value = el.input.value;
    if (!value.trim()) return;
    el.input.value = '';
    showError('');
    saved.pending.push({id: newId(), text: value});
    save();
    render();
    try { await start(); } catch (e) { /* sent once there is a session */ }
    flush();
  }

  // One message at a time, oldest first: order is kept, and a message is
  // gone from the queue only once the server has it (or refused it).
  async function flush() {
    if (sending || !saved.session) return;
    sending = true;
    try {
      while (saved.pending.some((p) => p.state !== 'refused')) {
        const p = saved.pending.find((q) => q.state !== 'refused');
        p.state = 'sending';
        render();
        try {
          const r = await call('POST', '/v1/widget/messages', {message_id: p.id, text: p.text, locale: navigator.language || undefined});
          saved.pending = saved.pending.filter((q) => q.id !== p.id);
          setState(r.conversation);
          merge(r.messages);
        } catch (e) {
          if (e.status && e.status >= 400 && e.status < 500 && ![401, 408, 429].includes(e.status)) {
            p.state = 'refused';
            showError(t('widget.refused') + ' ' + e.message);
            save(); render();
            continue;
          }
          p.state = 'waiting';
          save(); render();
          setTimeout(flush, 3000);
          return;
        }
      }
    } finally {
      sending = false;
    }
  }

  async function rate() {
    const picked = el.rate.querySelector('input[name="rating"]:checked');
    if (!picked) return;
    const body = {rating: Number(picked.value)};
    if (el.comment.value.trim()) body.comment = el.comment.value.trim();
    try {
      await call('POST', '/v1/widget/feedback', body);
      rated = true;
      renderState();
    } catch (e) { showError(t('widget.error')); }
  }

  // ---------------------------------------------------------------- start
  async function init() {
    const q = askedLang ? '?lang=' + encodeURIComponent(askedLang) : '';
    let cfg;
    for (let wait = 1000; ; wait = Math.min(wait * 2, 30000)) {
      try { cfg = await call('GET', '/v1/widget/channels/' + encodeURIComponent(channel) + q); break; }
      catch (e) { if (e.status === 404) return; await new Promise((r) => setTimeout(r, wait)); }
    }
    text = cfg.messages;
    lang = cfg.lang;
    build(cfg);
    setConn('connecting');
    render();
    if (saved.session) connect();
    if (saved.open) toggle(true);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
