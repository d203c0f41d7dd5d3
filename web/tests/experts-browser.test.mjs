// Browser test of the experts × layers view: Debian's chromium, headless, driven by
// playwright-core (node --test). The real `quantlens` binary sweeps the tiny Qwen3-MoE fixture
// (tests/fixtures/qwen3moe: 3 layers × 8 experts) with --experts on 2 chunks of 64 tokens of
// eval.txt, writes the self-contained report, and the page must draw one ΔKLD cell and one
// routing-share cell per (layer, expert) row the store holds, with each layer's shares summing
// to 1, offline and without a script error. Run by scripts/test-browser.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { artifacts, checkReportOffline, launchChromium, quantlens, repo, shared } from './browser_env.mjs';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ql-experts-'));
const store = path.join(work, 'jobs.sqlite');
const model = path.join(repo, 'tests', 'fixtures', 'qwen3moe');
const LAYERS = 3, EXPERTS = 8;
const SLOW = 60000;
let context, data, report;

function ql(args) {
  const r = spawnSync(quantlens, ['-q', ...args], { encoding: 'utf8', timeout: 300000 });
  if (r.status !== 0) throw new Error(`quantlens ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  ql(['sweep', model, '--eval', path.join(shared, 'data', 'eval.txt'), '--tokens', '128', '--ctx', '64',
    '--types', 'Q4_0', '--experts', '--store', store]);
  const dataFile = path.join(work, 'report.json');
  ql(['report', '1', '--json', '-o', dataFile, '--store', store]);
  data = JSON.parse(fs.readFileSync(dataFile, 'utf8'));
  report = path.join(artifacts, 'report-experts.html');
  ql(['report', '1', '--force', '-o', report, '--store', store]);
  context = await launchChromium(work);
  context.setDefaultTimeout(SLOW);
});

after(async () => {
  if (context) await context.close();
  fs.rmSync(work, { recursive: true, force: true });
});

test('report draws experts × layers beside routing share, one cell per stored row', async () => {
  const stored = data.units.filter((u) => u.role === 'expert');
  assert.equal(stored.length, LAYERS * EXPERTS);
  await checkReportOffline(context, report, 'report-experts.png', async (page) => {
    await page.waitForSelector('#ql-experts-kld .main-svg');
    await page.waitForSelector('#ql-experts-share .main-svg');
    const drawn = await page.evaluate(() => {
      const k = document.getElementById('ql-experts-kld'), s = document.getElementById('ql-experts-share');
      const count = (z) => z.flat().filter((v) => v !== null).length;
      return { attr: +k.dataset.cells, kld: count(k.data[0].z), share: count(s.data[0].z),
        rows: k.data[0].y, cols: k.data[0].x.length, sums: s.data[0].z.map((r) => r.reduce((a, b) => a + b, 0)) };
    });
    assert.equal(drawn.attr, LAYERS * EXPERTS);
    assert.equal(drawn.kld, LAYERS * EXPERTS);
    assert.equal(drawn.share, LAYERS * EXPERTS);
    assert.deepEqual(drawn.rows, ['layer 0', 'layer 1', 'layer 2']);
    assert.equal(drawn.cols, EXPERTS);
    for (const s of drawn.sums) assert.ok(Math.abs(s - 1) < 1e-9, `routing shares sum to ${s}`);
    // The drawn share of one (layer, expert) is the stored metric.
    const u = data.units.findIndex((x) => x.name === 'blk.1.expert.5');
    const cell = data.cells.find((c) => c.u === u && c.t === 0);
    const shown = await page.evaluate(() => document.getElementById('ql-experts-share').data[0].z[1][5]);
    assert.equal(shown, cell.m.route_share);
  });
});
