// quantlens web app, recipe view: one type per tensor of a sweep job, edited in a table or
// on a tensor's error-vs-bpw curve (with its knee, the chosen type and what llama.cpp's
// presets give it), saved as JSON/YAML, quantized and verified beside presets, the measured
// points drawn on the size-vs-KLD chart next to the plan frontier and this recipe's
// prediction. Uses app.js (window.qlApp) for the API and report.js for the charts.
/* global QLReport, Plotly */
(function () {
  'use strict';
  const $ = (sel) => document.querySelector(sel);
  const { el, fmt, fmtBytes } = QLReport;
  const app = window.qlApp;

  const recipe = {
    id: null, data: null,
    choice: new Map(),  // unit index → type index
    pinned: new Set(),  // unit indices kept when the start changes
    presets: {},  // preset name → {tensor: type}, for the curve
    focus: null,  // unit index shown on the curve
    saved: null,  // {name, format, path, sig}: the last save, reused while nothing changed
    startPlan: null,  // the plan the choices started from (its per-tensor rounding is kept)
  };

  function cellOf(u, t) { return QLReport.index(recipe.data).cell(u, t); }
  function unitBytes(u, t) {
    const m = cellOf(u, t), unit = recipe.data.units[u];
    if (m && typeof m.bytes === 'number') return m.bytes;
    return (unit.n_params || 0) * recipe.data.types[t].bpw / 8;
  }

  // Size, bpw and predicted KLD (sum of per-tensor kld_mean from the sweep) of the choice.
  function recipeStats() {
    // Σ per-tensor ΔKLD, and Σ per-tensor Δp99 KLD (the plan's additive proxy of the mix's
    // p99, src/analysis/plan/plan_job.h; null when a chosen cell has no tail).
    let size = 0, params = 0, kld = 0, p99 = 0;
    for (const [u, t] of recipe.choice) {
      size += unitBytes(u, t);
      params += recipe.data.units[u].n_params || 0;
      const m = cellOf(u, t);
      if (m && typeof m.kld_mean === 'number') kld += m.kld_mean;
      if (p99 !== null) p99 = m && typeof m.kld_p99 === 'number' ? p99 + Math.max(0, m.kld_p99) : null;
    }
    return { size, bpw: params ? (size * 8) / params : null, kld, p99 };
  }

  // Each unit's anchored pattern comes from the server (formats/recipe.h anchored_pattern), the
  // one escaping the CLI's --tensor-type exports use too.
  function llamaArgs() {
    const lines = [];
    for (const [u, t] of recipe.choice)
      lines.push(`--tensor-type '${recipe.data.units[u].pattern}=${recipe.data.types[t].name.toLowerCase()}'`);
    return lines.join(' \\\n');
  }

  function updateSummary() {
    const s = recipeStats();
    $('#recipe-size').textContent = fmtBytes(s.size);
    $('#recipe-size').dataset.bytes = String(Math.round(s.size));
    $('#recipe-bpw').textContent = fmt(s.bpw);
    $('#recipe-kld').textContent = fmt(s.kld);
    $('#recipe-p99').textContent = fmt(s.p99);
    $('#recipe-llama').value = llamaArgs();
    drawVerify();
  }

  function measuredTypes(u) {
    return recipe.data.types.map((t, ti) => ti).filter((ti) => cellOf(u, ti));
  }

  function applyStart() {
    const d = recipe.data, start = $('#recipe-start').value;
    const plan = (d.plans || []).find((p) => 'plan:' + p.name === start);
    recipe.startPlan = plan || null;
    d.units.forEach((u, ui) => {
      if (!QLReport.isTensorUnit(u) || recipe.pinned.has(ui)) return;  // "(all)": whole-model items
      const types = measuredTypes(ui);
      if (!types.length) return;
      let t = types[types.length - 1];  // default: the most bits measured
      const want = plan ? plan.tensors[u.name] : start.startsWith('type:') ? start.slice(5) : null;
      if (want) {
        const ti = types.find((x) => d.types[x].name.toLowerCase() === String(want).toLowerCase());
        if (ti !== undefined) t = ti;
      }
      recipe.choice.set(ui, t);
    });
    renderTable();
  }

  function setChoice(u, t) {
    recipe.choice.set(u, t);
    const sel = document.querySelector(`#recipe-table select[data-unit="${CSS.escape(recipe.data.units[u].name)}"]`);
    if (sel) { sel.value = String(t); sel.dispatchEvent(new Event('refresh')); }
    updateSummary();
    if (recipe.focus === u) drawCurve(u);
  }

  function renderTable() {
    const d = recipe.data, body = $('#recipe-table tbody'), q = $('#recipe-filter').value.toLowerCase();
    body.innerHTML = '';
    for (const [u, t] of recipe.choice) {
      const unit = d.units[u];
      if (q && !unit.name.toLowerCase().includes(q)) continue;
      const sel = el('select', { 'data-unit': unit.name });
      for (const ti of measuredTypes(u)) sel.appendChild(el('option', { value: String(ti), text: d.types[ti].name }));
      sel.value = String(t);
      const sizeCell = el('td', { class: 'num' }), kldCell = el('td', { class: 'num' });
      const fill = () => {
        const ti = recipe.choice.get(u), m = cellOf(u, ti);
        sizeCell.textContent = fmtBytes(unitBytes(u, ti));
        kldCell.textContent = fmt(m && m.kld_mean);
      };
      sel.addEventListener('change', () => { setChoice(u, +sel.value); fill(); });
      sel.addEventListener('refresh', fill);
      fill();
      const pin = el('input', { type: 'checkbox', 'data-pin': unit.name, title: 'keep this type when the start changes' });
      pin.checked = recipe.pinned.has(u);
      pin.addEventListener('change', () => { if (pin.checked) recipe.pinned.add(u); else recipe.pinned.delete(u); });
      const name = el('td', { class: 'ql-link', text: unit.name, 'data-curve': unit.name, onclick: () => drawCurve(u) });
      body.appendChild(el('tr', { class: recipe.focus === u ? 'ql-focus' : '' }, [name, el('td', {}, [sel]), sizeCell, kldCell, el('td', {}, [pin])]));
    }
    updateSummary();
  }

  // The tensor's measured ΔKLD (and weight proxy) against bits per weight, its chord knee,
  // the type chosen here and the types llama.cpp's presets give it; one button per measured
  // type changes the choice.
  function drawCurve(u) {
    const d = recipe.data, unit = d.units[u];
    recipe.focus = u;
    for (const tr of document.querySelectorAll('#recipe-table tr.ql-focus')) tr.classList.remove('ql-focus');
    const cell = document.querySelector(`#recipe-table td[data-curve="${CSS.escape(unit.name)}"]`);
    if (cell) cell.parentNode.classList.add('ql-focus');
    $('#curve-title').textContent = unit.name;
    const kld = QLReport.unitCurve(d, u, 'kld_mean'), proxy = QLReport.unitCurve(d, u, 'w_rel_fro');
    const chosen = d.types[recipe.choice.get(u)];
    const traces = [{ x: kld.map((p) => p.x), y: kld.map((p) => p.y), text: kld.map((p) => p.type), name: 'ΔKLD (measured)',
      mode: 'lines+markers+text', textposition: 'top center', hovertemplate: '%{text}: ΔKLD %{y:.4g} at %{x:.3f} bpw<extra></extra>' }];
    if (proxy.length) traces.push({ x: proxy.map((p) => p.x), y: proxy.map((p) => p.y), name: 'weight proxy (w_rel_fro)', yaxis: 'y2',
      mode: 'lines', line: { dash: 'dot', color: '#98a2b3' }, hovertemplate: 'w_rel_fro %{y:.4g}<extra></extra>' });
    const knee = QLReport.chordKnee(kld);
    if (knee) traces.push({ x: [knee.x], y: [knee.y], name: 'knee (' + knee.type + ')', mode: 'markers', marker: { symbol: 'star', size: 16, color: '#f79009' } });
    const cp = chosen && kld.find((p) => p.type === chosen.name);
    if (cp) traces.push({ x: [cp.x], y: [cp.y], name: 'chosen (' + cp.type + ')', mode: 'markers',
      marker: { symbol: 'diamond-open', size: 18, line: { width: 3 }, color: '#3b5bdb' } });
    const presetNotes = [];
    const byType = new Map();
    for (const [preset, tensors] of Object.entries(recipe.presets)) {
      const t = tensors[unit.name];
      if (!t) continue;
      presetNotes.push(`${preset} → ${t}`);
      if (!byType.has(t)) byType.set(t, []);
      byType.get(t).push(preset);
    }
    const pp = [...byType.entries()].map(([t, names]) => ({ p: kld.find((k) => k.type === t), names })).filter((x) => x.p);
    if (pp.length) traces.push({ x: pp.map((x) => x.p.x), y: pp.map((x) => x.p.y), text: pp.map((x) => x.names.join(', ')), name: 'presets',
      mode: 'markers', marker: { symbol: 'x-thin-open', size: 14, line: { width: 2 }, color: '#12b76a' }, hovertemplate: '%{text}<extra></extra>' });
    Plotly.react('recipe-curve', traces, {
      margin: { l: 60, r: 60, t: 10, b: 40 }, height: 300,
      xaxis: { title: { text: 'bits per weight' } }, yaxis: { title: { text: 'ΔKLD' }, type: 'log' },
      yaxis2: { title: { text: 'w_rel_fro' }, type: 'log', overlaying: 'y', side: 'right', showgrid: false },
      legend: { orientation: 'h', y: -0.25 },
    }, { displaylogo: false, responsive: true });
    const buttons = $('#curve-types');
    buttons.innerHTML = '';
    buttons.appendChild(el('span', { class: 'ql-note', text: 'type:' }));
    for (const ti of measuredTypes(u))
      buttons.appendChild(el('button', { class: 'ql-btn secondary' + (ti === recipe.choice.get(u) ? ' active' : ''), text: d.types[ti].name,
        'data-set-type': d.types[ti].name, onclick: () => setChoice(u, ti) }));
    $('#curve-note').textContent = (knee ? `Knee at ${knee.type}: more bits stop paying there. ` : '') +
      (presetNotes.length ? 'llama.cpp presets give it: ' + presetNotes.join(', ') + '.' : '');
  }

  // Size vs KLD (or PPL): plan frontiers and verified points (report.js), plus this recipe's
  // predicted point, which moves as types change.
  function drawVerify() {
    const d = recipe.data, y = $('#verify-y').value, gd = $('#verify-chart');
    QLReport.renderPareto(gd, d, y);
    const s = recipeStats(), mine = y === 'kld' ? s.kld : y === 'p99' ? s.p99 : null;
    if (typeof mine === 'number')
      Plotly.addTraces(gd, { x: [s.size / 1e6], y: [mine], mode: 'markers', name: 'this recipe (predicted)',
        marker: { symbol: 'star-open', size: 16, line: { width: 2 }, color: '#d92d20' } });
    const body = $('#verify-table tbody');
    body.innerHTML = '';
    for (const r of (d.verify && d.verify.rows) || [])
      body.appendChild(el('tr', { 'data-verify': r.name }, [el('td', { text: r.name }), el('td', { class: 'num', text: fmtBytes(r.size_bytes) }),
        el('td', { class: 'num', text: fmt(r.bpw) }), el('td', { class: 'num', text: fmt(r.ppl) }), el('td', { class: 'num', text: fmt(r.kld_mean) }),
        el('td', { class: 'num', text: fmt(r.kld_p99) }), el('td', { class: 'num', text: fmt(r.kld_p999) }), el('td', { class: 'num', text: fmt(r.kld_max) }),
        el('td', { class: 'num', text: typeof r.top1 === 'number' ? (100 * r.top1).toFixed(2) + ' %' : '–' }),
        el('td', { class: 'num', text: fmt(r.predicted_kld) }), el('td', { class: 'num', text: fmt(r.predicted_kld_p99) })]));
  }

  // Every recipe verified in the store (GET /api/verified), newest job first; a row opens
  // its sweep's recipe view.
  async function drawVerified() {
    const body = $('#verified-table tbody');
    let list;
    try { list = (await app.api('GET', '/api/verified')).recipes; } catch (e) { body.textContent = e.message; return; }
    body.innerHTML = '';
    for (const r of list)
      body.appendChild(el('tr', { class: 'ql-entry', 'data-verified': `${r.job}/${r.name}`, onclick: () => { location.hash = '#recipe/' + r.job; } }, [
        el('td', { text: String(r.job) }), el('td', { text: (r.model || '').split('/').pop() }), el('td', { text: r.name }),
        el('td', { class: 'num', text: fmtBytes(r.size_bytes) }), el('td', { class: 'num', text: fmt(r.bpw) }), el('td', { class: 'num', text: fmt(r.ppl) }),
        el('td', { class: 'num', text: fmt(r.kld_mean) }), el('td', { class: 'num', text: fmt(r.kld_p99) }), el('td', { class: 'num', text: fmt(r.kld_p999) }),
        el('td', { class: 'num', text: typeof r.top1 === 'number' ? (100 * r.top1).toFixed(2) + ' %' : '–' }),
        el('td', { class: 'num', text: fmt(r.predicted_kld) }), el('td', { class: 'ql-note', text: (r.verified_text || '').split('/').pop() + (r.n_tokens ? ` · ${r.n_tokens} tokens` : '') })]));
    if (!list.length) body.appendChild(el('tr', {}, [el('td', { colspan: '12', class: 'ql-note', text: 'No recipe verified in this store yet: Verify one above.' })]));
  }

  function recipeDocument() {
    const d = recipe.data, s = recipeStats(), tensors = {};
    for (const [u, t] of recipe.choice) tensors[d.units[u].name] = d.types[t].name;
    const rounding = QLReport.recipeRounding(recipe.startPlan, tensors);
    const v2 = Object.keys(rounding).length ? { rounding } : {};
    // The recipe document of src/formats/recipe.h, which the server parses as a recipe file.
    return { format: 'quantlens-recipe', version: v2.rounding ? 2 : 1, tensors, ...v2,
      model: (d.model && d.model.path) || '', model_hash: (d.model && d.model.hash) || '',
      job_id: d.job ? d.job.id : 0, metric: 'kld', budget: { kind: 'manual', value: 0 },
      predicted: Object.assign({ size_bytes: Math.round(s.size), bpw: s.bpw, kld: s.kld }, typeof s.p99 === 'number' ? { kld_p99: s.p99 } : {}) };
  }

  // Saves the recipe (asking before replacing a file of the same name) unless this exact
  // recipe was saved under this name already; returns its path.
  async function save(format) {
    const doc = recipeDocument(), name = $('#recipe-name').value.trim(), sig = JSON.stringify([doc.tensors, doc.rounding]);
    const s = recipe.saved;
    if (s && s.name === name && s.sig === sig && (!format || s.format === format)) return s.path;
    const body = { name, format: format || 'json', recipe: doc };
    const r = await app.postConfirmed('/api/recipes', body, (b) => Object.assign({}, b, { overwrite: true }));
    recipe.saved = { name, format: body.format, path: r.path, sig };
    const out = $('#recipe-status');
    out.className = 'ql-ok';
    out.textContent = `saved ${r.path} (${r.n_tensors} tensors)`;
    return r.path;
  }

  async function saveClicked(format) {
    const out = $('#recipe-status');
    try { recipe.saved = null; await save(format); } catch (e) { out.className = 'ql-error'; out.textContent = e.message; }
  }

  async function quantize() {
    const out = $('#quantize-status');
    const output = $('#recipe-output').value.trim() || $('#recipe-name').value.trim() + '.gguf';
    out.className = 'ql-note';
    out.textContent = 'saving the recipe…';
    try {
      const path = await save();
      out.textContent = `quantizing into ${output}…`;
      const r = await app.runCommand({ kind: 'quantize', model: recipe.data.model.path, options: { recipe: path, output } },
        (line) => { out.textContent = 'quantizing: ' + line; });
      out.className = 'ql-ok';
      out.textContent = 'done: ' + (r.output || '').trim().split('\n').filter(Boolean).slice(-1)[0];
      out.dataset.done = output;
      app.scanRoots().catch(() => {});
    } catch (e) { out.className = 'ql-error'; out.textContent = e.message; }
  }

  async function verify() {
    const out = $('#verify-status');
    const presets = [...document.querySelectorAll('#verify-presets input:checked')].map((c) => c.value).join(',') || 'none';
    out.className = 'ql-note';
    out.textContent = 'saving the recipe…';
    try {
      const path = await save();
      out.textContent = `verifying beside ${presets}…`;
      const options = { text: $('#verify-text').value, recipe: path, presets,
        ctx: Number($('#verify-ctx').value), chunks: Number($('#verify-chunks').value) };
      await app.runCommand({ kind: 'verify', model: recipe.data.model.path, job: recipe.id, options },
        (line) => { out.textContent = 'verifying: ' + line; });
      recipe.data = await app.reportData(recipe.id, true);
      const mine = ((recipe.data.verify && recipe.data.verify.rows) || []).find((r) => r.name === $('#recipe-name').value.trim());
      out.className = 'ql-ok';
      out.textContent = mine ? `verified: ${mine.name} ${fmtBytes(mine.size_bytes)}, KLD ${fmt(mine.kld_mean)} (predicted ${fmt(mine.predicted_kld)})` : 'verified';
      drawVerify();
      await drawVerified();
    } catch (e) { out.className = 'ql-error'; out.textContent = e.message; }
  }

  // Runs `plan JOB --target-bpw X` (a plan artifact of the sweep job), then starts the
  // editor from it; its frontier appears on the size-vs-KLD chart.
  async function plan() {
    const out = $('#plan-status'), bpw = Number($('#plan-bpw').value);
    const name = 'bpw' + String(bpw).replace('.', '_');
    out.className = 'ql-note';
    out.textContent = 'planning…';
    try {
      await app.runCommand({ kind: 'plan', job: recipe.id, options: { 'target-bpw': bpw, name } });
      recipe.data = await app.reportData(recipe.id, true);
      fillStarts();
      $('#recipe-start').value = 'plan:' + name;
      applyStart();
      const p = recipe.data.plans.find((x) => x.name === name);
      out.className = 'ql-ok';
      out.textContent = p ? `plan ${name}: ${fmtBytes(p.size_bytes)}, ${fmt(p.bpw)} bpw, predicted KLD ${fmt(p.predicted_kld)}` : 'planned';
    } catch (e) { out.className = 'ql-error'; out.textContent = e.message; }
  }

  function fillStarts() {
    const s = $('#recipe-start'), d = recipe.data;
    s.innerHTML = '';
    for (const p of d.plans || []) s.appendChild(el('option', { value: 'plan:' + p.name, text: 'plan ' + p.name }));
    for (const t of d.types.slice().reverse()) s.appendChild(el('option', { value: 'type:' + t.name, text: 'all ' + t.name }));
  }

  function fillVerifyControls() {
    const texts = app.found().texts, sel = $('#verify-text');
    sel.innerHTML = '';
    for (const f of texts) sel.appendChild(el('option', { value: f, text: f.split('/').slice(-2).join('/') }));
    const held = texts.find((f) => /eval|test|valid/.test(f.split('/').pop()));
    if (held) sel.value = held;
    const box = $('#verify-presets');
    if (box.childElementCount) return;
    box.appendChild(el('span', { class: 'ql-note', text: 'beside ' }));
    for (const p of app.VERIFY_PRESETS) {
      const cb = el('input', { type: 'checkbox', value: p, 'data-preset': p });
      cb.checked = p === 'Q4_K_M';
      box.appendChild(el('label', { class: 'ql-check' }, [cb, document.createTextNode(' ' + p)]));
    }
  }

  async function show(id) {
    drawVerified();
    if (!id) return;
    $('#recipe-job').value = String(id);
    let data;
    try {
      data = await app.reportData(id, recipe.id !== id);
    } catch (e) { $('#recipe-status').textContent = e.message; return; }
    if (recipe.id === id && recipe.data) return;  // keep the edits when coming back
    Object.assign(recipe, { id, data, focus: null, saved: null, presets: {} });
    recipe.choice.clear();
    recipe.pinned.clear();
    fillStarts();
    const base = ((data.model && data.model.name) || 'model') + '-custom';
    $('#recipe-name').value = base;
    $('#recipe-output').placeholder = base + '.gguf';
    fillVerifyControls();
    applyStart();
    $('#curve-title').textContent = 'Click a tensor to see its error curve';
    Plotly.purge('recipe-curve');
    $('#curve-types').innerHTML = '';
    if (data.model && data.model.path)
      app.api('GET', `/api/presets?model=${encodeURIComponent(data.model.path)}&presets=${app.VERIFY_PRESETS.join(',')}`)
        .then((r) => { recipe.presets = r.presets; if (recipe.focus !== null) drawCurve(recipe.focus); })
        .catch((e) => { $('#curve-note').textContent = 'presets: ' + e.message; });
  }

  $('#recipe-job').addEventListener('change', () => { location.hash = '#recipe/' + $('#recipe-job').value; });
  $('#recipe-start').addEventListener('change', applyStart);
  $('#recipe-filter').addEventListener('input', renderTable);
  $('#recipe-save-json').addEventListener('click', () => saveClicked('json'));
  $('#recipe-save-yaml').addEventListener('click', () => saveClicked('yaml'));
  $('#recipe-name').addEventListener('input', () => { $('#recipe-output').placeholder = $('#recipe-name').value.trim() + '.gguf'; });
  $('#recipe-quantize').addEventListener('click', quantize);
  $('#recipe-verify').addEventListener('click', verify);
  $('#recipe-plan').addEventListener('click', plan);
  $('#verify-y').addEventListener('change', drawVerify);

  window.qlRecipe = { show, recipeStats, llamaArgs, drawVerified };
  Object.assign(window.qlApp, { recipeStats, llamaArgs });
})();
