// A conversation read by a supervisor or an admin: the whole history.
'use strict';
(async function () {
  const $ = (id) => document.getElementById(id);
  try {
    const data = await api('GET', '/v1/conversations/' + encodeURIComponent(TD.current));
    const c = data.conversation;
    $('conv-title').textContent = (c.customer.name || c.customer.id) + (c.customer.vip ? ' · ' + t('conv.vip') : '');
    $('conv-meta').textContent = [c.status, c.channel_id, c.external_id,
      c.handoff ? t('conv.reason') + ': ' + c.handoff.reason + ' · ' + t('conv.skill') + ': ' + c.handoff.skill : null]
      .filter(Boolean).join(' · ');
    $('messages').replaceChildren(...data.messages.map((m) => el('li', {class: 'msg ' + m.sender},
      el('span', {class: 'who', text: t('conv.' + m.sender)}), el('span', {class: 'text', text: m.text}),
      el('time', {datetime: m.at, text: clockTime(m.at)}))));
  } catch (e) {
    $('conv-title').textContent = t('conv.load_failed');
  }
})();
