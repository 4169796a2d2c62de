// Tiered metrics as charts (SVG drawn here from GET /v1/metrics), each with
// its numerators and denominators in a table and on hover; CSV export.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  let report = null;

  function isoLocalInput(ms) {
    const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 16);
  }

  function preset(name) {
    const now = serverNow();
    const midnight = new Date(now); midnight.setHours(0, 0, 0, 0);
    const m = midnight.getTime();
    if (name === 'today') return [m, now];
    if (name === 'yesterday') return [m - 86400000, m];
    if (name === 'week') return [m - 6 * 86400000, now];
    return [Date.parse($('from').value), Date.parse($('to').value)];
  }

  const ratio = (r) => (r && r.denominator ? r.value : null);
  const hoverRatio = (r) => (r && r.denominator ? r.numerator + ' / ' + r.denominator : '0 / 0');

  // series: [{label, cls, values: [number|null], hover: [text]}]; one group of bars per bucket.
  function chart(id, title, buckets, series, opts) {
    const W = 640, H = 200, pad = 34;
    const max = opts.max || Math.max(1e-9, ...series.flatMap((s) => s.values.filter((v) => v !== null)));
    const groupW = (W - pad) / Math.max(1, buckets.length);
    const barW = Math.max(2, Math.min(28, (groupW - 6) / series.length));
    const svg = svgEl('svg', {viewBox: `0 0 ${W} ${H + 24}`, role: 'img', 'aria-labelledby': id + '-title', class: 'chart'});
    svg.append(svgEl('line', {x1: pad, y1: H, x2: W, y2: H, class: 'axis'}));
    svg.append(svgEl('text', {x: 2, y: 12, class: 'tick', text: opts.format(max)}));
    svg.append(svgEl('text', {x: 2, y: H, class: 'tick', text: '0'}));
    buckets.forEach((b, i) => {
      series.forEach((s, j) => {
        const v = s.values[i];
        if (v === null || v === undefined) return;
        const h = Math.max(1, (v / max) * (H - 16));
        const rect = svgEl('rect', {x: pad + i * groupW + 3 + j * barW, y: H - h, width: barW - 2, height: h,
                                    class: 'bar ' + s.cls, 'data-series': s.label, 'data-bucket': b});
        rect.append(svgEl('title', {text: `${s.label} · ${b}: ${opts.format(v)} (${s.hover[i]})`}));
        svg.append(rect);
      });
      if (buckets.length <= 12 || i % Math.ceil(buckets.length / 12) === 0)
        svg.append(svgEl('text', {x: pad + i * groupW + 2, y: H + 16, class: 'tick', text: b}));
    });
    const legend = el('p', {class: 'legend'}, ...series.map((s) => el('span', {class: 'key ' + s.cls, text: s.label})));
    const table = el('table', {class: 'table small', id: id + '-table'},
      el('caption', {class: 'sr-only', text: title}),
      el('thead', {}, el('tr', {}, el('th', {scope: 'col', text: t('metrics.bucket_col')}),
        ...series.map((s) => el('th', {scope: 'col', text: s.label})))),
      el('tbody', {}, ...buckets.map((b, i) => el('tr', {'data-bucket': b}, el('th', {scope: 'row', text: b}),
        ...series.map((s) => el('td', {'data-series': s.label},
          s.values[i] === null || s.values[i] === undefined ? '–' : opts.format(s.values[i]),
          el('span', {class: 'muted small', text: ' ' + s.hover[i]})))))));
    return el('section', {class: 'card chart-card', id},
      el('h2', {id: id + '-title', text: title}), svg, legend, el('details', {}, el('summary', {text: t('metrics.numerator') + ' / ' + t('metrics.denominator')}), table));
  }

  function render() {
    const groups = report.groups;
    if (!groups.length) { $('charts').replaceChildren(el('p', {class: 'empty', text: t('metrics.empty')})); return; }
    const label = (g) => (g.bucket ? new Date(g.bucket).toLocaleString(TD.lang === 'zh' ? 'zh-CN' : undefined,
      report.bucket === 'day' ? {month: 'short', day: 'numeric'} : {hour: '2-digit', minute: '2-digit'}) : '');
    const buckets = groups.map(label);
    const pctFmt = (v) => Math.round(v * 1000) / 10 + ' %';
    const secFmt = (v) => (Math.round(v * 10) / 10) + ' s';
    const bot = t('metrics.bot'), human = t('metrics.human');
    const r = (tier, key) => ({values: groups.map((g) => ratio(g[tier][key])), hover: groups.map((g) => hoverRatio(g[tier][key]))});
    const d = (tier, key, p) => ({values: groups.map((g) => g[tier][key][p]),
                                  hover: groups.map((g) => 'n = ' + g[tier][key].count)});
    const reasons = [...new Set(groups.flatMap((g) => Object.keys(g.human.handoff_reasons || {})))].sort();
    $('charts').replaceChildren(
      chart('chart-rate', t('metrics.rate'), buckets, [
        {label: bot, cls: 'bot', ...r('bot', 'response_rate_within_sla')},
        {label: human, cls: 'human', ...r('human', 'response_rate_within_sla')}], {max: 1, format: pctFmt}),
      chart('chart-times', t('metrics.times'), buckets, [
        {label: bot + ' p50', cls: 'bot', ...d('bot', 'response_time', 'p50')},
        {label: bot + ' p90', cls: 'bot2', ...d('bot', 'response_time', 'p90')},
        {label: human + ' p50', cls: 'human', ...d('human', 'response_time', 'p50')},
        {label: human + ' p90', cls: 'human2', ...d('human', 'response_time', 'p90')}], {format: secFmt}),
      chart('chart-first', t('metrics.first'), buckets, [
        {label: 'p50', cls: 'human', ...d('human', 'first_response_time', 'p50')},
        {label: 'p90', cls: 'human2', ...d('human', 'first_response_time', 'p90')}], {format: secFmt}),
      chart('chart-containment', t('metrics.containment'), buckets, [
        {label: bot, cls: 'bot', ...r('bot', 'containment')}], {max: 1, format: pctFmt}),
      chart('chart-reasons', t('metrics.reasons'), buckets, reasons.map((reason, i) => ({
        label: reason, cls: 'c' + (i % 6), values: groups.map((g) => (g.human.handoff_reasons || {})[reason] || 0),
        hover: groups.map((g) => 'of ' + g.human.handoffs)})), {format: (v) => String(v)}),
      chart('chart-abandonment', t('metrics.abandonment'), buckets, [
        {label: human, cls: 'human', ...r('human', 'abandonment')}], {max: 1, format: pctFmt}),
      chart('chart-satisfaction', t('metrics.satisfaction'), buckets, [
        {label: bot, cls: 'bot', ...r('bot', 'satisfaction')},
        {label: human, cls: 'human', ...r('human', 'satisfaction')}], {max: 1, format: pctFmt}));
  }

  function csv() {
    const rows = [['bucket', 'tier', 'metric', 'value', 'numerator', 'denominator']];
    for (const g of report.groups) {
      for (const tier of ['bot', 'human']) {
        for (const [key, v] of Object.entries(g[tier])) {
          if (v && typeof v === 'object' && 'denominator' in v) rows.push([g.bucket || '', tier, key, v.value ?? '', v.numerator, v.denominator]);
          else if (v && typeof v === 'object' && 'p50' in v) for (const p of ['count', 'avg', 'p50', 'p90']) rows.push([g.bucket || '', tier, key + '.' + p, v[p] ?? '', '', '']);
          else if (typeof v === 'number') rows.push([g.bucket || '', tier, key, v, '', '']);
        }
      }
    }
    const text = rows.map((r) => r.map((c) => /[",\n]/.test(String(c)) ? '"' + String(c).replace(/"/g, '""') + '"' : c).join(',')).join('\n');
    const a = el('a', {href: URL.createObjectURL(new Blob([text], {type: 'text/csv'})), download: 'tierdesk-metrics.csv'});
    document.body.append(a); a.click(); a.remove();
  }

  async function load() {
    const [from, to] = preset($('preset').value);
    $('metrics-status').textContent = t('metrics.loading');
    try {
      report = await api('GET', '/v1/metrics?group_by=tier&bucket=' + $('bucket').value + '&from=' +
        encodeURIComponent(new Date(from).toISOString()) + '&to=' + encodeURIComponent(new Date(to).toISOString()));
      $('metrics-status').textContent = '';
      render();
    } catch (e) {
      $('metrics-status').textContent = t('error.generic') + ' ' + e.message;
    }
  }

  $('preset').addEventListener('change', () => {
    const custom = $('preset').value === 'custom';
    if (!custom) { const [f, to] = preset($('preset').value); $('from').value = isoLocalInput(f); $('to').value = isoLocalInput(to); }
    if ($('preset').value === 'week') $('bucket').value = 'day';
  });
  $('range').addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
  $('csv').addEventListener('click', () => report && csv());
  const [f, to] = preset('today');
  $('from').value = isoLocalInput(f); $('to').value = isoLocalInput(to);
  load();
})();
