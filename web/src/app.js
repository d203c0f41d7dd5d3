// quantlens web app: talks to the JSON API of `quantlens serve` (src/server/server.h) and
// reuses report.js for the charts. State lives in the URL hash (#jobs, #models,
// #report/ID, #recipe/ID) so a reload keeps the view.
/* global QLReport */
(function () {
  'use strict';
  const $ = (sel) => document.querySelector(sel);
  const { el, fmt, fmtBytes } = QLReport;

  async function api(method, path, body) {
    const init = { method, headers: {} };
    if (method === 'POST') {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body || {});
    }
    const res = await fetch(path, init);
    let data = null;
    try { data = await res.json(); } catch (e) { data = { error: res.statusText }; }
    if (!res.ok) throw new Error((data && data.error) || res.statusText);
    return data;
  }

  function status(text, bad) {
    const s = $('#ql-status');
    s.textContent = text;
    s.className = 'meta ' + (bad ? 'ql-error' : '');
  }

  // ---------------------------------------------------------------- jobs
  const jobs = new Map();  // id → job json
  const streams = new Map();  // id → EventSource

  function fmtEta(s) {
    if (s === null || s === undefined) return '';
    if (s < 90) return Math.round(s) + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }

  function jobRow(job) {
    const pct = Math.round(100 * (job.progress.fraction || (job.state === 'done' ? 1 : 0)));
    const tr = el('tr', { 'data-job-id': String(job.id), 'data-state': job.status });
    const bar = el('div', { class: 'ql-progress' }, [el('div', { style: `width:${pct}%` })]);
    const actions = el('td');
    const act = (verb) => el('button', { class: 'ql-btn secondary', text: verb, 'data-action': verb,
      onclick: () => api('POST', `/api/jobs/${job.id}/${verb}`).then(refreshJobs).catch((e) => status(e.message, true)) });
    if (job.status === 'running') { actions.appendChild(act('pause')); actions.appendChild(act('cancel')); }
    if (['paused', 'failed', 'interrupted'].includes(job.status)) { actions.appendChild(act('resume')); actions.appendChild(act('cancel')); }
    if (job.kind === 'sweep' || job.progress.done > 0) {
      actions.appendChild(el('button', { class: 'ql-btn secondary', text: 'report', onclick: () => { location.hash = '#report/' + job.id; } }));
      actions.appendChild(el('button', { class: 'ql-btn secondary', text: 'recipe', onclick: () => { location.hash = '#recipe/' + job.id; } }));
    }
    for (const c of [String(job.id), job.kind, (job.model || '').split('/').pop(), job.status])
      tr.appendChild(el('td', { text: c }));
    tr.lastChild.className = 'ql-state';
    tr.appendChild(el('td', {}, [bar, el('span', { class: 'ql-progress-text', text: ` ${pct} %` }),
      el('span', { class: 'ql-note', text: ` ${job.progress.done}/${job.progress.total}` })]));
    tr.appendChild(el('td', { text: fmtEta(job.eta_s) }));
    tr.appendChild(el('td', { class: 'ql-note', text: job.error || job.progress.message || '' }));
    tr.appendChild(actions);
    return tr;
  }

  function renderJobs() {
    const body = $('#jobs-table tbody');
    body.innerHTML = '';
    const list = [...jobs.values()].sort((a, b) => b.id - a.id);
    for (const j of list) body.appendChild(jobRow(j));
    if (!list.length) body.appendChild(el('tr', {}, [el('td', { colspan: '8', class: 'ql-note', text: 'No jobs in this store yet.' })]));
    const ids = list.map((j) => j.id).join(',');
    if (ids === renderJobs.ids) return;  // keep open dropdowns alone when nothing changed
    renderJobs.ids = ids;
    for (const sel of ['#report-job', '#recipe-job']) {
      const s = $(sel), keep = s.value;
      s.innerHTML = '';
      for (const j of list) s.appendChild(el('option', { value: String(j.id), text: `${j.id} · ${j.kind} · ${(j.model || '').split('/').pop()}` }));
      if (keep && jobs.has(+keep)) s.value = keep;
    }
  }

  function follow(job) {
    if (streams.has(job.id) || !['running', 'queued'].includes(job.status) || !window.EventSource) return;
    const es = new EventSource(`/api/jobs/${job.id}/events`);
    streams.set(job.id, es);
    es.onmessage = (ev) => {
      const j = JSON.parse(ev.data);
      jobs.set(j.id, j);
      renderJobs();
      if (!['running', 'queued', 'paused'].includes(j.status)) { es.close(); streams.delete(j.id); }
    };
    es.addEventListener('gone', () => { es.close(); streams.delete(job.id); });
    es.onerror = () => { es.close(); streams.delete(job.id); };  // polling keeps going
  }

  async function refreshJobs() {
    try {
      const data = await api('GET', '/api/jobs');
      jobs.clear();
      for (const j of data.jobs) { jobs.set(j.id, j); follow(j); }
      renderJobs();
    } catch (e) { status('cannot list jobs: ' + e.message, true); }
  }

  // Start-job form: the options each kind accepts, as the server lists them from the table
  // the CLI commands are checked against (src/jobs/job_options.cpp); it validates them again.
  let KINDS = {};
  async function loadKinds() {
    try { KINDS = await api('GET', '/api/job-kinds'); } catch (e) { status('cannot list job kinds: ' + e.message, true); }
  }

  function renderStartForm() {
    const kind = $('#start-kind').value, spec = KINDS[kind];
    if (!spec) return;
    $('#start-model-label').hidden = spec.target !== 'model';
    $('#start-job-label').hidden = spec.target !== 'job' && !spec.job_option;
    const box = $('#start-options');
    box.innerHTML = '';
    for (const [name, type] of Object.entries(spec.options)) {
      const input = type === 'flag' ? el('input', { type: 'checkbox', 'data-option': name, 'data-type': type })
        : el('input', { 'data-option': name, 'data-type': type, size: type === 'number' ? '6' : '24' });
      box.appendChild(el('label', { text: name + ' ' }, [input]));
    }
  }

  async function startJob() {
    const kind = $('#start-kind').value, spec = KINDS[kind];
    const body = { kind, options: {} };
    if (spec.target === 'model') body.model = $('#start-model').value.trim();
    if (spec.target === 'job' || (spec.job_option && $('#start-job').value.trim()))
      body.job = parseInt($('#start-job').value, 10);
    for (const input of document.querySelectorAll('#start-options [data-option]')) {
      const t = input.dataset.type, name = input.dataset.option;
      if (t === 'flag') { if (input.checked) body.options[name] = true; continue; }
      const v = input.value.trim();
      if (!v) continue;
      body.options[name] = t === 'number' ? Number(v) : v;
    }
    const out = $('#start-result');
    out.className = 'ql-note';
    out.textContent = 'starting…';
    try {
      const r = await api('POST', '/api/jobs', body);
      out.className = 'ql-ok';
      // eval, quantize and verify record no job: they answer with their output when done.
      out.textContent = r.job ? `started job ${r.job.id} (pid ${r.pid})`
        : 'exit_code' in r ? `${kind} finished: ${(r.output || '').trim().split('\n').pop()}`
        : `process ${r.pid} started (log ${r.log})`;
      await refreshJobs();
    } catch (e) { out.className = 'ql-error'; out.textContent = e.message; }
  }

  // ---------------------------------------------------------------- models
  let modelDoc = null, modelSeq = 0;
  async function openPath(path) {
    $('#models-error').textContent = '';
    const seq = ++modelSeq;  // only the latest request may draw (clicks can overtake loads)
    try {
      const doc = await api('GET', '/api/models?path=' + encodeURIComponent(path));
      if (seq !== modelSeq) return;
      modelDoc = doc;
      if (modelDoc.kind === 'roots') { $('#models-path').value = modelDoc.roots[0]; return openPath(modelDoc.roots[0]); }
      $('#models-path').value = modelDoc.path;
      renderModel();
    } catch (e) { if (seq === modelSeq) $('#models-error').textContent = e.message; }
  }

  function renderModel() {
    const body = $('#models-table tbody'), q = $('#models-search').value.toLowerCase();
    body.innerHTML = '';
    const d = modelDoc;
    if (!d) return;
    if (d.kind === 'dir') {
      $('#models-summary').textContent = `${d.entries.length} entries${d.truncated ? ' (cut)' : ''}`;
      for (const e of d.entries.filter((x) => x.name.toLowerCase().includes(q))) {
        const tr = el('tr', { class: 'ql-entry', onclick: () => openPath(d.path + '/' + e.name) },
          [el('td', { text: (e.type === 'dir' ? '📁 ' : '') + e.name + (e.model ? '  · model' : '') }),
            el('td', { class: 'num', text: e.type === 'dir' ? '' : fmtBytes(e.size) })]);
        body.appendChild(tr);
      }
    } else if (d.kind === 'model') {
      $('#models-summary').textContent = `${d.format} model · ${d.n_tensors} tensors · ${fmtBytes(d.bytes)}`;
      // Tree by name prefix: blk.N groups collapse into one header row each.
      let group = null;
      for (const t of d.tensors.filter((x) => x.name.toLowerCase().includes(q))) {
        const m = /^(?:model\.layers\.|blk\.)(\d+)\./.exec(t.name);
        const g = m ? 'layer ' + m[1] : 'other';
        if (g !== group) { group = g; body.appendChild(el('tr', {}, [el('th', { colspan: '4', text: g })])); }
        body.appendChild(el('tr', { class: 'ql-tensor' }, [el('td', { text: t.name }), el('td', { text: t.dtype }),
          el('td', { text: '[' + t.shape.join(', ') + ']' }), el('td', { class: 'num', text: fmtBytes(t.bytes) })]));
      }
    } else {
      $('#models-summary').textContent = `file · ${fmtBytes(d.size)}`;
    }
  }

  // ---------------------------------------------------------------- report
  const dataCache = new Map();
  async function reportData(id) {
    if (!dataCache.has(id)) dataCache.set(id, await api('GET', `/api/jobs/${id}/report-data`));
    return dataCache.get(id);
  }

  async function showReport(id) {
    if (!id) return;
    $('#report-job').value = String(id);
    try {
      dataCache.delete(id);  // a running job's data changes
      const data = await reportData(id);
      window.qlData = data;
      window.qlReport = QLReport.mount($('#report-root'), data);
    } catch (e) { $('#report-root').textContent = e.message; }
  }

  // ---------------------------------------------------------------- recipe editor
  const recipe = { data: null, choice: new Map() };  // unit index → type index

  function cellOf(u, t) { return QLReport.index(recipe.data).cell(u, t); }
  function unitBytes(u, t) {
    const m = cellOf(u, t), unit = recipe.data.units[u];
    if (m && typeof m.bytes === 'number') return m.bytes;
    return (unit.n_params || 0) * recipe.data.types[t].bpw / 8;
  }

  // Size, bpw and predicted KLD (sum of per-tensor kld_mean from the sweep) of the choice.
  function recipeStats() {
    let size = 0, params = 0, kld = 0;
    for (const [u, t] of recipe.choice) {
      size += unitBytes(u, t);
      params += recipe.data.units[u].n_params || 0;
      const m = cellOf(u, t);
      if (m && typeof m.kld_mean === 'number') kld += m.kld_mean;
    }
    return { size, bpw: params ? (size * 8) / params : null, kld };
  }

  // Each unit's anchored pattern comes from the server (formats/recipe.h anchored_pattern), the
  // one escaping the CLI's --tensor-type exports use too.
  function llamaArgs() {
    const lines = [];
    for (const [u, t] of recipe.choice)
      lines.push(`--tensor-type '${recipe.data.units[u].pattern}=${recipe.data.types[t].name.toLowerCase()}'`);
    return lines.join(' \\\n');
  }

  function updateRecipeSummary() {
    const s = recipeStats();
    $('#recipe-size').textContent = fmtBytes(s.size);
    $('#recipe-size').dataset.bytes = String(Math.round(s.size));
    $('#recipe-bpw').textContent = fmt(s.bpw);
    $('#recipe-kld').textContent = fmt(s.kld);
    $('#recipe-llama').value = llamaArgs();
  }

  function measuredTypes(u) {
    return recipe.data.types.map((t, ti) => ti).filter((ti) => cellOf(u, ti));
  }

  function applyStart() {
    const d = recipe.data, start = $('#recipe-start').value;
    recipe.choice.clear();
    const plan = (d.plans || []).find((p) => 'plan:' + p.name === start);
    d.units.forEach((u, ui) => {
      if (!QLReport.isTensorUnit(u)) return;  // "(all)": the sweep's whole-model items
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
    renderRecipeTable();
  }

  function renderRecipeTable() {
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
      sel.addEventListener('change', () => { recipe.choice.set(u, +sel.value); fill(); updateRecipeSummary(); });
      fill();
      body.appendChild(el('tr', {}, [el('td', { text: unit.name }), el('td', {}, [sel]), sizeCell, kldCell]));
    }
    updateRecipeSummary();
  }

  async function showRecipe(id) {
    if (!id) return;
    $('#recipe-job').value = String(id);
    try {
      recipe.data = await reportData(id);
    } catch (e) { $('#recipe-status').textContent = e.message; return; }
    const s = $('#recipe-start');
    s.innerHTML = '';
    for (const p of recipe.data.plans || []) s.appendChild(el('option', { value: 'plan:' + p.name, text: 'plan ' + p.name }));
    for (const t of recipe.data.types.slice().reverse()) s.appendChild(el('option', { value: 'type:' + t.name, text: 'all ' + t.name }));
    $('#recipe-name').value = ((recipe.data.model && recipe.data.model.name) || 'model') + '-custom';
    applyStart();
  }

  async function saveRecipe(format) {
    const d = recipe.data, s = recipeStats(), tensors = {};
    for (const [u, t] of recipe.choice) tensors[d.units[u].name] = d.types[t].name;
    const body = { name: $('#recipe-name').value.trim(), format, overwrite: $('#recipe-overwrite').checked,
      // The recipe document of src/formats/recipe.h, which the server parses as a recipe file.
      recipe: { format: 'quantlens-recipe', version: 1, tensors,
        model: (d.model && d.model.path) || '', model_hash: (d.model && d.model.hash) || '',
        job_id: d.job ? d.job.id : 0, metric: 'kld', budget: { kind: 'manual', value: 0 },
        predicted: { size_bytes: Math.round(s.size), bpw: s.bpw, kld: s.kld } } };
    const out = $('#recipe-status');
    try {
      const r = await api('POST', '/api/recipes', body);
      out.className = 'ql-ok';
      out.textContent = `saved ${r.path} (${r.n_tensors} tensors)`;
    } catch (e) { out.className = 'ql-error'; out.textContent = e.message; }
  }

  // ---------------------------------------------------------------- routing
  function route() {
    const [tab, arg] = (location.hash.slice(1) || 'jobs').split('/');
    for (const v of document.querySelectorAll('.ql-view')) v.hidden = v.id !== 'view-' + tab;
    for (const b of document.querySelectorAll('#ql-tabs button')) b.classList.toggle('active', b.dataset.tab === tab);
    const firstJob = () => (arg ? +arg : [...jobs.keys()].sort((a, b) => b - a)[0]);
    if (tab === 'report') showReport(firstJob());
    if (tab === 'recipe') showRecipe(firstJob());
    if (tab === 'models' && !modelDoc) openPath('');
  }

  function init() {
    for (const b of document.querySelectorAll('#ql-tabs button'))
      b.addEventListener('click', () => { location.hash = '#' + b.dataset.tab; });
    loadKinds().then(() => {
      for (const k of Object.keys(KINDS)) $('#start-kind').appendChild(el('option', { value: k, text: k }));
      renderStartForm();
    });
    $('#start-kind').addEventListener('change', renderStartForm);
    $('#start-submit').addEventListener('click', startJob);
    $('#models-go').addEventListener('click', () => openPath($('#models-path').value));
    $('#models-path').addEventListener('keydown', (e) => { if (e.key === 'Enter') openPath($('#models-path').value); });
    $('#models-up').addEventListener('click', () => openPath($('#models-path').value.replace(/\/[^/]+\/?$/, '') || '/'));
    $('#models-use').addEventListener('click', () => { $('#start-model').value = $('#models-path').value; location.hash = '#jobs'; });
    $('#models-search').addEventListener('input', renderModel);
    $('#report-job').addEventListener('change', () => { location.hash = '#report/' + $('#report-job').value; });
    $('#recipe-job').addEventListener('change', () => { location.hash = '#recipe/' + $('#recipe-job').value; });
    $('#recipe-start').addEventListener('change', applyStart);
    $('#recipe-filter').addEventListener('input', renderRecipeTable);
    $('#recipe-save-json').addEventListener('click', () => saveRecipe('json'));
    $('#recipe-save-yaml').addEventListener('click', () => saveRecipe('yaml'));
    window.addEventListener('hashchange', route);
    refreshJobs().then(route);
    setInterval(refreshJobs, 2000);  // polling fallback; running jobs also stream events
  }

  window.qlApp = { recipeStats, llamaArgs, refreshJobs };
  init();
})();
