// FAQ tuning: model versions (activate, roll back), what the bot missed,
// and the answer editor.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const say = (text) => { $('faq-status').textContent = text; };
  const admin = TD.person.role === 'admin';
  let intents = [];

  async function loadModels() {
    const data = await api('GET', '/v1/faq/models');
    $('models').replaceChildren(...data.versions.slice().reverse().map((v) => {
      const ev = v.evaluation || {};
      const acc = ev.accuracy !== undefined ? t('faq.accuracy') + ' ' + Math.round(ev.accuracy * 1000) / 10 + ' %' : '';
      return el('li', {'data-version': v.version},
        el('strong', {text: v.version}), ' ', v.live ? el('span', {class: 'badge', text: t('faq.live')}) : null,
        el('span', {class: 'muted small', text: ' ' + (v.created_at || '') + ' ' + acc}), ' ',
        admin && !v.live ? el('button', {type: 'button', class: 'secondary', text: t('faq.activate'),
          'aria-label': t('faq.activate') + ' ' + v.version,
          onclick: () => confirm(t('faq.confirm_activate')) && run('POST', '/v1/faq/models/' + v.version + '/activate')}) : null);
    }));
    $('rollback').hidden = !admin;
  }

  async function run(method, path, body) {
    try { await api(method, path, body); say('✓'); await Promise.all([loadModels(), loadIntents()]); }
    catch (e) { say(t('error.generic') + ' ' + e.message); }
  }

  async function loadMisses() {
    const data = await api('GET', '/v1/faq/misses?days=7');
    if (!data.clusters.length) { $('misses').replaceChildren(el('li', {class: 'empty', text: t('faq.no_misses')})); return; }
    $('misses').replaceChildren(...data.clusters.map((c, i) => {
      return el('li', {class: 'miss'},
        el('p', {}, el('strong', {text: c.representative}), el('span', {class: 'muted small', text: ' · ' + c.size + ' ' + t('faq.size')})),
        c.top_intent ? el('p', {class: 'small'}, t('faq.intent') + ': ', el('code', {text: c.top_intent})) : null,
        el('ul', {class: 'muted small'}, ...c.examples.slice(0, 3).map((x) => el('li', {text: x}))),
        labelForm(c, i));
    }));
  }

  // "Add as an example of …": the cluster's questions are labelled with the
  // intent (PUT /v1/faq/labels); `tierdesk faq train --traffic` learns them.
  function labelForm(c, i) {
    const id = 'label-' + i;
    const pick = el('select', {id},
      ...intents.filter((x) => x.kind === 'faq').map((x) => el('option', {value: x.id, text: x.id})));
    if (c.top_intent && intents.some((x) => x.id === c.top_intent && x.kind === 'faq')) pick.value = c.top_intent;
    return el('form', {class: 'row', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        for (const m of c.message_ids) await api('PUT', '/v1/faq/labels/' + encodeURIComponent(m), {intent: pick.value});
        say(t('faq.labelled', {n: c.message_ids.length, intent: pick.value}));
      } catch (e) { say(t('error.generic') + ' ' + e.message); }
    }}, el('label', {for: id, text: t('faq.add_example')}), pick, el('button', {type: 'submit', text: t('faq.add')}));
  }

  async function loadIntents() {
    intents = (await api('GET', '/v1/faq/intents')).intents;
    $('answers').replaceChildren(...intents.filter((i) => i.kind === 'faq').map((i) => {
      const id = 'answer-' + i.id;
      const box = el('textarea', {id, rows: 3, readonly: !admin}, i.answer || '');
      box.value = i.answer || '';
      const preview = el('p', {class: 'preview', 'aria-live': 'polite', text: i.answer || ''});
      box.addEventListener('input', () => { preview.textContent = box.value; });
      return el('form', {class: 'card answer', 'data-intent': i.id, onsubmit: (ev) => { ev.preventDefault();
        run('PATCH', '/v1/faq/intents/' + encodeURIComponent(i.id), {answer: box.value}).then(() => say(t('faq.saved'))); }},
        el('label', {for: id, text: i.id}), box,
        el('p', {class: 'muted small', text: t('faq.preview')}), preview,
        admin ? el('button', {type: 'submit', text: t('faq.save')}) : null);
    }));
  }

  $('rollback').addEventListener('click', () => confirm(t('faq.confirm_rollback')) && run('POST', '/v1/faq/models/rollback'));
  (async () => {
    try { await loadIntents(); await Promise.all([loadModels(), loadMisses()]); }
    catch (e) { say(t('error.generic') + ' ' + e.message); }
  })();
})();
