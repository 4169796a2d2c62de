// Supervisor live board: open alerts at the top; per skill the queue, its
// oldest wait against the first-response SLA (amber once less than the
// server's warning margin of it is left, red once breached) and the
// unanswered handoffs at risk; the agents' status, presence and load.
// From GET /v1/live every few seconds, and at once when the SLA monitor
// raises or clears an alert (GET /v1/live/ws).
'use strict';
(function () {
  const REFRESH_MS = 2000;
  const $ = (id) => document.getElementById(id);

  function slaState(wait, sla, margin) {
    if (wait >= sla) return 'breached';
    return wait >= sla * (1 - margin) ? 'at_risk' : 'ok';
  }

  function alertText(a) {
    if (a.kind === 'first_response') {
      return t('alert.first_response', {due: clockTime(a.due_at), skill: a.skill, since: clockTime(a.requested_at)});
    }
    if (a.kind === 'first_response_backlog') return t('alert.first_response_backlog', a);
    if (a.kind === 'queue_length') return t('alert.queue_length', a);
    if (a.kind === 'oldest_wait') return t('alert.oldest_wait', {...a, wait: duration(a.oldest_wait_seconds)});
    if (a.kind === 'containment') {
      return t('alert.containment', {value: Math.round(a.value * 100), floor: Math.round(a.floor * 100)});
    }
    return a.key;
  }

  function render(live) {
    const sla = live.first_response_sla_seconds;
    const margin = live.warning_margin;
    const total = live.skills.reduce((n, s) => n + s.waiting, 0);
    $('queue-total').textContent = total;
    $('updated').textContent = new Date().toLocaleTimeString(TD.lang === 'zh' ? 'zh-CN' : undefined);
    $('alerts').replaceChildren(...live.alerts.map((a) => el('li', {class: 'alert ' + a.kind, 'data-alert': a.key},
      alertText(a))));
    $('no-alerts').hidden = live.alerts.length > 0;
    const cards = live.skills.map((q) => {
      const state = q.waiting ? slaState(q.oldest_wait_seconds, sla, margin) : 'ok';
      return el('article', {class: 'card skill', 'data-skill': q.skill, 'data-state': state},
        el('h3', {text: q.skill}),
        el('p', {}, el('span', {class: 'big', 'data-field': 'waiting', text: String(q.waiting)}), ' ', t('live.queue')),
        el('p', {}, t('live.oldest') + ': ',
          el('strong', {'data-field': 'oldest', text: q.waiting ? duration(q.oldest_wait_seconds) : '–'}),
          ' / ' + t('live.sla') + ' ' + duration(sla), ' ',
          q.waiting ? el('span', {class: 'sla ' + state, 'data-field': 'sla-state', text: t('live.' + state)}) : null),
        el('p', {class: 'muted'}, t('live.risk_count') + ': ',
          el('span', {'data-field': 'at-risk', text: q.at_risk + ' / ' + q.breached})),
        el('p', {class: 'muted'}, t('live.agents') + ' ' + t('live.online_busy') + ': ' + q.agents_online + ' / ' +
          (q.agents_online - q.agents_with_free_slot)),
        q.left_messages ? el('p', {class: 'muted'}, t('live.left_messages') + ': ',
          el('span', {'data-field': 'left-messages', text: String(q.left_messages)})) : null);
    });
    $('skills').replaceChildren(...cards);
    $('no-queue').hidden = total > 0;
    $('agents').tBodies[0].replaceChildren(...live.agents.map((a) => el('tr', {'data-agent': a.id},
      el('th', {scope: 'row', text: a.name}),
      el('td', {}, el('span', {class: 'status ' + a.status, text: t('status.' + a.status)}),
        a.present ? null : el('span', {class: 'muted', text: ' · ' + t('live.gone')})),
      // The load counts slots: a heavy conversation (VIP, some intents) takes several.
      el('td', {text: a.load + ' / ' + a.capacity +
        (a.conversations !== a.load ? ' · ' + t('live.conversations', {n: a.conversations}) : '')}),
      el('td', {text: a.unanswered ? a.unanswered + ' (' + duration(a.oldest_unanswered_seconds) + ')' : '0'}),
      el('td', {text: a.skills.join(', ')}))));
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      render(await api('GET', '/v1/live'));
    } catch (e) {
      if (e.status !== 401) toast(t('error.generic') + ' ' + e.message);
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  let attempt = 0;
  function listen() {
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1/live/ws');
    let ping = null;
    ws.onopen = () => { attempt = 0; ping = setInterval(() => ws.readyState === 1 && ws.send('ping'), 50000); };
    ws.onmessage = (ev) => { if (ev.data !== 'pong') refresh(); };
    ws.onclose = () => {
      clearInterval(ping);
      if (leaving) return;
      setTimeout(listen, Math.min(15000, 500 * 2 ** attempt++));
    };
  }
  refresh();
  listen();
})();
