// Browser tests: Debian's chromium, headless, driven by playwright-core (node --test).
//  1. the self-contained report opens offline: no network request at all, no script error,
//     one heatmap cell per measured (unit, type);
//  2. the web app over `quantlens serve`: heatmap cells, hover a cell and read a metric,
//     start a job and watch it reach 100 %, edit a recipe and see the size change, save it.
// Data: a job store filled by ql_test_jobs (a fake sweep of llama-8m's real tensor list).
// Screenshots go to <build>/test-artifacts/browser/. Run by scripts/test-browser.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const build = path.resolve(repo, process.env.QL_BUILD_DIR || 'build');
const shared = process.env.QUANTLENS_SHARED || path.resolve(repo, '../shared');
const chromiumPath = process.env.QL_CHROMIUM || '/usr/bin/chromium';
const artifacts = path.join(build, 'test-artifacts', 'browser');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ql-browser-'));
const store = path.join(work, 'jobs.sqlite');
const recipes = path.join(work, 'recipes');
const model = path.join(shared, 'models', 'llama-8m');

// The machine may be busy (CI, parallel builds): generous timeouts, nothing depends on speed.
const SLOW = 60000;
let context, server, baseUrl, jobId, report;

async function launch() {
  // A fresh profile per run; flags keep chromium from calling home (updates, sync, QUIC probes).
  return chromium.launchPersistentContext(fs.mkdtempSync(path.join(work, 'profile-')), {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

function startServer() {
  return new Promise((resolve, reject) => {
    server = spawn(path.join(build, 'quantlens'), ['serve', '--port', '0', '--store', store,
      '--models-dir', path.join(shared, 'models'), '--recipes-dir', recipes,
      '--job-exe', path.join(build, 'ql_test_jobs')], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start: ' + out)), 15000);
    const onData = (d) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) { clearTimeout(timer); resolve(`http://127.0.0.1:${m[1]}`); }
    };
    server.stdout.on('data', onData);
    server.stderr.on('data', onData);
    server.on('exit', (code) => reject(new Error(`server exited ${code}: ${out}`)));
  });
}

before(async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  jobId = execFileSync(path.join(build, 'ql_test_jobs'), ['fixture', '--store', store, '--model', model]).toString().trim();
  report = path.join(artifacts, 'report.html');
  execFileSync(path.join(build, 'quantlens'), ['-q', 'report', jobId, '-o', report, '--store', store]);
  context = await launch();
  context.setDefaultTimeout(SLOW);
  baseUrl = await startServer();
});

after(async () => {
  if (context) await context.close();
  if (server) server.kill('SIGTERM');
  fs.rmSync(work, { recursive: true, force: true });
});

// Number of measured cells in the data the page holds, and in the drawn heatmap trace.
async function heatmapCounts(page) {
  return page.evaluate(() => {
    const gd = document.getElementById('ql-heatmap');
    let drawn = 0;
    for (const row of gd.data[0].z) for (const v of row) if (v !== null) drawn++;
    return { drawn, cells: window.qlData.cells.length, units: window.qlData.units.length,
      types: window.qlData.types.length, attr: +gd.dataset.cells };
  });
}

// Moves the real mouse over heatmap cell (row, col) and returns the hover detail text.
async function hoverCell(page, row, col) {
  const pos = await page.evaluate(([r, c]) => {
    const gd = document.getElementById('ql-heatmap');
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
    return { x: box.left + xa._offset + xa.l2p(c), y: box.top + ya._offset + ya.l2p(r) };
  }, [row, col]);
  await page.mouse.move(pos.x, pos.y);
  await page.waitForFunction(() => /kld_mean = /.test(document.getElementById('ql-cell-detail').textContent));
  await page.waitForSelector('#ql-heatmap .hoverlayer .hovertext');
  return page.textContent('#ql-cell-detail');
}

test('report opens offline with one heatmap cell per measured (unit, type)', async () => {
  const page = await context.newPage();
  const requests = [], errors = [];
  page.on('request', (r) => { if (!r.url().startsWith('file:') && !r.url().startsWith('data:') && !r.url().startsWith('blob:')) requests.push(r.url()); });
  page.on('pageerror', (e) => errors.push(e.message));
  await context.setOffline(true);  // and any request that is attempted is recorded above
  await page.goto('file://' + report, { timeout: 90000 });
  await page.waitForSelector('#ql-heatmap .main-svg');
  const n = await heatmapCounts(page);
  assert.equal(n.units, 58);  // llama-8m: 8 layers × 7 matrices + token_embd + output
  assert.equal(n.types, 6);
  assert.equal(n.cells, 58 * 6);
  assert.equal(n.drawn, n.cells);
  assert.equal(n.attr, n.cells);
  const detail = await hoverCell(page, 0, 0);
  assert.match(detail, /token_embd\.weight · Q2_K/);
  // The other views are drawn too.
  await page.waitForSelector('#ql-curves .main-svg');
  await page.waitForSelector('#ql-pareto .main-svg');
  await page.waitForSelector('#ql-hockey .main-svg');
  await page.waitForSelector('#ql-kurtosis .main-svg');
  assert.match(await page.textContent('#ql-summary-md'), /\| recipe \| size \| bpw \| PPL/);
  // Layers mode aggregates: 8 layers + embed + output rows.
  await page.selectOption('#ql-mode', 'layers');
  const rows = await page.evaluate(() => document.getElementById('ql-heatmap').data[0].y.length);
  assert.equal(rows, 10);
  await page.screenshot({ path: path.join(artifacts, 'report.png'), fullPage: true });
  assert.deepEqual(errors, []);
  assert.deepEqual(requests, [], 'the report made network requests');
  await context.setOffline(false);
  await page.close();
});

test('app: heatmap, hover, start a job to 100 %, edit and save a recipe', async () => {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${baseUrl}/#report/${jobId}`);
  await page.waitForSelector('#ql-heatmap .main-svg');
  const n = await heatmapCounts(page);
  assert.equal(n.drawn, 58 * 6);
  // Hover blk.0.attn_v at Q2_K and read its KLD; it must be the stored value.
  const row = await page.evaluate(() => window.qlData.units.findIndex((u) => u.name === 'blk.0.attn_v.weight'));
  const detail = await hoverCell(page, row, 0);
  const shown = Number(/kld_mean = ([0-9.e+-]+)/.exec(detail)[1]);
  const stored = await page.evaluate((u) => window.qlData.cells.find((c) => c.u === u && c.t === 0).m.kld_mean, row);
  assert.ok(Math.abs(shown - stored) / stored < 1e-3, `hover shows ${shown}, stored ${stored}`);
  await page.screenshot({ path: path.join(artifacts, 'app-report.png') });

  // Start a sweep from the form and watch it reach 100 % (live events, then polling).
  await page.goto(`${baseUrl}/#jobs`);
  await page.selectOption('#start-kind', 'sweep');
  await page.fill('#start-model', model);
  await page.fill('#start-options [data-option="types"]', 'Q4_K,Q8_0');
  await page.click('#start-submit');
  await page.waitForFunction(() => /started job \d+/.test(document.getElementById('start-result').textContent), null, { timeout: SLOW });
  const newId = /started job (\d+)/.exec(await page.textContent('#start-result'))[1];
  const rowSel = `#jobs-table tr[data-job-id="${newId}"]`;
  await page.waitForSelector(rowSel);
  await page.waitForFunction((sel) => {
    const tr = document.querySelector(sel);
    return tr && tr.dataset.state === 'done' && /100 %/.test(tr.querySelector('.ql-progress-text').textContent);
  }, rowSel, { timeout: SLOW });
  await page.screenshot({ path: path.join(artifacts, 'app-jobs.png') });

  // Recipe editor: lower one tensor's type, the size drops by exactly that tensor's bytes.
  await page.goto(`${baseUrl}/#recipe/${jobId}`);
  const unitSel = 'select[data-unit="blk.3.ffn_down.weight"]';
  await page.waitForSelector(unitSel);
  const before = Number(await page.getAttribute('#recipe-size', 'data-bytes'));
  const kldBefore = await page.textContent('#recipe-kld');
  const q2 = await page.$eval(unitSel, (s) => [...s.options].find((o) => o.textContent === 'Q2_K').value);
  const chosen = await page.$eval(unitSel, (s) => s.options[s.selectedIndex].textContent);
  assert.equal(chosen, 'Q6_K');  // the fixture plan's choice for ffn_down
  await page.selectOption(unitSel, q2);
  const after = Number(await page.getAttribute('#recipe-size', 'data-bytes'));
  // ffn_down of llama-8m is 256 × 768: Q6_K 210 B / 256 weights, Q2_K 84 B / 256 weights.
  assert.equal(before - after, (256 * 768 / 256) * (210 - 84));
  assert.notEqual(await page.textContent('#recipe-kld'), kldBefore);
  assert.match(await page.inputValue('#recipe-llama'), /--tensor-type '\^blk\\\.3\\\.ffn_down\\\.weight\$=q2_k'/);
  await page.fill('#recipe-name', 'browser-test');
  await page.click('#recipe-save-json');
  await page.waitForFunction(() => /saved /.test(document.getElementById('recipe-status').textContent));
  const saved = JSON.parse(fs.readFileSync(path.join(recipes, 'browser-test.json'), 'utf8'));
  assert.equal(saved.tensors['blk.3.ffn_down.weight'], 'Q2_K');
  assert.equal(saved.size_bytes, after);
  await page.click('#recipe-save-yaml');
  await page.waitForFunction(() => /browser-test\.yaml/.test(document.getElementById('recipe-status').textContent));
  await page.screenshot({ path: path.join(artifacts, 'app-recipe.png') });

  // Model tree with search.
  await page.goto(`${baseUrl}/#models`);
  await page.waitForSelector('#models-table tr.ql-entry');  // the first listing has loaded
  await page.fill('#models-path', model);
  await page.click('#models-go');
  await page.waitForSelector('#models-table tr.ql-tensor');
  await page.fill('#models-search', 'layers.3.mlp.down');
  const visible = await page.$$eval('#models-table tr.ql-tensor', (rows) => rows.map((r) => r.firstChild.textContent));
  assert.deepEqual(visible, ['model.layers.3.mlp.down_proj.weight']);
  await page.screenshot({ path: path.join(artifacts, 'app-models.png') });
  assert.deepEqual(errors, []);
  await page.close();
});
