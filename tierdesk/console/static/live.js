// Supervisor live board: per skill, the queue and its oldest wait against
// the first-response SLA; the agents' status and load. Refreshed every few
// seconds from GET /v1/queue and GET /v1/admin/agents.
'use strict';
(function () {
  const REFRESH_MS = 2000;
  const AT_RISK = 0.5;  // amber from half the SLA: time to act before it breaches
  const $ = (id) => document.getElementById(id);

  function slaState(wait, sla) {
    if (wait >= sla) return 'breached';
    return wait >= sla * AT_RISK ? 'at_risk' : 'ok';
  }

  function render(queue, agents) {
    const sla = queue.first_response_sla_seconds;
    $('queue-total').textContent = queue.total;
    $('updated').textContent = new Date().toLocaleTimeString(TD.lang === 'zh' ? 'zh-CN' : undefined);
    const bySkill = new Map(queue.skills.map((s) => [s.skill, s]));
    const skills = new Set([...bySkill.keys()]);
    for (const a of agents) for (const s of a.skills) skills.add(s);
    const cards = [...skills].sort().map((skill) => {
      const q = bySkill.get(skill) || {waiting: 0, oldest_wait_seconds: null};
      const staff = agents.filter((a) => a.skills.includes(skill));
      const online = staff.filter((a) => a.status === 'online');
      const busy = online.filter((a) => a.open_conversations >= a.capacity);
      const state = q.waiting ? slaState(q.oldest_wait_seconds, sla) : 'ok';
      return el('article', {class: 'card skill', 'data-skill': skill, 'data-state': state},
        el('h3', {text: skill}),
        el('p', {}, el('span', {class: 'big', 'data-field': 'waiting', text: String(q.waiting)}), ' ', t('live.queue')),
        el('p', {}, t('live.oldest') + ': ',
          el('strong', {'data-field': 'oldest', text: q.waiting ? duration(q.oldest_wait_seconds) : '–'}),
          ' / ' + t('live.sla') + ' ' + duration(sla), ' ',
          q.waiting ? el('span', {class: 'sla ' + state, 'data-field': 'sla-state', text: t('live.' + state)}) : null),
        el('p', {class: 'muted'}, t('live.agents') + ' ' + t('live.online_busy') + ': ' + online.length + ' / ' + busy.length));
    });
    $('skills').replaceChildren(...cards);
    $('no-queue').hidden = queue.total > 0;
    $('agents').tBodies[0].replaceChildren(...agents.map((a) => el('tr', {'data-agent': a.id},
      el('th', {scope: 'row', text: a.name}),
      el('td', {}, el('span', {class: 'status ' + a.status, text: t('status.' + a.status)})),
      el('td', {text: a.open_conversations + ' / ' + a.capacity}),
      el('td', {text: a.skills.join(', ')}))));
  }

  async function refresh() {
    try {
      const [queue, agents] = await Promise.all([api('GET', '/v1/queue?limit=1'), api('GET', '/v1/admin/agents')]);
      render(queue, agents.agents);
    } catch (e) {
      if (e.status !== 401) toast(t('error.generic') + ' ' + e.message);
    }
    setTimeout(refresh, REFRESH_MS);
  }
  refresh();
})();
