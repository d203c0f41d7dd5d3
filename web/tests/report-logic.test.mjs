// report.js computations without a browser: composite score normalization, heatmap cell
// count, knee detection and the model-card table (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
require('../src/report.js');  // attaches QLReport to globalThis
const R = globalThis.QLReport;

// 2 units × 3 types, one cell missing.
const data = {
  types: [{ name: 'Q2_K', bpw: 2.625 }, { name: 'Q4_K', bpw: 4.5 }, { name: 'Q8_0', bpw: 8.5 }],
  units: [{ name: 'blk.0.attn_q.weight', layer: 0 }, { name: 'blk.1.attn_q.weight', layer: 1 }],
  metrics: ['kld_mean', 'w_rel_fro'],
  cells: [
    { u: 0, t: 0, m: { kld_mean: 1e-1, w_rel_fro: 0.2 } },
    { u: 0, t: 1, m: { kld_mean: 1e-3, w_rel_fro: 0.05 } },
    { u: 0, t: 2, m: { kld_mean: 1e-5, w_rel_fro: 0.003 } },
    { u: 1, t: 0, m: { kld_mean: 1e-2, w_rel_fro: 0.2 } },
    { u: 1, t: 2, m: { kld_mean: null, w_rel_fro: 0.003 } },
  ],
  plans: [], verify: { rows: [{ name: 'Q4_K', size_bytes: 5e6, bpw: 4.5, ppl: 53.1, kld_mean: 0.012, top1: 0.95 }] },
};

test('composite score: log min-max per metric, weighted mean of what a cell has', () => {
  const norms = R.normalizers(data, true);
  // kld_mean spans 1e-5..1e-1 (4 decades): 1e-3 sits at exactly half.
  assert.equal(norms.kld_mean(1e-3), 0.5);
  assert.equal(norms.kld_mean(1e-1), 1);
  const w = { kld_mean: 1, w_rel_fro: 0, act_mse: 0 };
  assert.equal(R.compositeScore(data.cells[1].m, norms, w), 0.5);
  // A null metric is skipped, not treated as zero.
  const both = { kld_mean: 1, w_rel_fro: 1, act_mse: 1 };
  assert.equal(R.compositeScore(data.cells[4].m, norms, both), norms.w_rel_fro(0.003));
  assert.equal(R.compositeScore({}, norms, both), null);
});

test('heatmap: one cell per measured (unit, type), layers mode averages', () => {
  const hm = R.heatmapModel(data, { mode: 'tensors', log: true, weights: { kld_mean: 1, w_rel_fro: 1 } });
  assert.equal(hm.cells, 5);
  assert.equal(hm.z[1][1], null);
  assert.match(hm.text[0][0], /kld_mean = 0\.1000/);
  const layers = R.heatmapModel(data, { mode: 'layers', log: true, weights: { kld_mean: 1 } });
  assert.deepEqual(layers.rows.map((r) => r.label), ['layer 0', 'layer 1']);
});

test('knee: the point farthest below the chord of a convex error curve', () => {
  const pts = [{ x: 2, y: 1 }, { x: 3, y: 0.05 }, { x: 4, y: 0.01 }, { x: 6, y: 0.005 }, { x: 8, y: 0.004 }];
  // Normalized (bpw, log10 error): distances below the chord are 0.38, 0.50, 0.29 → 4 bpw.
  assert.equal(R.knee(pts).x, 4);
  const sharp = [{ x: 2, y: 1 }, { x: 3, y: 0.01 }, { x: 4, y: 0.008 }, { x: 6, y: 0.006 }, { x: 8, y: 0.005 }];
  assert.equal(R.knee(sharp).x, 3);
  assert.equal(R.knee([{ x: 4, y: 1 }]).x, 4);
  assert.equal(R.knee([]), null);
});

test('summary markdown lists verify rows and the most sensitive tensors', () => {
  const md = R.summaryMarkdown(data);
  assert.match(md, /\| Q4_K \| 5\.00 MB \| 4\.500 \| 53\.10 \| 0\.01200 \| – \| – \| 95\.00 % \|/);
  assert.match(md, /\| `blk\.0\.attn_q\.weight` \| Q2_K \| 0\.1000 \|/);
});

test('the sweep\'s "(all)" unit is drawn but is not a tensor of the ranking', () => {
  const withAll = Object.assign({}, data, {
    units: [...data.units, { name: '(all)', layer: -1, role: 'all' }],
    cells: [...data.cells, { u: 2, t: 0, m: { kld_mean: 5, w_rel_fro: 0.2 } }],
    _index: undefined,  // the copy's own cell index
  });
  assert.equal(R.isTensorUnit(withAll.units[2]), false);
  assert.equal(R.isTensorUnit(withAll.units[0]), true);
  assert.equal(R.heatmapModel(withAll, { mode: 'tensors', log: true, weights: { kld_mean: 1 } }).cells, 6);
  const md = R.summaryMarkdown(withAll);
  assert.doesNotMatch(md, /\(all\)/);
  assert.match(md, /\| `blk\.0\.attn_q\.weight` \| Q2_K \| 0\.1000 \|/);
});

