// People (admin): create accounts, reset passwords, disable and enable.
// Creating an agent's account creates the agent first (POST /v1/admin/agents).
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const say = (text) => { $('people-status').textContent = text; };

  async function load() {
    const people = (await api('GET', '/v1/admin/people')).people;
    $('people').tBodies[0].replaceChildren(...people.map((p) => el('tr', {'data-person': p.id, 'data-email': p.email},
      el('th', {scope: 'row', text: p.name}), el('td', {text: p.email}), el('td', {text: t('role.' + p.role)}),
      el('td', {text: p.disabled ? t('people.disabled') : t('people.active')}),
      el('td', {class: 'actions'},
        el('button', {type: 'button', class: 'secondary', 'data-action': 'toggle',
                      'aria-label': (p.disabled ? t('people.enable') : t('people.disable')) + ': ' + p.email,
                      text: p.disabled ? t('people.enable') : t('people.disable'),
                      onclick: () => patch(p.id, {disabled: !p.disabled})}),
        el('button', {type: 'button', class: 'secondary', 'data-action': 'reset',
                      'aria-label': t('people.reset') + ': ' + p.email, text: t('people.reset'),
                      onclick: () => { const pw = prompt(t('people.new_password')); if (pw) patch(p.id, {password: pw}); }})))));
  }

  async function patch(id, body) {
    try { await api('PATCH', '/v1/admin/people/' + encodeURIComponent(id), body); await load(); say('✓'); }
    catch (e) { say(t('error.generic') + ' ' + e.message); }
  }

  $('add-person').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const role = $('p-role').value;
    const body = {email: $('p-email').value, name: $('p-name').value, role, password: $('p-password').value};
    try {
      if (role === 'agent') {
        const skills = $('p-skills').value.split(',').map((s) => s.trim()).filter(Boolean);
        const agent = await api('POST', '/v1/admin/agents', {name: body.name, skills,
                                                             capacity: Number($('p-capacity').value) || 1});
        body.agent_id = agent.id;
      }
      await api('POST', '/v1/admin/people', body);
      ev.target.reset();
      say(t('people.created'));
      await load();
    } catch (e) { say(t('error.generic') + ' ' + e.message); }
  });
  load();
})();
