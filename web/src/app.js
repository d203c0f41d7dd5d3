// quantlens web app: talks to the JSON API of `quantlens serve` (src/server/server.h) and
// reuses report.js for the charts. State lives in the URL hash (#models, #jobs, #report/ID,
// #recipe/ID) so a reload keeps the view. This file: API helpers, the jobs list and the
// start form, the models view, the report view and routing; recipe.js is the recipe view.
// Nothing here knows a type, preset or option by heart: they come from /api/types and
// /api/job-kinds (the C++ tables).
/* global QLReport */
(function () {
  'use strict';
  const $ = (sel) => document.querySelector(sel);
  const { el, fmt, fmtBytes } = QLReport;

  // ---------------------------------------------------------------- API
  async function api(method, path, body) {
    const init = { method, headers: {} };
    if (method === 'POST') {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body || {});
    }
    const res = await fetch(path, init);
    let data = null;
    try { data = await res.json(); } catch (e) { data = { error: res.statusText }; }
    if (!res.ok) {
      const err = new Error((data && data.error) || res.statusText);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  // POST that never replaces a file silently: a 409 (the server's "exists") is shown to the
  // user, and only after they confirm is the request sent again with `confirmed(body)`.
  async function postConfirmed(path, body, confirmed) {
    try {
      return await api('POST', path, body);
    } catch (e) {
      if (e.status !== 409) throw e;
      const what = e.message.replace(/; send .*$/, '');  // the API's hint is for API users
      if (!window.confirm(what + '.\n\nReplace the existing file?')) {
        const d = new Error('not replaced: ' + what);
        d.declined = true;
        throw d;
      }
      return api('POST', path, confirmed(body));
    }
  }

  function status(text, bad) {
    const s = $('#ql-status');
    s.textContent = text;
    s.className = 'meta ' + (bad ? 'ql-error' : '');
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return '';
    if (s < 90) return Math.max(0, Math.round(s)) + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }

  // ---------------------------------------------------------------- catalog
  // Types (by bpw, with the sweep's defaults), presets and GPU support, from the server.
  let CATALOG = { types: [], presets: [], gpu: false };
  let KINDS = {};
  // Files found under the allowed roots: models, texts, imatrix files, recipes.
  const FOUND = { models: [], texts: [], imatrix: [], recipes: [], zoos: [], ggufs: [] };

  async function scanRoots() {
    const roots = (await api('GET', '/api/models?path=')).roots;
    const seen = { models: new Set(), texts: new Set(), imatrix: new Set(), recipes: new Set(), zoos: new Set(), ggufs: new Set() };
    const visit = async (dir, depth) => {
      let doc;
      try { doc = await api('GET', '/api/models?path=' + encodeURIComponent(dir)); } catch (e) { return; }
      if (doc.kind !== 'dir') return;
      const subdirs = [];
      for (const e of doc.entries) {
        const p = doc.path + '/' + e.name;
        if (e.type === 'dir' && e.model) seen.models.add(p);
        else if (e.type === 'dir') subdirs.push(p);
        else if (/imatrix/i.test(e.name) || /\.dat$/.test(e.name)) seen.imatrix.add(p);
        else if (/\.gguf$/.test(e.name)) { seen.models.add(p); seen.ggufs.add(p); }
        else if (/\.txt$/.test(e.name)) seen.texts.add(p);
        else if (/\.(json|ya?ml)$/.test(e.name) && /recipe|plan/i.test(doc.path + '/' + e.name)) seen.recipes.add(p);
        else if (/\.ya?ml$/.test(e.name)) seen.zoos.add(p);  // audit's zoo files
      }
      if (depth > 0) for (const d of subdirs.slice(0, 24)) await visit(d, depth - 1);
    };
    for (const r of roots) await visit(r, 1);
    for (const k of Object.keys(FOUND)) FOUND[k] = [...seen[k]].sort();
    fillModelList();
  }

  // The model field suggests the models found in the folders and those of the store's jobs.
  function fillModelList() {
    const dl = $('#start-model-list');
    dl.innerHTML = '';
    const fromJobs = [...jobs.values()].map((j) => j.model).filter(Boolean);
    for (const m of [...new Set([...FOUND.models, ...fromJobs])].sort()) dl.appendChild(el('option', { value: m }));
    for (const [id, list] of [['#start-zoo-list', FOUND.zoos], ['#start-gguf-list', FOUND.ggufs]]) {
      $(id).innerHTML = '';
      for (const f of list) $(id).appendChild(el('option', { value: f }));
    }
  }

  // ---------------------------------------------------------------- jobs
  const jobs = new Map();  // id → job json
  const streams = new Map();  // id → EventSource
  const seenProgress = new Map();  // id → {t, f}: first observation, for an ETA of our own

  // The server's ETA when it has one; else from the progress this page has watched.
  function etaOf(job) {
    if (job.status === 'done') return job.elapsed_s ? 'took ' + fmtSeconds(job.elapsed_s) : '';
    if (job.status !== 'running') return '';
    if (typeof job.eta_s === 'number') return fmtSeconds(job.eta_s);
    const f = job.progress.fraction || 0, now = Date.now() / 1000;
    const first = seenProgress.get(job.id);
    if (!first) { seenProgress.set(job.id, { t: now, f }); return 'estimating…'; }
    if (f <= first.f || now - first.t < 1) return 'estimating…';
    return fmtSeconds(((now - first.t) * (1 - f)) / (f - first.f));
  }

  function jobRow(job) {
    const pct = Math.round(100 * (job.progress.fraction || (job.state === 'done' ? 1 : 0)));
    const tr = el('tr', { 'data-job-id': String(job.id), 'data-state': job.status });
    const bar = el('div', { class: 'ql-progress' }, [el('div', { style: `width:${pct}%` })]);
    const actions = el('td', { class: 'ql-actions' });
    const act = (verb) => el('button', { class: 'ql-btn secondary', text: verb, 'data-action': verb,
      onclick: () => api('POST', `/api/jobs/${job.id}/${verb}`).then(refreshJobs).catch((e) => status(e.message, true)) });
    if (job.status === 'running') { actions.appendChild(act('pause')); actions.appendChild(act('cancel')); }
    if (['paused', 'failed', 'interrupted'].includes(job.status)) { actions.appendChild(act('resume')); actions.appendChild(act('cancel')); }
    // What the child printed (compare's and audit's result tables), for jobs started here.
    if (job.has_output && job.status !== 'running' && job.status !== 'queued')
      actions.appendChild(el('button', { class: 'ql-btn secondary', text: 'output', 'data-action': 'output', onclick: () => showOutput(job.id) }));
    if (job.kind === 'sweep' || (job.progress.done > 0 && !['compare', 'audit'].includes(job.kind))) {
      actions.appendChild(el('button', { class: 'ql-btn secondary', text: 'report', 'data-action': 'report', onclick: () => { location.hash = '#report/' + job.id; } }));
      if (job.kind === 'sweep')
        actions.appendChild(el('button', { class: 'ql-btn secondary', text: 'recipe', 'data-action': 'recipe', onclick: () => { location.hash = '#recipe/' + job.id; } }));
    }
    for (const c of [String(job.id), job.kind, (job.model || '').split('/').pop(), job.status])
      tr.appendChild(el('td', { text: c }));
    tr.lastChild.className = 'ql-state';
    tr.appendChild(el('td', { class: 'ql-nowrap' }, [bar, el('span', { class: 'ql-progress-text', text: ` ${pct} %` }),
      el('span', { class: 'ql-note', text: ` ${job.progress.done}/${job.progress.total}` })]));
    tr.appendChild(el('td', { class: 'ql-eta ql-nowrap', text: etaOf(job) }));
    tr.appendChild(el('td', { class: 'ql-note ql-msg', text: job.error || job.progress.message || '' }));
    tr.appendChild(actions);
    return tr;
  }

  function renderJobs() {
    const body = $('#jobs-table tbody');
    body.innerHTML = '';
    const list = [...jobs.values()].sort((a, b) => b.id - a.id);
    for (const j of list) body.appendChild(jobRow(j));
    if (!list.length) body.appendChild(el('tr', {}, [el('td', { colspan: '8', class: 'ql-note', text: 'No jobs in this store yet: pick a model and start a sweep.' })]));
    const ids = list.map((j) => j.id + j.status).join(',');
    if (ids === renderJobs.ids) return;  // keep open dropdowns alone when nothing changed
    renderJobs.ids = ids;
    fillModelList();
    const sweeps = list.filter((j) => j.kind === 'sweep');
    for (const [sel, which] of [['#report-job', list], ['#recipe-job', sweeps], ['#start-job', sweeps]]) {
      const s = $(sel), keep = s.value;
      s.innerHTML = '';
      if (sel === '#start-job') s.appendChild(el('option', { value: '', text: '(none)' }));
      for (const j of which) s.appendChild(el('option', { value: String(j.id), text: `${j.id} · ${j.kind} · ${(j.model || '').split('/').pop()}` }));
      if (keep && [...s.options].some((o) => o.value === keep)) s.value = keep;
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

  async function showOutput(id) {
    $('#job-output-box').hidden = false;
    $('#job-output-title').textContent = `output of job ${id}`;
    try { $('#job-output').textContent = (await api('GET', `/api/jobs/${id}/output`)).output; } catch (e) { $('#job-output').textContent = e.message; }
  }

  // Commands that record no job (quantize, verify, eval, pull) are followed by their process
  // id; the server lists them all (GET /api/processes), finished ones included.
  const procs = new Map();  // pid → {kind, running, exit_code, output, repo?, revision?, progress?}
  const lastLine = (p) => (p.output || '').trim().split('\n').filter((l) => !/^pull \S+ \[/.test(l)).slice(-1)[0] || '';
  function procState(p) { return p.running ? 'running' : p.exit_code === 0 ? 'done' : 'failed'; }
  function renderProcs() {
    const body = $('#procs-table tbody'), pulls = $('#pulls-table tbody');
    body.innerHTML = '';
    pulls.innerHTML = '';
    const list = [...procs.entries()].sort((a, b) => (b[1].seq || 0) - (a[1].seq || 0) || b[0] - a[0]);
    const newer = new Set();  // repo@revision of a newer pull: only the newest is resumed
    for (const [pid, p] of list) {
      const state = procState(p);
      if (p.kind !== 'pull') {
        body.appendChild(el('tr', { 'data-pid': String(pid), 'data-state': state }, [
          el('td', { text: p.kind }), el('td', { class: 'ql-note', text: 'pid ' + pid }), el('td', { class: 'ql-state', text: state }),
          el('td', { class: 'ql-note ql-msg', text: lastLine(p) })]));
        continue;
      }
      const g = p.progress, pct = g ? Math.round(100 * g.fraction) : state === 'done' ? 100 : 0;
      const bar = el('div', { class: 'ql-progress' }, [el('div', { style: `width:${pct}%` })]);
      const actions = el('td', { class: 'ql-actions' });
      const key = `${p.repo}@${p.revision}`;
      if (state === 'failed' && !newer.has(key))
        actions.appendChild(el('button', { class: 'ql-btn secondary', text: 'resume', 'data-action': 'resume-pull', onclick: () => resumePull(p) }));
      newer.add(key);
      pulls.appendChild(el('tr', { 'data-pid': String(pid), 'data-state': state, 'data-repo': p.repo || '' }, [
        el('td', { text: p.repo || '' }), el('td', { text: p.revision || '' }), el('td', { class: 'ql-state', text: state }),
        el('td', { class: 'ql-nowrap' }, [bar, el('span', { class: 'ql-progress-text', text: ` ${pct} %` }),
          el('span', { class: 'ql-note', text: g ? ` ${g.done}/${g.total} ${g.unit}` : '' })]),
        el('td', { class: 'ql-note ql-msg', text: lastLine(p), title: lastLine(p) }), actions]));
    }
    if (!pulls.childElementCount) pulls.appendChild(el('tr', {}, [el('td', { colspan: '6', class: 'ql-note', text: 'No pulls started from this server yet.' })]));
  }

  async function refreshProcs() {
    try {
      const data = await api('GET', '/api/processes');
      for (const p of data.processes) procs.set(p.pid, p);
      renderProcs();
    } catch (e) { status('cannot list processes: ' + e.message, true); }
  }

  // The same pull again: `quantlens pull` continues the partial files of the one that stopped.
  // A token typed into the start form goes with it (the server never kept the first one).
  async function resumePull(p) {
    const body = { kind: 'pull', repo: p.repo, options: p.revision && p.revision !== 'main' ? { revision: p.revision } : {} };
    if ($('#start-token').value) body.token = $('#start-token').value;
    $('#start-token').value = '';
    const out = $('#start-result');
    out.className = 'ql-note';
    out.textContent = `resuming pull ${p.repo}…`;
    try {
      const r = await runCommand(body, (line) => { out.textContent = `pull running: ${line}`; });
      out.className = 'ql-ok';
      out.textContent = `pull finished: ${(r.output || '').trim().split('\n').pop()}`;
    } catch (e) { out.className = 'ql-error'; out.textContent = e.message; }
    refreshProcs();
  }

  // Runs a command through POST /api/jobs (asking before replacing an output) and resolves
  // when it has finished: {job} for a command that records a job (followed in the list),
  // else {exit_code, output}. onState(text) receives progress lines.
  async function runCommand(body, onState) {
    let r;
    try {
      r = await postConfirmed('/api/jobs', body, (b) => Object.assign({}, b, { force: true }));
    } catch (e) {
      if (e.status === 422) refreshProcs();  // a command that failed at once is listed too
      throw e;
    }
    if (r.job) { await refreshJobs(); return r; }
    if ('exit_code' in r) {
      procs.set(r.pid, { kind: body.kind, running: false, exit_code: r.exit_code, output: r.output });
      renderProcs();
      refreshProcs();
      return r;
    }
    procs.set(r.pid, { kind: body.kind, running: true, output: '' });
    renderProcs();
    for (;;) {
      await new Promise((ok) => setTimeout(ok, 500));
      const p = await api('GET', '/api/processes/' + r.pid);
      procs.set(r.pid, p);
      renderProcs();
      if (onState) onState((p.output || '').trim().split('\n').slice(-1)[0] || '');
      if (!p.running) {
        if (p.exit_code !== 0) throw new Error(`${body.kind} exited with code ${p.exit_code}: ${(p.output || '').trim().split('\n').slice(-3).join(' ')}`);
        return p;
      }
    }
  }

  // ---------------------------------------------------------------- start form
  // Which options each kind shows up front; the rest are under "more options". Which options
  // exist, and their value kinds, come from GET /api/job-kinds (src/jobs/job_options.cpp).
  const PRIMARY = {
    sweep: ['eval', 'tokens', 'types', 'granularity', 'imatrix', 'gpu'],
    calibrate: ['text', 'chunks', 'output'],
    plan: ['target-bpw', 'target-size', 'knee', 'metric', 'name'],
    quantize: ['recipe', 'preset', 'imatrix', 'output'],
    verify: ['text', 'recipe', 'presets', 'ctx', 'chunks'],
    eval: ['text', 'ctx', 'chunks', 'base'],
    pull: ['revision'],
    compare: ['text', 'ctx', 'chunks', 'no-attribution'],
    audit: ['time-limit'],
  };
  const CHOICES = { granularity: ['tensor', 'layer', 'class'], metric: ['kld', 'proxy'] };
  // Presets verify compares against unless the user changes it (the list).
  const VERIFY_PRESETS = ['Q8_0', 'Q6_K', 'Q5_K_M', 'Q4_K_M', 'Q3_K_M'];
  let controls = [];  // {name, get(): value or undefined}

  function fileSelect(name, files, preferred, optional) {
    const sel = el('select', { 'data-option': name });
    if (optional) sel.appendChild(el('option', { value: '', text: '(none)' }));
    for (const f of files) sel.appendChild(el('option', { value: f, text: f.split('/').slice(-2).join('/') }));
    const pick = files.find((f) => preferred.test(f.split('/').pop()));
    if (pick && !optional) sel.value = pick;
    return sel;
  }

  function typeChecks(name, list, ticked) {
    const box = el('span', { class: 'ql-checks', 'data-option': name, id: 'start-' + name });
    for (const t of list) {
      const cb = el('input', { type: 'checkbox', value: t.name, 'data-type-name': t.name });
      cb.checked = ticked(t);
      box.appendChild(el('label', { class: 'ql-check', title: t.bpw ? fmt(t.bpw) + ' bits per weight' : '' },
        [cb, document.createTextNode(' ' + t.name + (t.bpw ? ` (${fmt(t.bpw)})` : ''))]));
    }
    return box;
  }

  // One control per option; returns [node, get].
  function controlFor(kind, name, type) {
    if (name === 'types' && type === 'types') {
      const box = typeChecks(name, CATALOG.types, (t) => kind === 'sweep' && t.default);
      box.addEventListener('change', updateEstimate);
      return [box, () => [...box.querySelectorAll('input:checked')].map((c) => c.value).join(',') || undefined];
    }
    if (name === 'presets') {
      const box = typeChecks(name, CATALOG.presets, (p) => VERIFY_PRESETS.includes(p.name));
      return [box, () => [...box.querySelectorAll('input:checked')].map((c) => c.value).join(',') || 'none'];
    }
    let node;
    if (type === 'types' || name === 'preset') {
      node = el('select', { 'data-option': name }, [el('option', { value: '', text: '(none)' })]);
      for (const t of name === 'preset' ? CATALOG.presets : CATALOG.types) node.appendChild(el('option', { value: t.name, text: t.name }));
    } else if (CHOICES[name]) {
      node = el('select', { 'data-option': name });
      for (const c of CHOICES[name]) node.appendChild(el('option', { value: c, text: c }));
    } else if (type === 'path' && ['eval', 'text', 'gptq'].includes(name)) {
      // What tunes (sweep, calibrate, GPTQ Hessians) reads calibration text; what judges (eval,
      // verify) reads held-out text, so a recipe is never verified on what chose it.
      const tunes = kind === 'calibrate' || kind === 'sweep' || name === 'gptq';
      node = fileSelect(name, FOUND.texts, tunes ? /calib/ : /eval|test|valid/, name === 'gptq');
    } else if (type === 'path' && name === 'imatrix') {
      node = fileSelect(name, FOUND.imatrix, /^$/, true);
    } else if (type === 'path' && name === 'recipe') {
      node = fileSelect(name, FOUND.recipes, /^$/, true);
    } else if (type === 'path') {
      node = el('input', { 'data-option': name, size: '40', list: 'start-model-list' });
    } else if (type === 'flag') {
      node = el('input', { type: 'checkbox', 'data-option': name });
    } else if (type === 'number') {
      node = el('input', { type: 'number', min: '0', step: 'any', 'data-option': name, style: 'width:7em' });
    } else if (type === 'out_path') {
      node = el('input', { 'data-option': name, size: '22', placeholder: 'file name (output folder)' });
    } else {
      node = el('input', { 'data-option': name, size: '16' });
    }
    node.dataset.type = type;
    node.addEventListener('input', updateEstimate);
    node.addEventListener('change', updateEstimate);
    const get = () => {
      if (type === 'flag') return node.checked ? true : undefined;
      const v = node.value.trim();
      if (!v) return undefined;
      return type === 'number' ? Number(v) : v;
    };
    return [node, get];
  }

  function renderStartForm() {
    const kind = $('#start-kind').value, spec = KINDS[kind];
    if (!spec) return;
    $('#start-model-label').hidden = spec.target !== 'model';
    // audit's "model" is a zoo file; compare also takes the quantized GGUF (spec.second).
    $('#start-model-name').textContent = spec.model_label || 'model';
    $('#start-model').setAttribute('list', spec.model_label === 'zoo' ? 'start-zoo-list' : 'start-model-list');
    $('#start-model').placeholder = spec.model_label === 'zoo' ? 'zoo file (YAML: models, texts, types)' : 'pick a model (Models tab) or type its path';
    $('#start-second-label').hidden = !spec.second;
    $('#start-second-name').textContent = spec.second || '';
    $('#start-browse').hidden = spec.target !== 'model';
    $('#start-job-label').hidden = spec.target !== 'job' && !spec.job_option;
    // pull: a Hub repository and a token, which is sent once in the request body and never
    // shown again (the server hands it to the child as HF_TOKEN only).
    $('#start-repo-label').hidden = spec.target !== 'repo';
    $('#start-token-label').hidden = spec.target !== 'repo';
    const jobSel = $('#start-job');  // a plan needs a sweep: the newest, unless one is chosen
    if (spec.target === 'job' && !jobSel.value && jobSel.options.length > 1) jobSel.value = jobSel.options[1].value;
    const main = $('#start-options'), more = $('#start-more');
    main.innerHTML = '';
    more.innerHTML = '';
    controls = [];
    const primary = PRIMARY[kind] || [];
    const names = Object.keys(spec.options).sort((a, b) => {
      const ia = primary.indexOf(a), ib = primary.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    });
    for (const name of names) {
      if (name === 'gpu' && !CATALOG.gpu) continue;  // this build has no GPU backend
      const [node, get] = controlFor(kind, name, spec.options[name]);
      controls.push({ name, get });
      const label = el('label', { class: 'ql-field', 'data-field': name }, [el('span', { text: name }), node]);
      (primary.includes(name) ? main : more).appendChild(label);
    }
    updateEstimate();
  }

  // Model inspect documents by path (for the estimate and the Models view).
  const inspected = new Map();
  async function inspectModel(path) {
    if (!inspected.has(path)) {
      const doc = await api('GET', '/api/models?path=' + encodeURIComponent(path));
      inspected.set(path, doc);
    }
    return inspected.get(path);
  }

  // Sweep size before Start: units × types items over the token budget, and a time estimate
  // from the newest finished sweep of the same model in this store (seconds per item-token).
  async function updateEstimate() {
    const out = $('#start-estimate');
    out.textContent = '';
    if ($('#start-kind').value !== 'sweep') return;
    const model = $('#start-model').value.trim();
    const opt = Object.fromEntries(controls.map((c) => [c.name, c.get()]));
    const nTypes = (opt.types || CATALOG.types.filter((t) => t.default).map((t) => t.name).join(',')).split(',').filter(Boolean).length;
    if (!model) { out.textContent = `${nTypes} types`; return; }
    let doc;
    try { doc = await inspectModel(model); } catch (e) { out.textContent = e.message; return; }
    const ins = doc.inspect;
    if (!ins) { out.textContent = doc.inspect_error || ''; return; }
    const quant = ins.tensors.filter((t) => t.quantizable);
    const layerUnits = new Set(quant.map((t) => (t.layer >= 0 ? 'L' + t.layer : t.name))).size;
    const units = (opt.granularity === 'layer' ? layerUnits : quant.length) + 1;  // + "(all)"
    const tokens = opt.tokens || 8192, items = units * nTypes;
    let text = `≈ ${items} items (${units} units × ${nTypes} types) over ${tokens} tokens`;
    const prev = [...jobs.values()].filter((j) => j.kind === 'sweep' && j.status === 'done' && j.model === doc.path && j.elapsed_s > 0)
      .sort((a, b) => b.id - a.id)[0];
    if (prev && prev.params && prev.params.n_tokens && prev.progress.total)
      text += `; ≈ ${fmtSeconds((prev.elapsed_s / (prev.progress.total * prev.params.n_tokens)) * items * tokens)} at job ${prev.id}'s rate`;
    out.textContent = text;
  }

  async function startJob() {
    const kind = $('#start-kind').value, spec = KINDS[kind];
    const body = { kind, options: {} };
    if (spec.target === 'model') body.model = $('#start-model').value.trim();
    if (spec.second) body[spec.second] = $('#start-second').value.trim();
    if ((spec.target === 'job' || spec.job_option) && $('#start-job').value) body.job = parseInt($('#start-job').value, 10);
    if (spec.target === 'repo') {
      body.repo = $('#start-repo').value.trim();
      if ($('#start-token').value) body.token = $('#start-token').value;
      $('#start-token').value = '';
    }
    for (const c of controls) {
      const v = c.get();
      if (v !== undefined) body.options[c.name] = v;
    }
    const out = $('#start-result');
    out.className = 'ql-note';
    out.textContent = 'starting…';
    try {
      const r = await runCommand(body, (line) => { out.textContent = `${kind} running: ${line}`; });
      out.className = 'ql-ok';
      // The result line: eval's PPL when it printed one, else the command's last line.
      const lines = (r.output || '').trim().split('\n');
      const summary = lines.find((l) => /^PPL\b/.test(l.trim())) || lines.pop();
      out.textContent = r.job ? `started job ${r.job.id} (pid ${r.pid})` : `${kind} finished: ${summary}`;
      if (kind === 'calibrate' || kind === 'quantize') scanRoots().catch(() => {});
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
      if (doc.kind === 'model') inspected.set(doc.path, doc);
      $('#models-path').value = doc.path || '';
      renderModel();
    } catch (e) { if (seq === modelSeq) $('#models-error').textContent = e.message; }
  }

  const icon = (kind) => el('span', { class: 'ql-ico ql-ico-' + kind, 'aria-hidden': 'true' });

  function configRows(ins, d) {
    const c = ins.config, t = ins.totals;
    const rows = [
      ['architecture', `${c.hf_architecture} (${c.gguf_arch})`], ['source', `${ins.source} · ${d.format}`],
      ['layers', c.n_layers], ['hidden', c.hidden], ['heads', `${c.n_heads} query / ${c.n_kv_heads} key-value, head size ${c.head_dim}`],
      ['ffn', c.ffn], ['vocab', c.vocab], ['rope θ', c.rope_theta], ['rms eps', c.rms_eps],
      ['tied embeddings', c.tie_embeddings ? 'yes' : 'no'],
      ['total', `${t.tensors} tensors · ${t.params.toLocaleString('en')} params · ${fmtBytes(t.bytes)} · ${fmt(t.bits_per_weight)} bpw`],
    ];
    if (c.n_experts) rows.splice(6, 0, ['experts', `${c.n_experts} (top-${c.n_experts_used})`]);
    return rows;
  }

  function renderModel() {
    const head = $('#models-table thead'), body = $('#models-table tbody'), foot = $('#models-table tfoot');
    const q = $('#models-search').value.toLowerCase();
    head.innerHTML = ''; body.innerHTML = ''; foot.innerHTML = '';
    $('#models-config').hidden = true;
    const d = modelDoc;
    if (!d) return;
    if (d.kind === 'roots') {
      $('#models-summary').textContent = 'Allowed folders (working directory, --models-dir, outputs, recipes)';
      for (const r of d.roots)
        body.appendChild(el('tr', { class: 'ql-entry', 'data-name': r, onclick: () => openPath(r) }, [el('td', {}, [icon('dir'), document.createTextNode(r)]), el('td')]));
    } else if (d.kind === 'dir') {
      $('#models-summary').textContent = `${d.entries.length} entries${d.truncated ? ' (cut)' : ''}`;
      for (const e of d.entries.filter((x) => x.name.toLowerCase().includes(q))) {
        const kind = e.model ? 'model' : e.type === 'dir' ? 'dir' : 'file';
        body.appendChild(el('tr', { class: 'ql-entry', 'data-name': e.name, onclick: () => openPath(d.path + '/' + e.name) },
          [el('td', {}, [icon(kind), document.createTextNode(e.name), e.model ? el('span', { class: 'ql-badge', text: 'model' }) : null]),
            el('td', { class: 'num', text: e.type === 'dir' ? '' : fmtBytes(e.size) })]));
      }
    } else if (d.kind === 'model') {
      const ins = d.inspect;
      $('#models-config').hidden = false;
      $('#models-name').textContent = d.path.split('/').pop();
      const kv = $('#models-config-table tbody');
      kv.innerHTML = '';
      if (ins) for (const [k, v] of configRows(ins, d)) kv.appendChild(el('tr', {}, [el('th', { text: k }), el('td', { text: String(v) })]));
      else kv.appendChild(el('tr', {}, [el('td', { class: 'ql-error', text: 'cannot open as a model: ' + (d.inspect_error || '?') })]));
      $('#models-sweep').disabled = !ins;
      $('#models-summary').textContent = ins ? '' : `${d.format} file · ${d.n_tensors} tensors · ${fmtBytes(d.bytes)}`;
      const cols = ins ? ['HF name', 'GGUF name', 'shape (ggml)', 'dtype', 'role', 'params', 'bytes'] : ['name', 'dtype', 'shape', 'bytes'];
      head.appendChild(el('tr', {}, cols.map((c) => el('th', { text: c, class: /params|bytes/.test(c) ? 'num' : '' }))));
      const list = ins ? ins.tensors.map((t) => ({ key: t.name, cells: [t.hf_name || '–', t.name, '[' + t.ne.join(', ') + ']', t.type, t.role, t.params.toLocaleString('en'), fmtBytes(t.bytes)], layer: t.layer, bytes: t.bytes, params: t.params }))
        : d.tensors.map((t) => ({ key: t.name, cells: [t.name, t.dtype, '[' + t.shape.join(', ') + ']', fmtBytes(t.bytes)], layer: null, bytes: t.bytes }));
      let group = null, n = 0, bytes = 0, params = 0;
      for (const t of list.filter((x) => x.cells.slice(0, 2).join(' ').toLowerCase().includes(q))) {
        const g = t.layer === null ? null : t.layer >= 0 ? 'layer ' + t.layer : 'outside the layers';
        if (g !== group && g) { group = g; body.appendChild(el('tr', { class: 'ql-group' }, [el('th', { colspan: String(cols.length), text: g })])); }
        body.appendChild(el('tr', { class: 'ql-tensor' }, t.cells.map((c, i) => el('td', { text: c, class: i >= cols.length - 2 && ins ? 'num' : '' }))));
        n++; bytes += t.bytes; params += t.params || 0;
      }
      foot.appendChild(el('tr', { class: 'ql-total' }, [el('th', { colspan: String(cols.length - (ins ? 2 : 1)), text: `total: ${n} tensors${q ? ' (filtered)' : ''}` }),
        ins ? el('th', { class: 'num', text: params.toLocaleString('en') }) : null, el('th', { class: 'num', text: fmtBytes(bytes) })]));
    } else {
      $('#models-summary').textContent = `file · ${fmtBytes(d.size)}`;
    }
  }

  function useModel(kind) {
    $('#start-model').value = modelDoc.path;
    $('#start-kind').value = kind;
    renderStartForm();
    location.hash = '#jobs';
  }

  // ---------------------------------------------------------------- report
  const dataCache = new Map();
  async function reportData(id, fresh) {
    if (fresh) dataCache.delete(id);
    if (!dataCache.has(id)) dataCache.set(id, await api('GET', `/api/jobs/${id}/report-data`));
    return dataCache.get(id);
  }

  async function showReport(id) {
    if (!id) return;
    $('#report-job').value = String(id);
    try {
      const data = await reportData(id, true);  // a running job's data changes
      window.qlData = data;
      window.qlReport = QLReport.mount($('#report-root'), data);
    } catch (e) { $('#report-root').textContent = e.message; }
  }

  // ---------------------------------------------------------------- routing
  function route() {
    const [tab, arg] = (location.hash.slice(1) || 'models').split('/');
    for (const v of document.querySelectorAll('.ql-view')) v.hidden = v.id !== 'view-' + tab;
    for (const b of document.querySelectorAll('#ql-tabs button')) b.classList.toggle('active', b.dataset.tab === tab);
    const newest = (kind) => [...jobs.values()].filter((j) => !kind || j.kind === kind).map((j) => j.id).sort((a, b) => b - a)[0];
    if (tab === 'report') showReport(arg ? +arg : newest());
    if (tab === 'recipe' && window.qlRecipe) window.qlRecipe.show(arg ? +arg : newest('sweep'));
    if (tab === 'models' && !modelDoc) openPath('');
  }

  async function init() {
    for (const b of document.querySelectorAll('#ql-tabs button'))
      b.addEventListener('click', () => { location.hash = '#' + b.dataset.tab; });
    $('#start-kind').addEventListener('change', renderStartForm);
    $('#start-model').addEventListener('change', updateEstimate);
    $('#start-submit').addEventListener('click', startJob);
    $('#start-browse').addEventListener('click', () => { location.hash = '#models'; });
    $('#models-go').addEventListener('click', () => openPath($('#models-path').value));
    $('#models-path').addEventListener('keydown', (e) => { if (e.key === 'Enter') openPath($('#models-path').value); });
    $('#models-up').addEventListener('click', () => openPath($('#models-path').value.replace(/\/[^/]+\/?$/, '') || '/'));
    $('#models-roots').addEventListener('click', () => openPath(''));
    $('#models-sweep').addEventListener('click', () => useModel('sweep'));
    $('#models-use').addEventListener('click', () => useModel($('#start-kind').value || 'sweep'));
    $('#models-search').addEventListener('input', renderModel);
    $('#report-job').addEventListener('change', () => { location.hash = '#report/' + $('#report-job').value; });
    window.addEventListener('hashchange', route);
    try {
      [KINDS, CATALOG] = await Promise.all([api('GET', '/api/job-kinds'), api('GET', '/api/types')]);
    } catch (e) { status('cannot load the job kinds and types: ' + e.message, true); }
    try { await scanRoots(); } catch (e) { status('cannot list the allowed folders: ' + e.message, true); }
    for (const k of Object.keys(KINDS)) $('#start-kind').appendChild(el('option', { value: k, text: k }));
    $('#start-kind').value = 'sweep';
    renderStartForm();
    await refreshJobs();
    await refreshProcs();
    route();
    document.body.dataset.ready = '1';  // tests wait for this
    setInterval(refreshJobs, 2000);  // polling fallback; running jobs also stream events
    // Running pulls report progress through the process list.
    setInterval(() => { if ([...procs.values()].some((p) => p.running)) refreshProcs(); }, 2000);
    $('#job-output-close').addEventListener('click', () => { $('#job-output-box').hidden = true; });
  }

  window.qlApp = { api, postConfirmed, runCommand, reportData, refreshJobs, refreshProcs, scanRoots, status, fmtSeconds,
    catalog: () => CATALOG, found: () => FOUND, jobs: () => jobs, VERIFY_PRESETS };
  init();
})();
