// quantlens report page: draws the report-data document (schema in src/report/report_data.h)
// with Plotly. Used twice: inlined into the self-contained report.html by `quantlens report`,
// and loaded by the web app (app.js) for a job. Everything is computed in the page from the
// raw measurements, so the composite weights can be changed without a server.
/* global Plotly */
(function (global) {
  'use strict';

  // Metrics that feed the composite score: one per family the product names
  // (weight distance, activation MSE, output KL divergence).
  const COMPOSITE = [
    { key: 'w_rel_fro', label: 'weight distance (w_rel_fro)', weight: 1 },
    { key: 'act_mse', label: 'activation MSE (act_mse)', weight: 1 },
    { key: 'kld_mean', label: 'KL divergence (kld_mean)', weight: 2 },
  ];
  // Values below this are treated as this before taking logs (exact zeros happen for F16).
  const LOG_FLOOR = 1e-12;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') node.textContent = v;
      else if (k === 'html') node.innerHTML = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children || []) if (c) node.appendChild(c);
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return '–';
    if (typeof v !== 'number') return String(v);
    const a = Math.abs(v);
    if (a === 0) return '0';
    if (a >= 1e4 || a < 1e-3) return v.toExponential(3);
    return v.toPrecision(4);
  }

  function fmtBytes(b) {
    if (b === null || b === undefined) return '–';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (b >= 1000 && i < units.length - 1) { b /= 1000; i++; }
    return b.toFixed(i ? 2 : 0) + ' ' + units[i];
  }

  // A unit that names model tensors. The sweep's "(all)" unit (role "all": every tensor at
  // one type at once) is measured and drawn in the heatmap, but is not a tensor a recipe or a
  // per-tensor ranking can choose; nor is an expert unit of sweep --experts (one expert's
  // slices of stacked tensors, which a GGUF stores with one type).
  function isTensorUnit(u) {
    return !!u && u.role !== 'all' && u.role !== 'expert' && u.name !== '(all)';
  }

  // Index of the measurement matrix: cell(u, t) → metrics object or undefined.
  function index(data) {
    if (data._index) return data._index;
    const byCell = new Map();
    for (const c of data.cells || []) byCell.set(c.u * 100000 + c.t, c.m);
    data._index = { cell: (u, t) => byCell.get(u * 100000 + t) };
    return data._index;
  }

  // Per-metric min-max normalization over every measured cell (optionally in log space,
  // since errors span orders of magnitude between Q2 and Q8).
  function normalizers(data, useLog) {
    const out = {};
    for (const { key } of COMPOSITE) {
      let lo = Infinity, hi = -Infinity;
      for (const c of data.cells || []) {
        const v = c.m[key];
        if (typeof v !== 'number' || !Number.isFinite(v)) continue;
        const x = useLog ? Math.log10(Math.max(v, LOG_FLOOR)) : v;
        lo = Math.min(lo, x); hi = Math.max(hi, x);
      }
      if (lo <= hi) out[key] = (v) => {
        const x = useLog ? Math.log10(Math.max(v, LOG_FLOOR)) : v;
        return hi > lo ? (x - lo) / (hi - lo) : 0;
      };
    }
    return out;
  }

  // Composite score of one cell's metrics: weighted mean of the normalized metrics it has.
  function compositeScore(m, norms, weights) {
    let num = 0, den = 0;
    for (const { key } of COMPOSITE) {
      const w = weights[key] || 0;
      const v = m ? m[key] : undefined;
      if (w <= 0 || typeof v !== 'number' || !Number.isFinite(v) || !norms[key]) continue;
      num += w * norms[key](v); den += w;
    }
    return den > 0 ? num / den : null;
  }

  // Rows of the heatmap: one per unit ("tensors"), or one per layer with its units averaged.
  function heatmapRows(data, mode) {
    const units = data.units || [];
    if (mode !== 'layers') return units.map((u, i) => ({ label: u.name, units: [i] }));
    const groups = new Map();
    units.forEach((u, i) => {
      const key = u.layer >= 0 ? 'layer ' + u.layer : (u.role || u.name);
      if (!groups.has(key)) groups.set(key, { label: key, layer: u.layer, units: [] });
      groups.get(key).units.push(i);
    });
    return [...groups.values()].sort((a, b) => (a.layer - b.layer) || a.label.localeCompare(b.label));
  }

  // The heatmap model: z (rows × types), hover text and the count of measured cells.
  function heatmapModel(data, state) {
    const idx = index(data);
    const norms = normalizers(data, state.log);
    const rows = heatmapRows(data, state.mode);
    const types = data.types || [];
    const z = [], text = [];
    let cells = 0;
    for (const row of rows) {
      const zr = [], tr = [];
      types.forEach((t, ti) => {
        const ms = row.units.map((u) => idx.cell(u, ti)).filter(Boolean);
        if (!ms.length) { zr.push(null); tr.push(''); return; }
        cells++;
        const scores = ms.map((m) => compositeScore(m, norms, state.weights)).filter((s) => s !== null);
        zr.push(scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : null);
        const keys = data.metrics || Object.keys(ms[0]);
        const lines = [`<b>${row.label}</b> · ${t.name} (${fmt(t.bpw)} bpw)` +
          (ms.length > 1 ? ` · mean of ${ms.length} tensors` : '')];
        lines.push('score ' + fmt(zr[zr.length - 1]));
        for (const k of keys) {
          if (k.startsWith('act_mse_L')) continue;
          const vals = ms.map((m) => m[k]).filter((v) => typeof v === 'number');
          if (vals.length) lines.push(k + ' = ' + fmt(vals.reduce((a, b) => a + b, 0) / vals.length));
        }
        tr.push(lines.join('<br>'));
      });
      z.push(zr); text.push(tr);
    }
    return { rows, types, z, text, cells };
  }

  function renderHeatmap(gd, data, state, onHover) {
    const hm = heatmapModel(data, state);
    const trace = {
      type: 'heatmap', z: hm.z, text: hm.text, hovertemplate: '%{text}<extra></extra>',
      x: hm.types.map((t) => t.name), y: hm.rows.map((r) => r.label),
      colorscale: [[0, '#ffffcc'], [0.35, '#fed976'], [0.6, '#fd8d3c'], [0.8, '#e31a1c'], [1, '#800026']], zmin: 0, zmax: 1, hoverongaps: false, xgap: 1, ygap: 1,
      colorbar: { title: { text: 'score' } },
    };
    const height = Math.max(360, Math.min(4000, 24 + hm.rows.length * 16 + 120));
    const layout = {
      margin: { l: 190, r: 20, t: 30, b: 60 }, height,
      xaxis: { title: { text: 'type (ordered by bits per weight)' }, type: 'category', side: 'bottom' },
      yaxis: { autorange: 'reversed', type: 'category', automargin: true },
    };
    Plotly.react(gd, [trace], layout, { displaylogo: false, responsive: true });
    gd.dataset.cells = String(hm.cells);
    if (onHover && !gd._qlHoverBound) {
      gd._qlHoverBound = true;
      gd.on('plotly_hover', (ev) => {
        const p = ev.points && ev.points[0];
        if (p) onHover(p.text || '');
      });
    }
    return hm;
  }

  // sweep --experts: units "blk.L.expert.E" (role "expert") → two layers × experts grids at
  // type index `ti`: ΔKLD (kld_mean) and routing share (route_share); null where not measured
  // (a sampled sweep). `cells` counts the (layer, expert) pairs measured at that type.
  function expertGrid(data, ti) {
    const idx = index(data);
    const found = [];
    (data.units || []).forEach((u, i) => {
      if (u.role !== 'expert') return;
      const m = /^blk\.(\d+)\.expert\.(\d+)$/.exec(u.name);
      if (m) found.push({ u: i, layer: +m[1], expert: +m[2] });
    });
    if (!found.length) return null;
    const layers = [...new Set(found.map((f) => f.layer))].sort((a, b) => a - b);
    const nExp = Math.max(...found.map((f) => f.expert)) + 1;
    const experts = [...Array(nExp).keys()];
    const kld = layers.map(() => experts.map(() => null));
    const share = layers.map(() => experts.map(() => null));
    let cells = 0;
    for (const f of found) {
      const m = idx.cell(f.u, ti);
      if (!m) continue;
      const li = layers.indexOf(f.layer);
      if (typeof m.kld_mean === 'number') { kld[li][f.expert] = m.kld_mean; cells++; }
      if (typeof m.route_share === 'number') share[li][f.expert] = m.route_share;
    }
    return { layers, experts, kld, share, cells };
  }

  function renderExperts(kldDiv, shareDiv, data, ti) {
    const g = expertGrid(data, ti);
    if (!g) return null;
    const y = g.layers.map((l) => 'layer ' + l), x = g.experts.map((e) => 'e' + e);
    const logz = g.kld.map((r) => r.map((v) => (v === null ? null : Math.log10(Math.max(v, LOG_FLOOR)))));
    const text = g.kld.map((r, li) => r.map((v, e) => `layer ${g.layers[li]} · expert ${e}<br>ΔKLD ${fmt(v)}` +
      `<br>routing share ${fmt(g.share[li][e])}`));
    const common = { margin: { l: 70, r: 20, t: 40, b: 40 }, height: Math.max(260, 60 + g.layers.length * 22),
      xaxis: { type: 'category', title: { text: 'expert' } }, yaxis: { type: 'category', autorange: 'reversed' } };
    Plotly.react(kldDiv, [{ type: 'heatmap', z: logz, x, y, text, hovertemplate: '%{text}<extra></extra>',
      colorscale: 'YlOrRd', hoverongaps: false, xgap: 1, ygap: 1, colorbar: { title: { text: 'log10 ΔKLD' } } }],
    Object.assign({ title: { text: 'ΔKLD with only that expert quantized' } }, common), { displaylogo: false, responsive: true });
    Plotly.react(shareDiv, [{ type: 'heatmap', z: g.share, x, y, text, hovertemplate: '%{text}<extra></extra>',
      colorscale: 'Blues', hoverongaps: false, xgap: 1, ygap: 1, zmin: 0, colorbar: { title: { text: 'share' } } }],
    Object.assign({ title: { text: 'routing share on the eval text' } }, common), { displaylogo: false, responsive: true });
    kldDiv.dataset.cells = String(g.cells);
    return g;
  }

  // Chord knee of a decreasing error-vs-bpw curve: the point farthest below the chord between
  // its ends, in normalized (bpw, log error) space — where more bits stop paying. A picture of
  // one curve, not `plan --knee` (the jump knee, analysis/plan.h), which may pick another type.
  function chordKnee(points) {
    if (points.length < 3) return points.length ? points[points.length - 1] : null;
    const xs = points.map((p) => p.x), ys = points.map((p) => Math.log10(Math.max(p.y, LOG_FLOOR)));
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const nx = (x) => (x1 > x0 ? (x - x0) / (x1 - x0) : 0), ny = (y) => (y1 > y0 ? (y - y0) / (y1 - y0) : 0);
    const a = { x: nx(xs[0]), y: ny(ys[0]) }, b = { x: nx(xs[xs.length - 1]), y: ny(ys[ys.length - 1]) };
    let best = null, bestD = -Infinity;
    points.forEach((p, i) => {
      // Signed distance below the chord (positive = below, the convex side).
      const d = ((b.x - a.x) * (ny(ys[i]) - a.y) - (b.y - a.y) * (nx(xs[i]) - a.x)) * -1;
      if (d > bestD) { bestD = d; best = p; }
    });
    return best;
  }

  function unitCurve(data, u, metric) {
    const idx = index(data);
    const pts = [];
    (data.types || []).forEach((t, ti) => {
      const m = idx.cell(u, ti);
      if (m && typeof m[metric] === 'number') pts.push({ x: t.bpw, y: m[metric], type: t.name });
    });
    return pts;
  }

  function chosenType(data, planName, unitName) {
    const plan = (data.plans || []).find((p) => p.name === planName) || (data.plans || [])[0];
    return plan && plan.tensors ? plan.tensors[unitName] : undefined;
  }

  function renderCurves(gd, data, u, metric, planName) {
    const unit = data.units[u];
    const pts = unitCurve(data, u, metric);
    const traces = [];
    // Median over the tensor units, for context.
    const med = (data.types || []).map((t, ti) => {
      const vals = data.units.map((uo, uu) => (isTensorUnit(uo) ? unitCurve(data, uu, metric).find((p) => p.type === t.name) : null))
        .filter(Boolean).map((p) => p.y).sort((a, b) => a - b);
      return vals.length ? { x: t.bpw, y: vals[Math.floor(vals.length / 2)] } : null;
    }).filter(Boolean);
    traces.push({ x: med.map((p) => p.x), y: med.map((p) => p.y), name: 'median of all tensors',
      mode: 'lines', line: { dash: 'dot', color: '#98a2b3' } });
    traces.push({ x: pts.map((p) => p.x), y: pts.map((p) => p.y), text: pts.map((p) => p.type),
      name: unit.name, mode: 'lines+markers+text', textposition: 'top center',
      hovertemplate: '%{text}: %{y:.4g} at %{x:.3f} bpw<extra></extra>' });
    const k = chordKnee(pts);
    if (k) traces.push({ x: [k.x], y: [k.y], name: 'chord knee (' + k.type + ')', mode: 'markers',
      marker: { symbol: 'star', size: 16, color: '#f79009' } });
    const chosen = chosenType(data, planName, unit.name);
    const cp = pts.find((p) => chosen && p.type.toLowerCase() === String(chosen).toLowerCase());
    if (cp) traces.push({ x: [cp.x], y: [cp.y], name: 'chosen by plan (' + cp.type + ')', mode: 'markers',
      marker: { symbol: 'diamond-open', size: 18, line: { width: 3 }, color: '#3b5bdb' } });
    Plotly.react(gd, traces, {
      margin: { l: 60, r: 20, t: 30, b: 50 }, height: 380,
      xaxis: { title: { text: 'bits per weight' } }, yaxis: { title: { text: metric }, type: 'log' },
      legend: { orientation: 'h', y: -0.2 },
    }, { displaylogo: false, responsive: true });
    return { chordKnee: k, chosen: cp };
  }

  // The Pareto chart's y axes: the verify row's key, the plan's predicted key, the axis title.
  const PARETO_Y = {
    kld: { row: 'kld_mean', plan: 'predicted_kld', title: 'KL divergence (mean)' },
    p99: { row: 'kld_p99', plan: 'predicted_kld_p99', title: 'KL divergence p99' },
    p999: { row: 'kld_p999', plan: 'predicted_kld_p999', title: 'KL divergence p99.9' },
    ppl: { row: 'ppl', plan: null, title: 'perplexity' },
  };

  function renderPareto(gd, data, yKey) {
    const traces = [];
    const mb = (b) => b / 1e6;
    const y = PARETO_Y[yKey] || PARETO_Y.kld;
    if (y.plan) {
      for (const p of data.plans || []) {
        // A frontier holds the objective its plan minimized (predicted_kld or _p99).
        const f = (p.frontier || []).filter((q) => typeof q[y.plan] === 'number').sort((a, b) => a.size_bytes - b.size_bytes);
        if (f.length) traces.push({ x: f.map((q) => mb(q.size_bytes)), y: f.map((q) => q[y.plan]),
          text: f.map((q) => fmt(q.bpw) + ' bpw'), mode: 'lines+markers', name: 'frontier ' + p.name,
          marker: { size: 5 }, hovertemplate: '%{text}<br>%{x:.3f} MB, predicted ' + y.row + ' %{y:.4g}<extra></extra>' });
        if (p.size_bytes && typeof p[y.plan] === 'number') traces.push({ x: [mb(p.size_bytes)], y: [p[y.plan]], mode: 'markers',
          name: 'plan ' + p.name + ' (predicted)', marker: { symbol: 'star', size: 14 } });
      }
    }
    const rows = (data.verify && data.verify.rows) || [];
    if (rows.length) {
      const key = y.row;
      const ok = rows.filter((r) => typeof r[key] === 'number');
      traces.push({ x: ok.map((r) => mb(r.size_bytes)), y: ok.map((r) => r[key]), text: ok.map((r) => r.name),
        mode: 'markers+text', textposition: 'top center', name: 'measured (verify)',
        marker: { size: 10, symbol: ok.map((r) => (/^plan|:/.test(r.name) ? 'diamond' : 'circle')) },
        hovertemplate: '%{text}<br>%{x:.3f} MB, ' + key + ' %{y:.4g}<extra></extra>' });
    }
    Plotly.react(gd, traces, {
      margin: { l: 60, r: 20, t: 30, b: 50 }, height: 400,
      xaxis: { title: { text: 'size (MB)' } },
      yaxis: { title: { text: y.title }, type: yKey === 'ppl' ? 'linear' : 'log' },
      legend: { orientation: 'h', y: -0.2 },
    }, { displaylogo: false, responsive: true });
    return traces.length;
  }

  // Markdown table a person can paste into a model card.
  function summaryMarkdown(data) {
    const lines = [];
    const m = data.model || {};
    lines.push(`## Quantization summary${m.name ? ' — ' + m.name : ''}`, '');
    const rows = (data.verify && data.verify.rows) || [];
    if (rows.length) {
      lines.push('| recipe | size | bpw | PPL | KLD (mean) | KLD p99 | KLD p99.9 | top-1 agreement | predicted KLD |');
      lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
      for (const r of rows) lines.push(`| ${r.name} | ${fmtBytes(r.size_bytes)} | ${fmt(r.bpw)} | ${fmt(r.ppl)} | ` +
        `${fmt(r.kld_mean)} | ${fmt(r.kld_p99)} | ${fmt(r.kld_p999)} | ${typeof r.top1 === 'number' ? (100 * r.top1).toFixed(2) + ' %' : '–'} | ${fmt(r.predicted_kld)} |`);
      lines.push('');
    }
    for (const p of data.plans || []) lines.push(`Plan **${p.name}**${p.objective === 'p99' ? ' (objective p99)' : ''}: ${fmtBytes(p.size_bytes)}, ${fmt(p.bpw)} bpw, ` +
      `predicted KLD ${fmt(p.predicted_kld)}, p99 ${fmt(p.predicted_kld_p99)}, p99.9 ${fmt(p.predicted_kld_p999)}.`);
    if ((data.plans || []).length) lines.push('');
    // The most sensitive units at the lowest measured type: where bits matter most.
    const idx = index(data);
    if ((data.types || []).length && (data.units || []).length) {
      const sens = data.units.map((u, ui) => {
        if (!isTensorUnit(u)) return null;
        for (let ti = 0; ti < data.types.length; ti++) {
          const c = idx.cell(ui, ti);
          if (c && typeof c.kld_mean === 'number') return { u, t: data.types[ti].name, kld: c.kld_mean, p999: c.kld_p999 };
        }
        return null;
      }).filter(Boolean).sort((a, b) => b.kld - a.kld).slice(0, 8);
      if (sens.length) {
        lines.push('| most sensitive tensor | at type | KLD (mean) | KLD p99.9 |', '|---|---|---:|---:|');
        for (const s of sens) lines.push(`| \`${s.u.name}\` | ${s.t} | ${fmt(s.kld)} | ${fmt(s.p999)} |`);
        lines.push('');
      }
    }
    lines.push(`Measured with quantlens${data.job ? ' (job ' + data.job.id + ')' : ''}.`);
    return lines.join('\n');
  }

  // Every measured (unit, type) as CSV, one row per cell: the KLD figures (mean, tails,
  // same top-1) first, then every other metric by name; per-layer act_mse_L* left out. Empty
  // where a cell lacks a metric (never a guessed value).
  const CSV_FIRST = ['kld_mean', 'kld_p99', 'kld_p999', 'top1_agree', 'ppl_delta', 'ln_ppl_ratio', 'bytes', 'bpw'];
  function cellsCsv(data) {
    const present = (data.metrics || []).filter((k) => !k.startsWith('act_mse_L'));
    const cols = CSV_FIRST.filter((k) => present.includes(k)).concat(present.filter((k) => !CSV_FIRST.includes(k)));
    const quote = (v) => (/[",\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v);
    const lines = [['unit', 'layer', 'role', 'type'].concat(cols).join(',')];
    for (const c of data.cells || []) {
      const u = data.units[c.u] || {}, t = data.types[c.t] || {};
      lines.push([quote(String(u.name ?? '')), u.layer ?? '', quote(String(u.role ?? '')), quote(String(t.name ?? ''))]
        .concat(cols.map((k) => (typeof c.m[k] === 'number' ? String(c.m[k]) : ''))).join(','));
    }
    return lines.join('\n') + '\n';
  }

  // ---- calibration views (drawn only for the data that exists) ----
  function pick(obj, keys) {
    for (const k of keys) if (obj && obj[k] !== undefined) return obj[k];
    return undefined;
  }
  function calibTensors(cal) {
    const t = cal && (cal.tensors || cal.per_tensor);
    if (!t) return [];
    const list = Array.isArray(t) ? t : Object.entries(t).map(([name, v]) => Object.assign({ name }, v));
    return list.map((v) => {
      const layerMatch = /^blk\.(\d+)\./.exec(v.name || '');
      const roleMatch = /^blk\.\d+\.([a-z0-9_]+)\./.exec(v.name || '');
      return {
        name: v.name, layer: v.layer !== undefined ? v.layer : (layerMatch ? +layerMatch[1] : -1),
        role: v.role || (roleMatch ? roleMatch[1] : v.name),
        importance: pick(v, ['channel_importance', 'importance', 'in_sum2', 'mean_sq', 'sum_sq']),
        kurtosis: pick(v, ['kurtosis', 'excess_kurtosis', 'act_kurtosis']),
        hist: pick(v, ['weight_hist', 'hist', 'histogram']),
      };
    });
  }

  // One tensor's plot at a time, picked by name from `tensors` in a labelled <select>: appends
  // the picker and the plot to root, draws the first tensor and redraws on every change.
  function appendTensorPlot(root, tensors, ids, label, plot) {
    const sel = el('select', { id: ids.select });
    for (const t of tensors) sel.appendChild(el('option', { value: t.name, text: t.name }));
    const box = el('div', { class: 'ql-plot', id: ids.plot });
    const draw = () => plot(box, tensors.find((x) => x.name === sel.value) || tensors[0]);
    sel.addEventListener('change', draw);
    root.appendChild(el('div', { class: 'ql-controls' }, [el('label', { text: label }, [sel])]));
    root.appendChild(box);
    draw();
  }

  function renderCalibration(root, data, selectTensor) {
    const ts = calibTensors(data.calibration);
    root.innerHTML = '';
    if (!ts.length) { root.appendChild(el('p', { class: 'ql-note', text: 'No calibration data in this job.' })); return 0; }
    const src = data.calibration_source, cal = data.calibration || {};
    if (src && typeof src.job === 'number') {
      const what = [cal.text ? `text ${cal.text}` : '', cal.n_tokens ? `${cal.n_tokens} tokens` : ''].filter(Boolean).join(', ');
      root.appendChild(el('p', { class: 'ql-note', id: 'ql-calib-source',
        text: (src.same_job ? `Calibration of this job (${src.job})` : `Calibration from calibrate job ${src.job} of the same model`) +
          (what ? ` (${what}).` : '.') }));
    }
    let drawn = 0;
    const withImp = ts.filter((t) => Array.isArray(t.importance) && t.importance.length);
    if (withImp.length) {
      appendTensorPlot(root, withImp, { select: 'ql-calib-tensor', plot: 'ql-hockey' }, 'tensor ', (stick, t) => {
        const sorted = t.importance.slice().sort((a, b) => b - a);
        Plotly.react(stick, [{ y: sorted, mode: 'lines', name: t.name }], {
          title: { text: 'channel importance, sorted ("hockey stick")' }, height: 340,
          margin: { l: 60, r: 20, t: 40, b: 40 }, xaxis: { title: { text: 'channel rank' } },
          yaxis: { type: 'log', title: { text: 'importance' } },
        }, { displaylogo: false, responsive: true });
      });
      drawn++;
      // 3-D surface: channel × layer for the most common role with equal channel counts.
      const byRole = new Map();
      for (const t of withImp) if (t.layer >= 0) (byRole.get(t.role) || byRole.set(t.role, []).get(t.role)).push(t);
      const fam = [...byRole.entries()].sort((a, b) => b[1].length - a[1].length)[0];
      if (fam && fam[1].length > 1) {
        const layers = fam[1].slice().sort((a, b) => a.layer - b.layer);
        const n = Math.min(...layers.map((t) => t.importance.length));
        const step = Math.max(1, Math.ceil(n / 256));  // max-pool wide rows so the surface stays light
        const z = layers.map((t) => {
          const r = [];
          for (let i = 0; i < n; i += step) r.push(Math.max(...t.importance.slice(i, i + step)));
          return r;
        });
        const surf = el('div', { class: 'ql-plot', id: 'ql-surface' });
        root.appendChild(surf);
        Plotly.react(surf, [{ type: 'surface', z, y: layers.map((t) => t.layer), colorscale: 'Viridis' }], {
          title: { text: `importance surface: ${fam[0]} inputs (channel × layer)` }, height: 480,
          scene: { xaxis: { title: { text: 'channel' + (step > 1 ? ` /${step}` : '') } },
            yaxis: { title: { text: 'layer' } }, zaxis: { title: { text: 'importance' } } },
          margin: { l: 0, r: 0, t: 40, b: 0 },
        }, { displaylogo: false, responsive: true });
        drawn++;
      }
    }
    const withK = ts.filter((t) => typeof t.kurtosis === 'number');
    if (withK.length) {
      const roles = [...new Set(withK.map((t) => t.role))];
      const box = el('div', { class: 'ql-plot', id: 'ql-kurtosis' });
      root.appendChild(box);
      Plotly.react(box, roles.map((r) => ({ type: 'box', name: r, boxpoints: 'all', jitter: 0.4,
        y: withK.filter((t) => t.role === r).map((t) => t.kurtosis),
        text: withK.filter((t) => t.role === r).map((t) => t.name) })), {
        title: { text: 'activation kurtosis by module family' }, height: 360, showlegend: false,
        margin: { l: 60, r: 20, t: 40, b: 60 }, yaxis: { title: { text: 'kurtosis' } },
      }, { displaylogo: false, responsive: true });
      drawn++;
    }
    const withH = ts.filter((t) => t.hist && Array.isArray(t.hist.counts));
    if (withH.length) {
      appendTensorPlot(root, withH, { select: 'ql-hist-tensor', plot: 'ql-hist' }, 'histogram of ', (hp, t) => {
        const h = t.hist, edges = h.edges || h.bin_edges;
        const centers = edges ? h.counts.map((_, i) => (edges[i] + edges[i + 1]) / 2) : h.counts.map((_, i) => i);
        const shapes = [];
        if (typeof h.mean === 'number' && typeof h.std === 'number') {
          for (const s of [-3, 3]) shapes.push({ type: 'line', x0: h.mean + s * h.std, x1: h.mean + s * h.std,
            yref: 'paper', y0: 0, y1: 1, line: { dash: 'dash', color: '#d92d20' } });
        }
        Plotly.react(hp, [{ type: 'bar', x: centers, y: h.counts, name: t.name }], {
          title: { text: 'weight histogram with ±3σ' + (typeof h.frac_beyond_3sigma === 'number'
            ? ` (${(100 * h.frac_beyond_3sigma).toFixed(3)} % beyond)` : '') }, height: 340, shapes, bargap: 0,
          margin: { l: 60, r: 20, t: 40, b: 40 }, yaxis: { type: 'log', title: { text: 'count' } },
        }, { displaylogo: false, responsive: true });
      });
      drawn++;
    }
    return drawn;
  }

  // Builds the whole report into `root`: controls, heatmap, curves, Pareto, calibration, summary.
  function mount(root, data) {
    const state = { mode: 'tensors', log: true, weights: {} };
    for (const c of COMPOSITE) state.weights[c.key] = c.weight;
    root.innerHTML = '';
    const m = data.model || {}, job = data.job || {};
    root.appendChild(el('section', { class: 'ql-card', id: 'ql-overview' }, [
      el('h2', { text: 'Overview' }),
      el('p', { html: `Model <b>${m.name || m.path || '?'}</b> · job ${job.id ?? '?'} (${job.kind || '?'}, ${job.state || '?'}) · ` +
        `${(data.units || []).length} units × ${(data.types || []).length} types, ${(data.cells || []).length} measured cells` }),
    ]));

    // Heatmap with its controls.
    const hm = el('div', { class: 'ql-plot', id: 'ql-heatmap' });
    const detail = el('div', { class: 'ql-note', id: 'ql-cell-detail', text: 'Hover a cell to see every metric.' });
    const controls = el('div', { class: 'ql-controls' });
    const modeSel = el('select', { id: 'ql-mode' }, [el('option', { value: 'tensors', text: 'tensors' }), el('option', { value: 'layers', text: 'layers' })]);
    const logBox = el('input', { type: 'checkbox', id: 'ql-log', checked: '' });
    const draw = () => renderHeatmap(hm, data, state, (t) => { detail.innerHTML = t; });
    modeSel.addEventListener('change', () => { state.mode = modeSel.value; draw(); });
    logBox.addEventListener('change', () => { state.log = logBox.checked; draw(); });
    controls.appendChild(el('label', { text: 'rows ' }, [modeSel]));
    controls.appendChild(el('label', { text: 'log before normalizing ' }, [logBox]));
    for (const c of COMPOSITE) {
      const out = el('span', { text: String(c.weight), id: 'ql-w-' + c.key + '-value' });
      const slider = el('input', { type: 'range', min: '0', max: '5', step: '0.5', value: String(c.weight), id: 'ql-w-' + c.key });
      slider.addEventListener('input', () => { state.weights[c.key] = +slider.value; out.textContent = slider.value; draw(); });
      controls.appendChild(el('label', { text: c.label + ' ' }, [slider, out]));
    }
    // A job without sweep measurements (calibrate, verify): say so instead of empty charts.
    const measured = (data.cells || []).length > 0;
    if (!measured) {
      root.appendChild(el('section', { class: 'ql-card', id: 'ql-no-cells' }, [
        el('h2', { text: 'Sensitivity heatmap' }),
        el('p', { class: 'ql-note', text: job.kind === 'sweep' ? 'No measurements in this sweep yet.'
          : `A ${job.kind || '?'} job has no sweep measurements: the heatmap and the error curves are in a sweep job's report.` })]));
    } else root.appendChild(el('section', { class: 'ql-card' }, [
      el('h2', { text: 'Sensitivity heatmap' }),
      el('p', { class: 'ql-note', text: 'Colour = composite score: weighted mean of each metric min-max normalized over all cells (0 = best, 1 = worst). Weights below.' }),
      controls, hm, detail]));

    // sweep --experts: experts × layers beside routing frequency, at a chosen type.
    const expertUnits = (data.units || []).some((u) => u.role === 'expert');
    if (measured && expertUnits) {
      const kd = el('div', { class: 'ql-plot', id: 'ql-experts-kld' });
      const sd = el('div', { class: 'ql-plot', id: 'ql-experts-share' });
      const tSel = el('select', { id: 'ql-experts-type' });
      (data.types || []).forEach((t, i) => tSel.appendChild(el('option', { value: String(i), text: t.name })));
      const drawExperts = () => renderExperts(kd, sd, data, +tSel.value);
      tSel.addEventListener('change', drawExperts);
      root.appendChild(el('section', { class: 'ql-card', id: 'ql-experts' }, [
        el('h2', { text: 'Experts × layers' }),
        el('p', { class: 'ql-note', text: 'Each cell: one expert\'s slices of its layer\'s stacked ffn_*_exps quantized alone (left), and its share of the layer\'s routed tokens (right). Rarely routed experts can take fewer bits; a GGUF still stores one type per stacked tensor.' }),
        el('div', { class: 'ql-controls' }, [el('label', { text: 'type ' }, [tSel])]),
        el('div', { class: 'ql-row' }, [kd, sd])]));
      drawExperts();
    }

    // Per-unit curves.
    const cv = el('div', { class: 'ql-plot', id: 'ql-curves' });
    const unitSel = el('select', { id: 'ql-curve-unit' });
    (data.units || []).forEach((u, i) => unitSel.appendChild(el('option', { value: String(i), text: u.name })));
    const metricSel = el('select', { id: 'ql-curve-metric' });
    for (const k of (data.metrics || []).filter((k) => !k.startsWith('act_mse_L') && k !== 'bytes' && k !== 'bpw'))
      metricSel.appendChild(el('option', { value: k, text: k }));
    if ((data.metrics || []).includes('kld_mean')) metricSel.value = 'kld_mean';
    const planSel = el('select', { id: 'ql-curve-plan' });
    for (const p of data.plans || []) planSel.appendChild(el('option', { value: p.name, text: p.name }));
    const drawCurves = () => { if ((data.units || []).length) renderCurves(cv, data, +unitSel.value, metricSel.value, planSel.value); };
    for (const s of [unitSel, metricSel, planSel]) s.addEventListener('change', drawCurves);
    const csv = el('button', { class: 'ql-btn secondary', id: 'ql-cells-csv', text: 'Download CSV (every cell)' });
    csv.addEventListener('click', () => {
      const a = el('a', { href: URL.createObjectURL(new Blob([cellsCsv(data)], { type: 'text/csv' })),
        download: `quantlens-job${job.id ?? ''}-cells.csv` });
      document.body.appendChild(a); a.click(); a.remove();
    });
    if (measured) root.appendChild(el('section', { class: 'ql-card' }, [el('h2', { text: 'Measurements' }),
      el('p', { class: 'ql-note', text: 'Each (unit, type) with its KLD mean, p99 and p99.9, same top-1 and every other metric.' }), csv]));
    if (measured) root.appendChild(el('section', { class: 'ql-card' }, [
      el('h2', { text: 'Error vs bits per weight' }),
      el('div', { class: 'ql-controls' }, [el('label', { text: 'unit ' }, [unitSel]), el('label', { text: 'metric ' }, [metricSel]),
        (data.plans || []).length ? el('label', { text: 'plan ' }, [planSel]) : null]),
      cv]));

    // Pareto.
    const pc = el('div', { class: 'ql-plot', id: 'ql-pareto' });
    const ySel = el('select', { id: 'ql-pareto-y' }, [el('option', { value: 'kld', text: 'KLD' }), el('option', { value: 'p99', text: 'KLD p99' }),
      el('option', { value: 'p999', text: 'KLD p99.9' }), el('option', { value: 'ppl', text: 'PPL' })]);
    ySel.addEventListener('change', () => renderPareto(pc, data, ySel.value));
    const hasPareto = (data.plans || []).length || ((data.verify && data.verify.rows) || []).length;
    root.appendChild(el('section', { class: 'ql-card' }, [
      el('h2', { text: 'Size vs quality (Pareto)' }),
      hasPareto ? el('div', { class: 'ql-controls' }, [el('label', { text: 'y axis ' }, [ySel])])
        : el('p', { class: 'ql-note', text: 'No plan or verify results in this job yet.' }),
      hasPareto ? pc : null]));

    const cal = el('div', { id: 'ql-calibration' });
    root.appendChild(el('section', { class: 'ql-card' }, [el('h2', { text: 'Calibration' }), cal]));

    const md = summaryMarkdown(data);
    const pre = el('pre', { class: 'ql-md', id: 'ql-summary-md', text: md });
    const copy = el('button', { class: 'ql-btn secondary', text: 'Copy markdown' });
    copy.addEventListener('click', () => { if (navigator.clipboard) navigator.clipboard.writeText(md); });
    root.appendChild(el('section', { class: 'ql-card' }, [el('h2', { text: 'Summary for a model card' }), copy, pre]));

    if (measured) { draw(); drawCurves(); }
    if (hasPareto) renderPareto(pc, data, 'kld');
    renderCalibration(cal, data);
    return { state, redraw: draw };
  }

  // A recipe edited from a plan keeps the plan's rounding (recipe version 2,
  // src/formats/recipe.h) for each tensor still at the plan's type, where the plan chose it
  // (sweep --rounding-choice); a tensor moved to another type gets none, so quantize's
  // command line decides it, as for a version 1 recipe. `tensors`: name → type name.
  function recipeRounding(plan, tensors) {
    const out = {};
    if (!plan || !plan.rounding || !plan.tensors) return out;
    for (const [name, type] of Object.entries(tensors)) {
      const how = plan.rounding[name], planned = plan.tensors[name];
      if (how && planned && String(planned).toLowerCase() === String(type).toLowerCase()) out[name] = how;
    }
    return out;
  }

  global.QLReport = { COMPOSITE, fmt, fmtBytes, index, isTensorUnit, recipeRounding, normalizers, compositeScore, heatmapModel,
    // knee: the name web/tests knew it by.
    renderHeatmap, expertGrid, renderExperts, chordKnee, knee: chordKnee, unitCurve, renderCurves, renderPareto, renderCalibration, summaryMarkdown, cellsCsv, mount, el };
})(typeof window !== 'undefined' ? window : globalThis);
