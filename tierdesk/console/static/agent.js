// The agent workspace: inbox, conversation and context panes, kept live by
// the agent WebSocket and acting through the REST API.
'use strict';
(function () {
  const S = {
    convs: new Map(),        // id -> conversation view (as the API gives it)
    unread: new Map(),       // id -> count of customer messages not yet seen
    excerpt: new Map(),      // id -> last message text seen
    current: TD.current,     // open conversation id
    messages: new Map(),     // id -> message of the open conversation
    openConv: null,          // its conversation view
    drafts: new Map(),
    team: [], mySkills: [], intents: null,
    ws: null, attempt: 0, helloCount: 0, ping: null,
  };
  const $ = (id) => document.getElementById(id);
  const baseTitle = document.title;

  // ------------------------------------------------------------ inbox
  function order() {
    return [...S.convs.values()].sort((a, b) =>
      (b.handoff && b.handoff.assigned_at || '').localeCompare(a.handoff && a.handoff.assigned_at || ''));
  }

  function renderInbox() {
    const list = $('inbox');
    list.replaceChildren(...order().map((c) => {
      const unread = S.unread.get(c.id) || 0;
      const name = c.customer.name || c.customer.id;
      const since = c.handoff ? c.handoff.requested_at : c.updated_at;
      return el('li', {'data-id': c.id, class: c.id === S.current ? 'current' : ''},
        el('a', {href: '/console/conversations/' + encodeURIComponent(c.id),
                 'aria-current': c.id === S.current ? 'true' : null,
                 onclick: (ev) => { ev.preventDefault(); open(c.id, true); }},
          el('span', {class: 'name', text: name}),
          c.customer.vip ? el('span', {class: 'badge vip', text: t('conv.vip')}) : null,
          unread ? el('span', {class: 'dot', 'aria-label': unread + ' unread', title: unread + ' unread'}) : null,
          el('span', {class: 'excerpt', text: S.excerpt.get(c.id) || (c.handoff ? c.handoff.skill : '')}),
          el('span', {class: 'muted small', text: ago(since)})));
    }));
    $('inbox-empty').hidden = S.convs.size > 0;
    const total = [...S.unread.values()].reduce((a, b) => a + b, 0);
    document.title = (total ? '(' + total + ') ' : '') + baseTitle;
  }

  // ------------------------------------------------------ conversation
  function senderLabel(m) {
    if (m.sender === 'agent') return m.agent_id === TD.person.agent_id ? TD.person.name : t('conv.agent');
    return t('conv.' + m.sender);
  }

  function renderMessages() {
    const conv = S.openConv;
    const msgs = [...S.messages.values()].sort((a, b) => a.at.localeCompare(b.at) || a.id.localeCompare(b.id));
    const items = [];
    let divided = false;
    const h = conv && conv.handoff;
    const divider = () => {
      const trigger = msgs.filter((m) => m.sender === 'customer' && m.at <= h.requested_at).pop();
      const parts = [t('conv.reason') + ': ' + h.reason, t('conv.skill') + ': ' + h.skill];
      if (trigger && trigger.intent) parts.push(t('conv.intent') + ': ' + trigger.intent);
      if (trigger && trigger.confidence !== null && trigger.confidence !== undefined)
        parts.push(t('conv.confidence') + ': ' + trigger.confidence.toFixed(2));
      if (h.assigned_at) parts.push(t('conv.waited') + ' ' +
        duration((Date.parse(h.assigned_at) - Date.parse(h.requested_at)) / 1000));
      return el('li', {class: 'handoff', role: 'separator', 'aria-label': t('conv.handoff')},
        el('strong', {text: t('conv.handoff')}), ' · ', parts.join(' · '));
    };
    for (const m of msgs) {
      // After what led to the handoff: before the first later message, or
      // the first agent reply (times can tie to the millisecond).
      if (h && !divided && (m.at > h.requested_at || m.sender === 'agent')) { items.push(divider()); divided = true; }
      items.push(el('li', {class: 'msg ' + m.sender, 'data-id': m.id},
        el('span', {class: 'who', text: senderLabel(m) + (m.sender === 'bot' && m.faq_id ? ' · ' + m.faq_id : '')}),
        el('span', {class: 'text', text: m.text}),
        el('time', {datetime: m.at, text: clockTime(m.at)})));
    }
    if (h && !divided) items.push(divider());
    $('messages').replaceChildren(...items);
    const box = $('messages');
    box.scrollTop = box.scrollHeight;
  }

  function renderHeader() {
    const c = S.openConv;
    if (!c) return;
    $('conv-title').textContent = (c.customer.name || c.customer.id) + (c.customer.vip ? ' · ' + t('conv.vip') : '');
    const last = [...S.messages.values()].filter((m) => m.sender === 'customer').map((m) => m.at).sort().pop();
    $('conv-meta').textContent = [t('conv.channel') + ': ' + c.channel_id, c.external_id,
      last ? t('conv.waiting_since') + ' ' + ago(last) : null].filter(Boolean).join(' · ');
  }

  function setMine(mine, reasonKey) {
    $('composer').hidden = false;
    $('actions').hidden = !mine;
    $('reply').disabled = !mine;
    $('send').disabled = !mine;
    const notice = $('conv-notice');
    notice.hidden = mine;
    if (!mine) notice.textContent = t(reasonKey || 'conv.not_yours');
  }

  async function open(id, push) {
    if (S.current && S.current !== id) S.drafts.set(S.current, $('reply').value);
    S.current = id;
    S.messages.clear();
    S.openConv = S.convs.get(id) || null;
    S.unread.delete(id);
    $('customer-typing').hidden = true;
    if (push) history.pushState({id}, '', '/console/conversations/' + encodeURIComponent(id));
    $('reply').value = S.drafts.get(id) || '';
    $('conv-title').textContent = t('conv.loading');
    $('messages').replaceChildren();
    renderInbox();
    loadEarlier(id);
    await catchUp();
  }

  // Fetch the open conversation's history and merge it: after a reconnect
  // nothing is shown twice and nothing is missed.
  async function catchUp() {
    const id = S.current;
    if (!id) return;
    try {
      const data = await api('GET', '/v1/conversations/' + encodeURIComponent(id));
      if (S.current !== id) return;
      S.openConv = data.conversation;
      for (const m of data.messages) S.messages.set(m.id, m);
      renderHeader();
      renderMessages();
      setMine(S.convs.has(id));
    } catch (e) {
      if (S.current !== id) return;
      if (e.code === 'not_your_conversation') { $('conv-title').textContent = t('error.not_your_conversation'); setMine(false); }
      else $('conv-title').textContent = t('conv.load_failed');
    }
  }

  // The customer's earlier passages to a person (this conversation before,
  // or another of theirs): what an agent wants to know before answering.
  async function loadEarlier(id) {
    let found = [];
    try { found = (await api('GET', '/v1/conversations/' + encodeURIComponent(id) + '/earlier')).handoffs; }
    catch (e) { /* a convenience: the conversation itself is what matters */ }
    if (S.current !== id) return;
    $('earlier-section').hidden = false;
    $('earlier').replaceChildren(...(found.length ? found.map((h) => el('li', {},
      el('span', {text: ago(h.requested_at) + ' · ' + h.reason + ' · ' + h.skill}),
      el('span', {class: 'muted', text: (h.agent_name || t('earlier.nobody')) + ' · ' +
        (h.resolved_at ? t('earlier.ended') + ' ' + ago(h.resolved_at) : t('earlier.open'))}))) :
      [el('li', {class: 'empty', text: t('earlier.none')})]));
  }

  function closeCurrent(noticeKey) {
    S.drafts.delete(S.current);
    setMine(false, noticeKey);
  }

  // ---------------------------------------------------------- socket
  function setConnection(state) {
    const box = $('connection');
    box.dataset.state = state;
    box.textContent = t('conn.' + state);
  }

  function connect() {
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1/agents/ws');
    S.ws = ws;
    ws.onopen = () => {
      S.attempt = 0;
      clearInterval(S.ping);
      S.ping = setInterval(() => ws.readyState === 1 && ws.send('ping'), 50000);
    };
    ws.onmessage = (ev) => { if (ev.data !== 'pong') handle(JSON.parse(ev.data)); };
    ws.onclose = async (ev) => {
      clearInterval(S.ping);
      if (leaving) return;
      if (ev.code === 4401) { signedOut(); return; }
      setConnection('reconnecting');
      try { await api('GET', '/v1/agents/me'); } catch (e) { if (e.status === 401) return; }
      const wait = Math.min(15000, 500 * 2 ** S.attempt++);
      setTimeout(connect, wait);
    };
  }

  function handle(push) {
    if (push.type === 'hello') {
      const before = new Set(S.convs.keys());
      S.convs = new Map(push.conversations.map((c) => [c.id, c]));
      for (const id of S.convs.keys()) if (S.helloCount && !before.has(id) && id !== S.current) S.unread.set(id, 1);
      for (const id of [...S.unread.keys()]) if (!S.convs.has(id)) S.unread.delete(id);
      S.helloCount++;
      setConnection('live');
      renderInbox();
      catchUp();
      refreshMe();
    } else if (push.type === 'assignment') {
      const c = push.conversation;
      S.convs.set(c.id, c);
      if (c.id !== S.current) S.unread.set(c.id, (S.unread.get(c.id) || 0) + 1);
      toast(t('inbox.new') + ': ' + (c.customer.name || c.customer.id));
      renderInbox();
      if (c.id === S.current) catchUp();
      refreshMe();
    } else if (push.type === 'customer_message') {
      const id = push.conversation_id;
      S.excerpt.set(id, push.message.text);
      if (id === S.current) {
        S.messages.set(push.message.id, Object.assign({sender: 'customer', agent_id: null, intent: null,
                                                       confidence: null}, push.message));
        renderMessages();
        renderHeader();
      } else {
        S.unread.set(id, (S.unread.get(id) || 0) + 1);
      }
      renderInbox();
    } else if (push.type === 'customer_typing') {
      if (push.conversation_id === S.current) showCustomerTyping();
    } else if (push.type === 'conversation_ended' || push.type === 'conversation_transferred') {
      const id = push.conversation_id;
      S.convs.delete(id);
      S.unread.delete(id);
      const key = push.type === 'conversation_ended' ? 'inbox.ended' : 'inbox.transferred';
      toast(t(key));
      if (id === S.current) closeCurrent(key);
      renderInbox();
      refreshMe();
    }
  }

  // ---------------------------------------------------------- actions
  async function refreshMe() {
    try {
      const me = await api('GET', '/v1/agents/me');
      $('status').value = me.status;
      // Slots in use: a heavy conversation (a VIP's, some intents) takes several.
      $('load').textContent = me.load + ' / ' + me.capacity;
      S.mySkills = me.skills;
    } catch (e) { /* shown by the connection state */ }
  }

  async function refreshFigures() {
    const midnight = new Date(serverNow());
    midnight.setHours(0, 0, 0, 0);
    try {
      const f = await api('GET', '/v1/agents/me/metrics?from=' + encodeURIComponent(midnight.toISOString()));
      $('fig-first').textContent = ratioText(f.first_response_within_sla);
      $('fig-replies').textContent = ratioText(f.response_rate_within_sla);
    } catch (e) { /* figures are a convenience */ }
  }

  async function loadTeam() {
    try {
      S.team = (await api('GET', '/v1/agents/team')).agents;
    } catch (e) { S.team = []; }
    const skills = new Set(S.mySkills);
    for (const a of S.team) for (const s of a.skills) skills.add(s);
    $('transfer-skill').replaceChildren(...[...skills].sort().map((s) => el('option', {value: s, text: s})));
    $('transfer-agent').replaceChildren(...S.team.map((a) =>
      el('option', {value: a.id, text: a.name + (a.available ? '' : ' ' + t('transfer.unavailable'))})));
  }

  async function send(ev) {
    ev.preventDefault();
    const text = $('reply').value;
    if (!text.trim() || !S.current) return;
    const id = S.current;
    $('send').disabled = true;
    try {
      const m = await api('POST', '/v1/conversations/' + encodeURIComponent(id) + '/replies', {text});
      if (S.current === id) {
        S.messages.set(m.id, m);
        $('reply').value = '';
        renderMessages();
      }
      S.drafts.delete(id);
      S.excerpt.set(id, text);
      renderInbox();
      refreshFigures();
    } catch (e) {
      toast(t('reply.failed') + ' ' + e.message);
    } finally {
      $('send').disabled = !S.convs.has(S.current);
    }
  }

  async function act(kind, body) {
    const id = S.current;
    if (!id) return;
    try {
      await api('POST', '/v1/conversations/' + encodeURIComponent(id) + '/' + kind, body);
      S.convs.delete(id);
      closeCurrent(kind === 'resolve' ? 'inbox.ended' : 'inbox.transferred');
      renderInbox();
      refreshMe();
      refreshFigures();
      loadTeam();
    } catch (e) {
      toast(t(kind === 'resolve' ? 'resolve.failed' : 'transfer.failed') + ' ' + e.message);
    }
  }

  async function searchCanned() {
    const q = $('canned-search').value.trim().toLowerCase();
    if (S.intents === null) {
      try { S.intents = (await api('GET', '/v1/faq/intents')).intents.filter((i) => i.kind === 'faq' && i.answer); }
      catch (e) { S.intents = []; }
    }
    const found = S.intents.filter((i) => !q || (i.id + ' ' + i.answer).toLowerCase().includes(q)).slice(0, 8);
    $('canned').replaceChildren(...(found.length ? found.map((i) => el('li', {},
      el('span', {class: 'muted small', text: i.id}), el('p', {text: i.answer}),
      el('button', {type: 'button', class: 'secondary', text: t('canned.insert'),
                    'aria-label': t('canned.insert') + ': ' + i.id, onclick: () => insert(i.answer)}))) :
      [el('li', {class: 'empty', text: t('canned.empty')})]));
  }

  // Typing, both ways: the customer's shows for a few seconds under the
  // history; the agent's is sent at most every 3 s while they type.
  let customerTypingTimer = null;
  function showCustomerTyping() {
    $('customer-typing').hidden = false;
    clearTimeout(customerTypingTimer);
    customerTypingTimer = setTimeout(() => { $('customer-typing').hidden = true; }, 6000);
  }

  let lastTyping = 0;
  function typing() {
    const now = Date.now();
    if (!S.current || !S.convs.has(S.current) || now - lastTyping < 3000) return;
    lastTyping = now;
    api('POST', '/v1/conversations/' + encodeURIComponent(S.current) + '/typing', {typing: true}).catch(() => {});
  }

  function insert(text) {
    const box = $('reply');
    const at = box.selectionStart || box.value.length;
    box.value = box.value.slice(0, at) + text + box.value.slice(box.selectionEnd || at);
    box.focus();
  }

  function move(step) {
    const ids = order().map((c) => c.id);
    if (!ids.length) return;
    const i = ids.indexOf(S.current);
    open(ids[(i + step + ids.length) % ids.length], true);
  }

  function toggleKeys(show) {
    const box = $('keys');
    box.hidden = show === undefined ? !box.hidden : !show;
    if (!box.hidden) $('close-keys').focus();
  }

  // ------------------------------------------------------------ wiring
  $('composer').addEventListener('submit', send);
  $('reply').addEventListener('input', typing);
  $('reply').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); $('composer').requestSubmit(); }
  });
  $('status').addEventListener('change', async () => {
    try { await api('PUT', '/v1/agents/me/status', {status: $('status').value}); } catch (e) { toast(e.message); }
    refreshMe();
  });
  $('transfer-skill-form').addEventListener('submit', (ev) => { ev.preventDefault(); act('transfer', {skill: $('transfer-skill').value}); });
  $('transfer-agent-form').addEventListener('submit', (ev) => { ev.preventDefault(); act('transfer', {agent_id: $('transfer-agent').value}); });
  $('resolve').addEventListener('click', () => act('resolve'));
  $('canned-search').addEventListener('input', searchCanned);
  $('canned-search').addEventListener('focus', searchCanned);
  $('show-keys').addEventListener('click', () => toggleKeys(true));
  $('close-keys').addEventListener('click', () => toggleKeys(false));
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') { toggleKeys(false); return; }
    if (ev.target.closest('input, textarea, select') || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === 'j') move(1);
    else if (ev.key === 'k') move(-1);
    else if (ev.key === 'r') { ev.preventDefault(); $('reply').focus(); }
    else if (ev.key === 'e' && S.convs.has(S.current)) act('resolve');
    else if (ev.key === '?') toggleKeys();
  });
  window.addEventListener('popstate', (ev) => { if (ev.state && ev.state.id) open(ev.state.id, false); });
  setInterval(renderInbox, 30000);  // the "x min ago" times

  refreshMe().then(loadTeam);
  refreshFigures();
  connect();
  if (S.current) open(S.current, false);
})();