test('experts × layers: ΔKLD and routing share per (layer, expert), gaps where not sampled', () => {
  const d = {
    types: [{ name: 'Q4_0', bpw: 4.5 }],
    units: [
      { name: 'blk.0.ffn_down_exps.weight', layer: 0, role: 'ffn_down_exps' },
      { name: 'blk.0.expert.0', layer: 0, role: 'expert' },
      { name: 'blk.0.expert.2', layer: 0, role: 'expert' },
      { name: 'blk.1.expert.1', layer: 1, role: 'expert' },
    ],
    cells: [
      { u: 0, t: 0, m: { kld_mean: 0.5 } },
      { u: 1, t: 0, m: { kld_mean: 0, route_share: 0 } },
      { u: 2, t: 0, m: { kld_mean: 0.02, route_share: 0.6 } },
      { u: 3, t: 0, m: { kld_mean: 0.01, route_share: 0.4 } },
    ],
  };
  const g = R.expertGrid(d, 0);
  assert.deepEqual(g.layers, [0, 1]);
  assert.deepEqual(g.experts, [0, 1, 2]);
  assert.deepEqual(g.kld, [[0, null, 0.02], [null, 0.01, null]]);
  assert.deepEqual(g.share, [[0, null, 0.6], [null, 0.4, null]]);
  assert.equal(g.cells, 3);
  assert.equal(R.expertGrid({ units: d.units.slice(0, 1), cells: [] }, 0), null);
});

test('tails: verify rows, plans and the most sensitive tensors show p99 and p99.9 KLD', () => {
  const d = Object.assign({}, data, {
    cells: [{ u: 0, t: 0, m: { kld_mean: 0.1, kld_p99: 0.9, kld_p999: 2.5 } }],
    plans: [{ name: 'p', objective: 'p99', size_bytes: 4e6, bpw: 4, predicted_kld: 0.02, predicted_kld_p99: 0.11, predicted_kld_p999: 0.3 }],
    verify: { rows: [{ name: 'mix', size_bytes: 5e6, bpw: 4.5, ppl: 53.1, kld_mean: 0.012, kld_p99: 0.0612, kld_p999: 0.2034, top1: 0.95 }] },
    _index: undefined,
  });
  const md = R.summaryMarkdown(d);
  assert.match(md, /\| mix \| 5\.00 MB \| 4\.500 \| 53\.10 \| 0\.01200 \| 0\.06120 \| 0\.2034 \| 95\.00 % \|/);
  assert.match(md, /Plan \*\*p\*\* \(objective p99\): 4\.00 MB, 4\.000 bpw, predicted KLD 0\.02000, p99 0\.1100, p99\.9 0\.3000\./);
  assert.match(md, /\| `blk\.0\.attn_q\.weight` \| Q2_K \| 0\.1000 \| 2\.500 \|/);
});

test('CSV: one row per cell, KLD mean and tails first, empty where a cell lacks a metric', () => {
  const d = Object.assign({}, data, { metrics: ['act_mse_L0', 'kld_mean', 'kld_p99', 'kld_p999', 'w_rel_fro'],
    units: [{ name: 'blk.0.attn_q.weight', layer: 0, role: 'attn_q' }, { name: 'a,b', layer: -1, role: 'all' }],
    cells: [{ u: 0, t: 1, m: { kld_mean: 0.001, kld_p99: 0.004, kld_p999: 0.02, w_rel_fro: 0.05, act_mse_L0: 1 } },
      { u: 1, t: 0, m: { kld_mean: 0.3, kld_p99: null, w_rel_fro: 0.2 } }] });
  assert.equal(R.cellsCsv(d), 'unit,layer,role,type,kld_mean,kld_p99,kld_p999,w_rel_fro\n' +
    'blk.0.attn_q.weight,0,attn_q,Q4_K,0.001,0.004,0.02,0.05\n' +
    '"a,b",-1,all,Q2_K,0.3,,,0.2\n');
});

test('an edited recipe keeps the plan\'s rounding where the tensor keeps the plan\'s type', () => {
  const plan = { tensors: { a: 'Q4_K', b: 'Q5_K', c: 'Q6_K' }, rounding: { a: 'gptq', b: 'plain' } };
  // a kept at Q4_K (case-insensitive), b moved to Q4_K, c has no rounding in the plan.
  assert.deepEqual(R.recipeRounding(plan, { a: 'q4_k', b: 'Q4_K', c: 'Q6_K' }), { a: 'gptq' });
  assert.deepEqual(R.recipeRounding({ tensors: plan.tensors }, { a: 'Q4_K' }), {});
  assert.deepEqual(R.recipeRounding(null, { a: 'Q4_K' }), {});
});
