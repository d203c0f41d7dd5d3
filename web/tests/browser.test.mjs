// Browser tests: Debian's chromium, headless, driven by playwright-core (node --test).
// Data: a job store made in before() by the real `quantlens` binary on llama-8m from the
// shared test data (no fake measurements): a sweep of 3 types over 128 tokens, a plan on it
// (--target-bpw 5: the Pareto frontier), a verify of that plan beside two presets (the
// measured points and the summary table) and a calibrate job of a few chunks (the
// calibration views: the calibrate job's own report, and the sweep's, which borrows it). Expected counts are
// read back from the store through the CLI (`jobs show --json`, `report --json`) and also
// checked against llama-8m's known shape.
//  1. the sweep's self-contained report opens offline: no network request at all, no script
//     error, one heatmap cell per measured (unit, type), hover shows the stored metric;
//  2. the calibrate job's report opens offline and draws the calibration charts;
//  3. the web app over `quantlens serve` (which starts jobs with the real binary): heatmap
//     cells, hover a cell and read the stored metric, edit a recipe and see the size change,
//     save it, model tree, calibrate and eval from the start form;
//  4. the whole workflow at 1280×800: model → sweep from the form → recipe → quantize →
//     verify beside Q4_K_M, the measured point on the chart.
// Screenshots go to <build>/test-artifacts/browser/. Run by scripts/test-browser.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { artifacts, checkReportOffline, launchChromium, quantlens, shared } from './browser_env.mjs';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ql-browser-'));
const store = path.join(work, 'jobs.sqlite');
const recipes = path.join(work, 'recipes');
const model = path.join(shared, 'models', 'llama-8m');
const evalText = path.join(shared, 'data', 'eval.txt');
const calibText = path.join(shared, 'data', 'calib.txt');

// llama-8m: 8 layers × 7 matrices + token_embd + output quantizable tensors; the sweep also
// measures the unit "(all)" (every tensor at the type at once) per type.
const TENSORS = 58;
const TYPES = ['Q2_K', 'Q4_K', 'Q8_0'];  // the heatmap orders them by bits per weight
// Bytes per 256 weights of the swept types (ggml block sizes): the recipe size arithmetic.
const BYTES_PER_256 = { Q2_K: 84, Q4_K: 144, Q8_0: 272 };

// The machine may be busy (CI, parallel builds): generous timeouts, nothing depends on speed.
const SLOW = 60000;
const JOB_TIMEOUT = 300000;  // a real job run from the app (measured: ~10 s on 2 busy cores)
let context, server, baseUrl;
// A stand-in Hugging Face Hub (there is no network here): every request is answered 404
// "Repository not found" at once, and the Authorization headers it got are kept, so a pull
// from the app fails cleanly and the test sees whether the token reached the child.
const hubAuth = [];
// A repository the stand-in Hub does serve: one 300 kB file whose first download drops half
// way (the retry is answered 404), so the pull stops with a partial file; the next run must
// ask for the rest with a Range request.
const RESUMABLE = { repo: 'resumable-org/tiny-model', commit: 'c'.repeat(40), listings: 0, ranges: [],
  bytes: Buffer.from(Array.from({ length: 300000 }, (_, i) => (i * 7919) % 251)) };
RESUMABLE.sha256 = crypto.createHash('sha256').update(RESUMABLE.bytes).digest('hex');
let hub, hubUrl;
let sweepId, calibId, shown, data, report, calibReport;

// Runs the real binary; throws with its output when it fails.
function ql(args, timeout = JOB_TIMEOUT) {
  const t0 = Date.now();
  const r = spawnSync(quantlens, ['-q', ...args], { cwd: work, encoding: 'utf8', timeout, maxBuffer: 256 << 20 });
  if (r.status !== 0)
    throw new Error(`quantlens ${args.join(' ')}: ${r.error || 'exit ' + (r.status ?? r.signal)}\n${r.stderr}\n${r.stdout.slice(-4000)}`);
  console.log(`# quantlens ${args[0]}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r.stdout;
}
const qlJson = (args) => JSON.parse(ql([...args, '--json', '--store', store]));
// The one job of `kind` in the store (the store is fresh, so there is exactly one).
function onlyJob(kind) {
  const list = qlJson(['jobs', 'list', '--kind', kind]);
  assert.equal(list.length, 1, `expected one ${kind} job, got ${JSON.stringify(list)}`);
  assert.equal(list[0].status, 'done');
  return list[0].id;
}

async function launch() {
  return launchChromium(work);
}

// `quantlens serve` with its default job executable (itself), so jobs started from the app
// run the real commands; models and data from the shared test data are allowed paths.
function startServer() {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, HF_ENDPOINT: hubUrl, HF_HUB_CACHE: path.join(work, 'hf-cache'), HF_HOME: path.join(work, 'hf-home') };
    delete env.HF_TOKEN;
    server = spawn(quantlens, ['serve', '--port', '0', '--store', store,
      '--models-dir', path.join(shared, 'models'), '--models-dir', path.join(shared, 'data'),
      '--recipes-dir', recipes], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start: ' + out)), SLOW);
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
  // A small real sweep (2 chunks of 64 tokens) and everything the report draws from it.
  // The sweep tunes on calib.txt: verify refuses a recipe judged on the text it was tuned on.
  ql(['sweep', model, '--eval', calibText, '--tokens', '128', '--ctx', '64', '--types', TYPES.join(','), '--store', store]);
  sweepId = onlyJob('sweep');
  const recipePlan = path.join(work, 'plan-bpw5.json');
  ql(['plan', String(sweepId), '--target-bpw', '5', '--name', 'bpw5', '-o', recipePlan, '--store', store]);
  ql(['verify', '--base', model, '--text', evalText, '--recipe', recipePlan, '--presets', 'Q4_K_M,Q8_0',
    '--ctx', '64', '--chunks', '2', '--out-dir', work, '--job', String(sweepId), '--store', store]);
  ql(['calibrate', model, '--text', calibText, '--ctx', '64', '--chunks', '4', '--store', store]);
  calibId = onlyJob('calibrate');
  shown = qlJson(['jobs', 'show', String(sweepId)]);
  const dataFile = path.join(work, 'report.json');
  ql(['report', String(sweepId), '--json', '-o', dataFile, '--store', store]);
  data = JSON.parse(fs.readFileSync(dataFile, 'utf8'));
  report = path.join(artifacts, 'report.html');
  // --force: the artifacts folder outlives a run, and report refuses an existing file.
  ql(['report', String(sweepId), '--force', '-o', report, '--store', store]);
  calibReport = path.join(artifacts, 'report-calibration.html');
  ql(['report', String(calibId), '--force', '-o', calibReport, '--store', store]);
  context = await launch();
  context.setDefaultTimeout(SLOW);
  hub = http.createServer((req, res) => {
    hubAuth.push(req.headers.authorization || '');
    if (req.url.startsWith(`/api/models/${RESUMABLE.repo}/revision/main`)) {
      RESUMABLE.listings++;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ sha: RESUMABLE.commit, siblings: [{ rfilename: 'model.safetensors', size: RESUMABLE.bytes.length,
        blobId: 'b'.repeat(40), lfs: { sha256: RESUMABLE.sha256, size: RESUMABLE.bytes.length } }] }));
      return;
    }
    if (req.url === `/${RESUMABLE.repo}/resolve/${RESUMABLE.commit}/model.safetensors`) {
      const range = req.headers.range || '';
      RESUMABLE.ranges.push(range);
      const n = RESUMABLE.bytes.length, half = n >> 1;
      if (RESUMABLE.listings === 1 && !range) {
        // First run: half the file, then the connection drops ...
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(n) });
        res.write(RESUMABLE.bytes.subarray(0, half), () => setTimeout(() => res.socket.destroy(), 50));
        return;
      }
      if (RESUMABLE.listings === 1) {
        // ... and the retry is answered "gone", so the run stops with half the file on disk.
        res.writeHead(404, { 'Content-Type': 'application/json', 'X-Error-Code': 'EntryNotFound' });
        res.end('{"error":"Entry not found"}');
        return;
      }
      const from = Number(/^bytes=(\d+)-$/.exec(range)?.[1] ?? 0);
      res.writeHead(from ? 206 : 200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(n - from),
        ...(from ? { 'Content-Range': `bytes ${from}-${n - 1}/${n}` } : {}) });
      res.end(RESUMABLE.bytes.subarray(from));
      return;
    }
    res.writeHead(404, { 'Content-Type': 'application/json', 'X-Error-Code': 'RepoNotFound' });
    res.end('{"error":"Repository not found"}');
  });
  await new Promise((ok) => hub.listen(0, '127.0.0.1', ok));
  hubUrl = `http://127.0.0.1:${hub.address().port}`;
  baseUrl = await startServer();
});

after(async () => {
  if (context) await context.close();
  if (server) server.kill('SIGTERM');
  if (hub) hub.close();
  fs.rmSync(work, { recursive: true, force: true });
});

test('the store holds the real sweep: llama-8m tensors × types, a plan, verify rows', () => {
  assert.equal(shown.kind, 'sweep');
  assert.equal(shown.items.pending, 0);
  assert.equal(shown.units, TENSORS + 1);  // + "(all)"
  assert.equal(shown.items.done, (TENSORS + 1) * TYPES.length);
  assert.deepEqual(data.types.map((t) => t.name), TYPES);
  assert.equal(data.cells.length, shown.items.done);
  assert.ok(shown.artifacts.includes('plan:bpw5') && shown.artifacts.includes('verify'), shown.artifacts.join());
  assert.equal(Object.keys(data.plans[0].tensors).length, TENSORS);
  assert.ok(data.plans[0].frontier.length > 10);
});

// Number of measured cells in the data the page holds, and in the drawn heatmap trace.
async function heatmapCounts(page) {
  return page.evaluate(() => {
    const gd = document.getElementById('ql-heatmap');
    let drawn = 0;
    for (const row of gd.data[0].z) for (const v of row) if (v !== null) drawn++;
    return { drawn, cells: window.qlData.cells.length, units: window.qlData.units.length,
      types: window.qlData.types.length, rows: gd.data[0].y.length, attr: +gd.dataset.cells };
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

// The stored metric of (unit name, type name) from `quantlens report --json`.
function stored(unit, type, metric) {
  const u = data.units.findIndex((x) => x.name === unit), t = data.types.findIndex((x) => x.name === type);
  const cell = data.cells.find((c) => c.u === u && c.t === t);
  assert.ok(cell, `no stored cell ${unit} × ${type}`);
  return cell.m[metric];
}

// Hovers the cell of `unit` at `type` and checks that the page shows the stored kld_mean.
async function hoverAndCheck(page, unit, type) {
  const [row, col] = await page.evaluate(([u, t]) => [
    window.qlData.units.findIndex((x) => x.name === u), window.qlData.types.findIndex((x) => x.name === t)], [unit, type]);
  const detail = await hoverCell(page, row, col);
  assert.ok(detail.includes(`${unit} · ${type}`), detail);
  const value = Number(/kld_mean = ([0-9.e+-]+)/.exec(detail)[1]);
  const want = stored(unit, type, 'kld_mean');
  assert.ok(want > 0 && Math.abs(value - want) / want < 1e-3, `hover shows ${value}, the store has ${want}`);
}

test('report opens offline with one heatmap cell per measured (unit, type)', async () => {
  await checkReportOffline(context, report, 'report.png', async (page) => {
    await page.waitForSelector('#ql-heatmap .main-svg');
    const n = await heatmapCounts(page);
    assert.equal(n.units, shown.units);
    assert.equal(n.types, TYPES.length);
    assert.equal(n.cells, shown.items.done);
    assert.equal(n.cells, (TENSORS + 1) * TYPES.length);
    assert.equal(n.drawn, n.cells);
    assert.equal(n.attr, n.cells);
    await hoverAndCheck(page, 'token_embd.weight', 'Q2_K');
    // The other views are drawn from the real plan and verify.
    await page.waitForSelector('#ql-curves .main-svg');
    await page.waitForSelector('#ql-pareto .main-svg');
    const md = await page.textContent('#ql-summary-md');
    assert.match(md, /\| recipe \| size \| bpw \| PPL/);
    assert.match(md, /\| Q4_K_M \|/);
    assert.match(md, /Plan \*\*bpw5\*\*/);
    assert.doesNotMatch(md, /\(all\)/);  // the ranking lists tensors only
    // The sweep has no calibration of its own: the report borrows the calibrate job's, names
    // it, and draws a weight histogram per quantizable tensor from the real weights.
    assert.equal(data.calibration_source.job, calibId);
    assert.match(await page.textContent('#ql-calib-source'), new RegExp(`calibrate job ${calibId}\\b`));
    await page.waitForSelector('#ql-hist .main-svg');
    assert.equal(await page.$$eval('#ql-hist-tensor option', (o) => o.length), TENSORS);
    await page.selectOption('#ql-hist-tensor', 'blk.3.ffn_down.weight');
    const hist = await page.evaluate(() => {
      const gd = document.getElementById('ql-hist');
      return { traces: gd.data.length, sum: gd.data[0].y.reduce((a, b) => a + b, 0), bins: gd.data[0].y.length,
        lines: gd.layout.shapes.map((s) => s.x0) };
    });
    const unit = data.units.find((u) => u.name === 'blk.3.ffn_down.weight');
    const h = data.calibration.tensors.find((t) => t.name === 'blk.3.ffn_down.weight').weight_hist;
    assert.equal(hist.traces, 1);
    assert.equal(hist.bins, 64);
    assert.equal(hist.sum, unit.n_params);  // every weight in exactly one bin
    assert.deepEqual(hist.lines, [h.mean - 3 * h.std, h.mean + 3 * h.std]);
    // Layers mode aggregates: 8 layers + embed + output + "(all)" rows.
    await page.selectOption('#ql-mode', 'layers');
    const rows = await page.evaluate(() => document.getElementById('ql-heatmap').data[0].y);
    assert.equal(rows.length, 11, rows.join());
  });
});

test('calibrate job report opens offline and draws the calibration charts', async () => {
  await checkReportOffline(context, calibReport, 'report-calibration.png', async (page) => {
    await page.waitForSelector('#ql-hockey .main-svg');
    await page.waitForSelector('#ql-surface .main-svg');
    await page.waitForSelector('#ql-kurtosis .main-svg');
    // One hockey-stick option per linear input the calibration measured (all 56 layer matrices).
    const options = await page.$$eval('#ql-calib-tensor option', (o) => o.length);
    assert.equal(options, TENSORS - 2);
    // Weight histograms for every quantizable tensor (token_embd and output included).
    await page.waitForSelector('#ql-hist .main-svg');
    assert.equal(await page.$$eval('#ql-hist-tensor option', (o) => o.length), TENSORS);
    assert.match(await page.textContent('#ql-calib-source'), new RegExp(`this job \\(${calibId}\\)`));
    // No sweep cells: a note instead of an empty heatmap.
    assert.match(await page.textContent('#ql-no-cells'), /calibrate job has no sweep measurements/);
    assert.equal(await page.$('#ql-heatmap'), null);
  });
});

test('app: heatmap, hover, edit and save a recipe, model tree', async () => {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${baseUrl}/#report/${sweepId}`);
  await page.waitForSelector('#ql-heatmap .main-svg');
  const n = await heatmapCounts(page);
  assert.equal(n.drawn, shown.items.done);
  assert.equal(n.attr, shown.items.done);
  await hoverAndCheck(page, 'blk.0.attn_v.weight', 'Q2_K');
  await page.screenshot({ path: path.join(artifacts, 'app-report.png') });

  // Recipe editor, starting from the real plan: one row per tensor ("(all)" is not one);
  // change one tensor's type, the size moves by exactly that tensor's bytes at both types.
  await page.goto(`${baseUrl}/#recipe/${sweepId}`);
  const unit = 'blk.3.ffn_down.weight';  // 256 × 768
  const unitSel = `select[data-unit="${unit}"]`;
  await page.waitForSelector(unitSel);
  assert.equal(await page.$$eval('#recipe-table select[data-unit]', (s) => s.length), TENSORS);
  const before = Number(await page.getAttribute('#recipe-size', 'data-bytes'));
  const plan = data.plans.find((p) => p.name === 'bpw5');
  const planBytes = Object.entries(plan.tensors).reduce((s, [u, t]) => s + stored(u, t, 'bytes'), 0);
  assert.equal(before, Math.round(planBytes));
  const kldBefore = await page.textContent('#recipe-kld');
  // The recipe's Σ per-tensor Δp99 KLD (the sweep records tails): the plan's cells summed.
  const p99Sum = Object.entries(plan.tensors).reduce((s, [u, t]) => s + Math.max(0, stored(u, t, 'kld_p99')), 0);
  assert.ok(p99Sum > 0);
  const p99Shown = Number(await page.textContent('#recipe-p99'));
  assert.ok(Math.abs(p99Shown - p99Sum) / p99Sum < 1e-3, `Σ Δp99: page ${p99Shown}, stored ${p99Sum}`);
  const chosen = await page.$eval(unitSel, (s) => s.options[s.selectedIndex].textContent);
  assert.equal(chosen, plan.tensors[unit]);
  const target = chosen === 'Q2_K' ? 'Q8_0' : 'Q2_K';
  const value = await page.$eval(unitSel, (s, t) => [...s.options].find((o) => o.textContent === t).value, target);
  await page.selectOption(unitSel, value);
  const after = Number(await page.getAttribute('#recipe-size', 'data-bytes'));
  assert.equal(before - after, stored(unit, chosen, 'bytes') - stored(unit, target, 'bytes'));
  assert.equal(before - after, (256 * 768 / 256) * (BYTES_PER_256[chosen] - BYTES_PER_256[target]));
  assert.notEqual(await page.textContent('#recipe-kld'), kldBefore);
  const esc = unit.replace(/\./g, '\\\\\\.');
  assert.match(await page.inputValue('#recipe-llama'), new RegExp(`--tensor-type '\\^${esc}\\$=${target.toLowerCase()}'`));
  await page.fill('#recipe-name', 'browser-test');
  await page.click('#recipe-save-json');
  await page.waitForFunction(() => /saved /.test(document.getElementById('recipe-status').textContent));
  const saved = JSON.parse(fs.readFileSync(path.join(recipes, 'browser-test.json'), 'utf8'));
  assert.equal(saved.tensors[unit], target);
  assert.equal(Object.keys(saved.tensors).length, TENSORS);
  assert.equal(saved.predicted.size_bytes, after);  // provenance survives, as formats/recipe reads it
  assert.equal(saved.job_id, sweepId);
  await page.click('#recipe-save-yaml');
  await page.waitForFunction(() => /browser-test\.yaml/.test(document.getElementById('recipe-status').textContent));
  // Saving again under the same name asks first; declined, the file keeps its content.
  const asked = [];
  page.once('dialog', (d) => { asked.push(d.message()); d.dismiss(); });
  const savedText = fs.readFileSync(path.join(recipes, 'browser-test.json'), 'utf8');
  await page.selectOption(unitSel, await page.$eval(unitSel, (s, t) => [...s.options].find((o) => o.textContent === t).value, chosen));
  await page.click('#recipe-save-json');
  await page.waitForFunction(() => /not replaced: recipe 'browser-test' already exists/.test(document.getElementById('recipe-status').textContent));
  assert.equal(asked.length, 1);
  assert.equal(fs.readFileSync(path.join(recipes, 'browser-test.json'), 'utf8'), savedText);
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

  // The other kinds from the start form: calibrate records a job (followed to done, its
  // imatrix written into the output folder), eval answers with its output (PPL).
  await page.goto(`${baseUrl}/#jobs`);
  await page.waitForSelector('body[data-ready="1"]');
  await page.selectOption('#start-kind', 'calibrate');
  await page.fill('#start-model', model);
  assert.match(await page.inputValue('#start-options select[data-option="text"]'), /calib\.txt$/);
  await page.fill('#start-options [data-option="chunks"]', '2');
  await page.fill('#start-options [data-option="output"]', 'form-calib.dat');
  await page.$eval('details.ql-more', (d) => { d.open = true; });
  await page.fill('#start-more [data-option="ctx"]', '64');
  await page.click('#start-submit');
  const calId = await page.waitForFunction(() => /started job (\d+)/.exec(document.getElementById('start-result').textContent), null, { timeout: JOB_TIMEOUT })
    .then((h) => h.jsonValue()).then((m) => m[1]);
  await page.waitForFunction((id) => {
    const tr = document.querySelector(`#jobs-table tr[data-job-id="${id}"]`);
    return tr && ['done', 'failed', 'cancelled'].includes(tr.dataset.state);
  }, calId, { timeout: JOB_TIMEOUT });
  assert.equal(qlJson(['jobs', 'show', calId]).status, 'done');
  assert.ok(fs.statSync(path.join(store + '.outputs', 'form-calib.dat')).size > 0);
  await page.selectOption('#start-kind', 'eval');
  await page.fill('#start-model', model);
  assert.match(await page.inputValue('#start-options select[data-option="text"]'), /eval\.txt$/);
  await page.fill('#start-options [data-option="ctx"]', '64');
  await page.fill('#start-options [data-option="chunks"]', '2');
  await page.click('#start-submit');
  await page.waitForFunction(() => /finished|exited|error/.test(document.getElementById('start-result').textContent), null, { timeout: JOB_TIMEOUT });
  assert.match(await page.textContent('#start-result'), /eval finished: .*tokens\/s|eval finished: PPL/);
  assert.equal(await page.getAttribute('#procs-table tr[data-state]', 'data-state'), 'done');
  assert.deepEqual(errors, []);
  await page.close();
});

// The seed's whole workflow in the browser, at 1280×800, on llama-8m, each step through the
// app's own controls and the server's real jobs: pick the model in the folder tree (config
// and tensor table as `quantlens inspect` gives them), sweep it from the prefilled form (two
// types, 64 tokens), open its recipe, change a tensor's type on its error curve, quantize
// (and see that a second quantize into the same file asks first), verify beside Q4_K_M and
// find the measured point on the chart. Every request stays on the app's own server. Screenshots of each step: docs/web/*.png come from
// these (<build>/test-artifacts/browser/workflow-*.png).
test('workflow at 1280×800: model → sweep → recipe → quantize → verify beside Q4_K_M', async () => {
  const page = await context.newPage();
  await page.setViewportSize({ width: 1280, height: 800 });
  const errors = [], dialogs = [];
  let answer = 'dismiss';
  page.on('pageerror', (e) => errors.push(e.message));
  const outside = [];
  page.on('request', (r) => { if (!r.url().startsWith(baseUrl + '/')) outside.push(r.url()); });
  page.on('dialog', (d) => { dialogs.push(d.message()); return answer === 'accept' ? d.accept() : d.dismiss(); });
  const shot = (name) => page.screenshot({ path: path.join(artifacts, `workflow-${name}.png`) });
  const modelsRoot = fs.realpathSync(path.join(shared, 'models'));
  const modelPath = path.join(modelsRoot, 'llama-8m');
  const inspect = JSON.parse(ql(['inspect', model, '--json']));

  // 1. The model: folder tree → llama-8m → its config and tensor table.
  await page.goto(`${baseUrl}/#models`);
  await page.waitForSelector('body[data-ready="1"]');
  await page.click(`#models-table tr.ql-entry[data-name="${modelsRoot}"]`);
  await page.click('#models-table tr.ql-entry[data-name="llama-8m"]');
  await page.waitForSelector('#models-config:not([hidden]) #models-config-table tr');
  const config = await page.$$eval('#models-config-table tr', (rows) => Object.fromEntries(rows.map((r) => [r.cells[0].textContent, r.cells[1].textContent])));
  assert.equal(config.layers, String(inspect.config.n_layers));
  assert.equal(config.layers, '8');
  assert.equal(config.vocab, String(inspect.config.vocab));
  assert.match(config.heads, new RegExp(`^${inspect.config.n_heads} query / ${inspect.config.n_kv_heads} key-value, head size ${inspect.config.head_dim}$`));
  assert.match(config.architecture, /LlamaForCausalLM/);
  assert.match(config['rope θ'], /^10000$/);
  const rows = await page.$$eval('#models-table tr.ql-tensor', (r) => r.map((x) => [...x.cells].map((c) => c.textContent)));
  assert.equal(rows.length, inspect.tensors.length);
  const down = rows.find((r) => r[1] === 'blk.3.ffn_down.weight');
  const want = inspect.tensors.find((t) => t.name === 'blk.3.ffn_down.weight');
  assert.deepEqual(down.slice(0, 5), [want.hf_name, want.name, `[${want.ne.join(', ')}]`, want.type, want.role]);
  assert.match(await page.textContent('#models-table tfoot'), new RegExp(`total: ${inspect.totals.tensors} tensors`));
  // Folder icons are drawn by CSS (no emoji that renders as a missing-glyph box).
  assert.doesNotMatch(await page.textContent('#models-table'), /\u{1F4C1}/u);
  await shot('1-model');

  // 2. "Sweep this model": the form is prefilled; the type checkboxes come from the server in
  // bits-per-weight order with the sweep's defaults ticked; two types, 64 tokens.
  await page.click('#models-sweep');
  await page.waitForSelector('#view-jobs:not([hidden])');
  assert.equal(await page.inputValue('#start-model'), modelPath);
  assert.equal(await page.inputValue('#start-kind'), 'sweep');
  const catalog = await page.evaluate(() => fetch('/api/types').then((r) => r.json()));
  const boxes = await page.$$eval('#start-types input', (b) => b.map((x) => [x.value, x.checked]));
  assert.deepEqual(boxes, catalog.types.map((t) => [t.name, t.default]));
  const bpws = catalog.types.map((t) => t.bpw);
  assert.deepEqual(bpws, [...bpws].sort((a, b) => a - b));
  assert.deepEqual(catalog.types.filter((t) => t.default).map((t) => t.name).sort(),
    ['IQ3_S', 'IQ4_XS', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_0']);
  // The sweep tunes, so the form offers calibration text; verify below judges on eval.txt.
  assert.match(await page.inputValue('#start-options select[data-option="eval"]'), /calib\.txt$/);
  for (const [name, on] of boxes) if (on !== ['Q4_K', 'Q8_0'].includes(name)) await page.click(`#start-types input[value="${name}"]`);
  await page.fill('#start-options [data-option="tokens"]', '64');
  await page.click('details.ql-more summary');
  await page.fill('#start-more [data-option="ctx"]', '32');
  await page.waitForFunction(() => /≈ 118 items \(59 units × 2 types\) over 64 tokens/.test(document.getElementById('start-estimate').textContent));
  await page.click('#start-submit');
  const newId = await page.waitForFunction(() => /started job (\d+)/.exec(document.getElementById('start-result').textContent), null, { timeout: JOB_TIMEOUT })
    .then((h) => h.jsonValue()).then((m) => m[1]);
  const rowSel = `#jobs-table tr[data-job-id="${newId}"]`;
  await page.waitForFunction((sel) => {
    const tr = document.querySelector(sel);
    return tr && ['done', 'failed', 'cancelled'].includes(tr.dataset.state);
  }, rowSel, { timeout: JOB_TIMEOUT });
  const swept = qlJson(['jobs', 'show', newId]);
  assert.equal(swept.status, 'done', `job ${newId}: ${swept.status} ${swept.error}`);
  assert.equal(swept.items.done, (TENSORS + 1) * 2);
  assert.deepEqual(swept.params.types, ['Q4_K', 'Q8_0']);
  assert.equal(swept.params.n_tokens, 64);
  assert.match(await page.textContent(`${rowSel} .ql-progress-text`), /100 %/);
  assert.match(await page.textContent(`${rowSel} .ql-eta`), /^took \d+ s$/);
  await shot('2-sweep');

  // 3. The recipe: from the job's row; all tensors start at the most bits measured (Q8_0).
  // A plan at 6 bpw (the knapsack over the measured ΔKLD) becomes the start and draws its
  // frontier. Clicking a tensor draws its curve with knee, chosen type and the presets'
  // types; a type button there changes the choice, and the size moves by exactly that
  // tensor's bytes.
  await page.click(`${rowSel} button[data-action="recipe"]`);
  const unit = 'blk.3.ffn_down.weight';  // 256 × 768
  const unitType = () => page.$eval(`select[data-unit="${unit}"]`, (s) => s.options[s.selectedIndex].textContent);
  await page.waitForFunction((n) => document.querySelectorAll('#recipe-table select[data-unit]').length === n, TENSORS);
  assert.equal(await unitType(), 'Q8_0');
  await page.fill('#plan-bpw', '6');
  await page.click('#recipe-plan');
  await page.waitForFunction(() => /ql-(ok|error)/.test(document.getElementById('plan-status').className), null, { timeout: JOB_TIMEOUT });
  assert.equal(await page.getAttribute('#plan-status', 'class'), 'ql-ok', await page.textContent('#plan-status'));
  assert.equal(await page.inputValue('#recipe-start'), 'plan:bpw6');
  const planned = Number(await page.getAttribute('#recipe-size', 'data-bytes'));
  const plannedBpw = Number(await page.textContent('#recipe-bpw'));
  assert.ok(plannedBpw > 4.5 && plannedBpw <= 6.0001, `plan bpw ${plannedBpw}`);
  const chartTraces = await page.evaluate(() => document.getElementById('verify-chart').data.map((t) => t.name));
  assert.ok(chartTraces.includes('frontier bpw6') && chartTraces.includes('this recipe (predicted)'), chartTraces.join());
  const presets = await page.evaluate((m) => fetch(`/api/presets?model=${encodeURIComponent(m)}&presets=Q4_K_M`).then((r) => r.json()), modelPath);
  await page.click(`#recipe-table td[data-curve="${unit}"]`);
  await page.waitForFunction(() => /presets give it/.test(document.getElementById('curve-note').textContent));
  const chosen = await unitType(), target = chosen === 'Q8_0' ? 'Q4_K' : 'Q8_0';
  const traces = await page.evaluate(() => document.getElementById('recipe-curve').data.map((t) => t.name));
  assert.ok(traces.includes('ΔKLD (measured)') && traces.includes(`chosen (${chosen})`) && traces.some((t) => /^knee \((Q4_K|Q8_0)\)$/.test(t)), traces.join());
  assert.match(await page.textContent('#curve-note'), new RegExp(`Q4_K_M → ${presets.presets.Q4_K_M[unit]}`));
  await page.click(`#curve-types button[data-set-type="${target}"]`);
  await page.waitForFunction((t) => document.getElementById('recipe-curve').data.some((x) => x.name === `chosen (${t})`), target);
  assert.equal(await unitType(), target);
  const edited = Number(await page.getAttribute('#recipe-size', 'data-bytes'));
  assert.equal(planned - edited, (256 * 768 / 256) * (BYTES_PER_256[chosen] - BYTES_PER_256[target]));
  await shot('3-recipe');

  // 4. Quantize: the recipe is saved and written as a GGUF with exactly the chosen types.
  const recipeNow = await page.evaluate(() => {
    const out = {};
    for (const s of document.querySelectorAll('#recipe-table select[data-unit]')) out[s.dataset.unit] = s.options[s.selectedIndex].textContent;
    return out;
  });
  await page.fill('#recipe-name', 'e2e-mixed');
  await page.click('#recipe-quantize');
  await page.waitForFunction(() => /ql-(ok|error)/.test(document.getElementById('quantize-status').className), null, { timeout: JOB_TIMEOUT });
  assert.equal(await page.getAttribute('#quantize-status', 'class'), 'ql-ok', await page.textContent('#quantize-status'));
  const gguf = path.join(store + '.outputs', 'e2e-mixed.gguf');
  const written = JSON.parse(ql(['inspect', gguf, '--json']));
  const writtenTypes = Object.fromEntries(written.tensors.filter((t) => t.name in recipeNow).map((t) => [t.name, t.type]));
  assert.deepEqual(writtenTypes, recipeNow);
  assert.equal(writtenTypes[unit], target);

  // 5. Verify beside Q4_K_M (the default tick) on the held-out text: the measured point of the
  // recipe is on the chart at its real file size, and the table lists both.
  assert.deepEqual(await page.$$eval('#verify-presets input:checked', (b) => b.map((x) => x.value)), ['Q4_K_M']);
  assert.match(await page.inputValue('#verify-text'), /eval\.txt$/);
  await page.fill('#verify-ctx', '32');
  await page.fill('#verify-chunks', '2');
  await page.click('#recipe-verify');
  await page.waitForFunction(() => /ql-(ok|error)/.test(document.getElementById('verify-status').className), null, { timeout: JOB_TIMEOUT });
  assert.equal(await page.getAttribute('#verify-status', 'class'), 'ql-ok', await page.textContent('#verify-status'));
  const verified = await page.$$eval('#verify-table tbody tr', (r) => r.map((x) => x.dataset.verify));
  assert.deepEqual(verified, ['e2e-mixed', 'Q4_K_M']);
  const reportFile = path.join(work, `report-${newId}.json`);
  ql(['report', newId, '--json', '-o', reportFile, '--store', store]);
  const stored = JSON.parse(fs.readFileSync(reportFile, 'utf8')).verify.rows;
  const mine = stored.find((r) => r.name === 'e2e-mixed');
  assert.ok(mine.kld_mean > 0 && mine.size_bytes > 0, JSON.stringify(mine));
  const point = await page.evaluate(() => {
    const t = document.getElementById('verify-chart').data.find((x) => x.name === 'measured (verify)');
    return t && { x: t.x, y: t.y, text: t.text };
  });
  assert.ok(point, 'no measured trace on the verify chart');
  const i = point.text.indexOf('e2e-mixed');
  assert.ok(i >= 0, point.text.join());
  assert.equal(point.x[i], mine.size_bytes / 1e6);
  assert.equal(point.y[i], mine.kld_mean);
  // The table has mean, p99 and p99.9 KLD as verify measured them.
  const cells = await page.$$eval('#verify-table tbody tr[data-verify="e2e-mixed"] td', (t) => t.map((x) => x.textContent));
  const heads = await page.$$eval('#verify-table thead th', (t) => t.map((x) => x.textContent));
  const col = (h) => Number(cells[heads.indexOf(h)]);
  for (const [h, v] of [['KLD mean', mine.kld_mean], ['KLD p99', mine.kld_p99], ['KLD p99.9', mine.kld_p999]])
    assert.ok(v > 0 && Math.abs(col(h) - v) / v < 1e-3, `${h}: page ${cells[heads.indexOf(h)]}, stored ${v}`);
  assert.equal(cells[heads.indexOf('same top-1')], (100 * mine.top1).toFixed(2) + ' %');
  // Verified recipes of the whole store are listed with their results: this one and the
  // plan verified in before() on the first sweep.
  const vrow = `#verified-table tr[data-verified="${newId}/e2e-mixed"]`;
  await page.waitForSelector(vrow);
  assert.ok(await page.$(`#verified-table tr[data-verified="${sweepId}/plan-bpw5"]`), 'the plan verified in before() is not listed');
  assert.equal(await page.$(`#verified-table tr[data-verified="${newId}/Q4_K_M"]`), null, 'a preset listed as a recipe');
  const vcells = await page.$$eval(`${vrow} td`, (t) => t.map((x) => x.textContent));
  assert.equal(vcells[2], 'e2e-mixed');
  assert.ok(Math.abs(Number(vcells[6]) - mine.kld_mean) / mine.kld_mean < 1e-3, `${vcells[6]} vs ${mine.kld_mean}`);
  await page.$eval('#recipe-actions', (e) => e.scrollIntoView());
  await shot('4-verify');
  await page.$eval('#verified-card', (e) => e.scrollIntoView());
  await shot('5-verified');

  // 6. A second quantize into the same file asks first: declined, the file is left alone;
  // confirmed, it is replaced.
  const mtime = fs.statSync(gguf).mtimeMs;
  await page.click('#recipe-quantize');
  await page.waitForFunction(() => /not replaced/.test(document.getElementById('quantize-status').textContent));
  assert.equal(dialogs.length, 1);
  assert.match(dialogs[0], /e2e-mixed\.gguf exists/);
  assert.equal(fs.statSync(gguf).mtimeMs, mtime);
  answer = 'accept';
  await page.click('#recipe-quantize');
  await page.waitForFunction(() => /^done: /.test(document.getElementById('quantize-status').textContent), null, { timeout: JOB_TIMEOUT });
  assert.equal(dialogs.length, 2);
  assert.notEqual(fs.statSync(gguf).mtimeMs, mtime);
  assert.deepEqual(errors, []);
  assert.deepEqual(outside, [], 'the app asked for something outside its server');
  await page.close();
});

// Every kind the start form offers (GET /api/job-kinds: the CLI's job table, plus pull) is
// started from the form with the least it needs on llama-8m, and ends without an error: a
// kind that records a job is followed to 'done' in the store, the others to exit code 0.
// pull (no network here) goes to the stand-in hub and must fail cleanly, and the token typed
// into the form must reach the child (as HF_TOKEN, the hub sees it) yet appear in no reply,
// page, log, output or job-store byte.
test('app: every job kind starts from the start form', async () => {
  const page = await context.newPage();
  await page.setViewportSize({ width: 1280, height: 800 });  // the narrow window the issue names
  const errors = [], outside = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => { if (!r.url().startsWith(baseUrl + '/')) outside.push(r.url()); });
  page.on('dialog', (d) => d.dismiss());
  await page.goto(`${baseUrl}/#jobs`);
  await page.waitForSelector('body[data-ready="1"]');
  const more = () => page.$eval('details.ql-more', (d) => { d.open = true; });
  const only = (option, value) => page.$$eval(`#start-options [data-option="${option}"] input`, (cbs, v) => cbs.forEach((c) => { c.checked = c.value === v; }), value);
  // verify, eval and compare read two chunks of 64 tokens: enough to finish, quickly.
  const twoShortChunks = async () => {
    await page.fill('#start-options [data-option="ctx"]', '64');
    await page.fill('#start-options [data-option="chunks"]', '2');
  };
  const token = 'hf_FakeToken' + Date.now().toString(36) + 'Zq9';
  const fill = {
    sweep: async () => {
      await page.fill('#start-model', model);
      await only('types', 'Q8_0');
      await page.fill('#start-options [data-option="tokens"]', '64');
      await more();
      await page.fill('#start-more [data-option="ctx"]', '64');
    },
    calibrate: async () => {
      await page.fill('#start-model', model);
      await page.fill('#start-options [data-option="chunks"]', '2');
      await page.fill('#start-options [data-option="output"]', 'all-kinds-calib.dat');
      await more();
      await page.fill('#start-more [data-option="ctx"]', '64');
    },
    plan: async () => {
      await page.selectOption('#start-job', String(sweepId));
      await page.fill('#start-options [data-option="target-bpw"]', '5');
    },
    quantize: async () => {
      await page.fill('#start-model', model);
      await page.selectOption('#start-options [data-option="preset"]', 'Q8_0');
      await page.fill('#start-options [data-option="output"]', 'all-kinds-q8.gguf');
    },
    verify: async () => {
      await page.fill('#start-model', model);
      await page.selectOption('#start-job', '');
      await only('presets', 'Q8_0');
      await twoShortChunks();
    },
    eval: async () => {
      await page.fill('#start-model', model);
      await twoShortChunks();
    },
    pull: async () => {
      await page.fill('#start-repo', 'no-such-org/no-such-model');
      await page.fill('#start-token', token);
    },
    // compare: the model and a quantized GGUF of it (the shared Q4_K_M file).
    compare: async () => {
      assert.equal(await page.textContent('#start-second-name'), 'quant');
      await page.fill('#start-model', model);
      await page.fill('#start-second', path.join(shared, 'models', 'llama-8m-Q4_K_M.gguf'));
      await twoShortChunks();
      await page.check('#start-options [data-option="no-attribution"]');
    },
    // audit: a zoo file in the server's working directory naming llama-8m and the shared text.
    audit: async () => {
      assert.equal(await page.textContent('#start-model-name'), 'zoo');
      assert.equal(await page.isVisible('#start-second-label'), false);
      await page.fill('#start-model', zooFile);
    },
  };
  const zooFile = path.join(work, 'web-zoo.yaml');
  fs.writeFileSync(zooFile, `defaults: {text: ${calibText}, types: [Q8_0], tokens: 64, ctx: 32, granularity: class}\nmodels:\n  - {name: l8, fp: ${model}}\n`);
  const offered = await page.$$eval('#start-kind option', (os) => os.map((o) => o.value));
  assert.deepEqual([...offered].sort(), Object.keys(fill).sort(), 'a kind offered without a test here (or one gone)');
  // Every command that can record a job (the job store's kinds) is among them, and pull.
  for (const k of ['sweep', 'calibrate', 'eval', 'quantize', 'verify', 'compare', 'audit', 'plan', 'pull']) assert.ok(offered.includes(k), k);
  const ended = () => page.waitForFunction(() => {
    const t = document.getElementById('start-result').textContent;
    return /started job \d+|finished|exited|error|not /.test(t) && t;
  }, null, { timeout: JOB_TIMEOUT }).then((h) => h.jsonValue());
  for (const kind of offered) {
    await page.selectOption('#start-kind', kind);
    await page.$eval('#start-result', (e) => { e.textContent = ''; });
    await fill[kind]();
    await page.click('#start-submit');
    const result = await ended();
    const t0 = Date.now();
    if (kind === 'pull') {
      assert.match(result, /pull exited with code 1: .*no-such-org\/no-such-model/, result);
      assert.equal(await page.getAttribute('#start-result', 'class'), 'ql-error');
      assert.equal(await page.inputValue('#start-token'), '', 'the token field keeps the token');
      assert.ok(hubAuth.includes('Bearer ' + token), `the child did not send the token: ${JSON.stringify(hubAuth)}`);
      // The pulls view lists the failed pull with its output and offers to resume it; resume
      // runs the same pull again, with the token typed again (the server kept none).
      const pullRow = '#pulls-table tr[data-repo="no-such-org/no-such-model"]';
      await page.waitForSelector(`${pullRow}[data-state="failed"] button[data-action="resume-pull"]`);
      assert.match(await page.textContent(`${pullRow} .ql-msg`), /no-such-org\/no-such-model/);
      const asked = hubAuth.length;
      await page.fill('#start-token', token);
      await page.$eval('#start-result', (e) => { e.textContent = ''; });
      await page.click(`${pullRow} button[data-action="resume-pull"]`);
      assert.match(await ended(), /pull exited with code 1: /);
      assert.ok(hubAuth.length > asked && hubAuth.slice(asked).every((a) => a === 'Bearer ' + token), JSON.stringify(hubAuth.slice(asked)));
      await page.waitForFunction((sel) => document.querySelectorAll(sel).length === 2, `${pullRow}[data-state="failed"]`);
      assert.equal(await page.inputValue('#start-token'), '', 'the token field keeps the token');
      // A pull that fails within the POST's first seconds is answered 422 with its output;
      // one that took longer is followed as a process: read that reply too.
      const row = await page.$('#procs-table tr[data-state="failed"]');
      const replies = [result, await (await fetch(`${baseUrl}/api/jobs`)).text()];
      if (row) replies.push(await (await fetch(`${baseUrl}/api/processes/${await row.getAttribute('data-pid')}`)).text());
      for (const r of replies) assert.ok(!r.includes(token), 'the token is in an API reply');
      assert.ok(!(await page.content()).includes(token), 'the token is on the page');
      // Every byte the server and its jobs wrote: job store (and its WAL), logs, outputs.
      const leaks = [];
      const scan = (dir) => {
        for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
          const f = path.join(dir, e.name);
          if (e.isDirectory()) { if (!e.name.startsWith('profile-')) scan(f); } else if (e.isFile() && fs.readFileSync(f).includes(token)) leaks.push(f);
        }
      };
      scan(work);
      assert.ok(fs.readdirSync(store + '.logs').some((f) => f.startsWith('pull-')), 'no pull log written');
      assert.deepEqual(leaks, [], 'the token was written to disk');
    } else {
      const started = /started job (\d+)/.exec(result);
      if (started) {
        await page.waitForFunction((id) => {
          const tr = document.querySelector(`#jobs-table tr[data-job-id="${id}"]`);
          return tr && ['done', 'failed', 'cancelled'].includes(tr.dataset.state);
        }, started[1], { timeout: JOB_TIMEOUT });
        const job = qlJson(['jobs', 'show', started[1]]);
        assert.equal(job.kind, kind);
        assert.equal(job.status, 'done', `${kind} job ${started[1]}: ${JSON.stringify(job).slice(0, 500)}`);
        if (kind === 'compare' || kind === 'audit') {
          // Their result is the table the command printed: shown from the job's row.
          await page.$eval('#job-output', (e) => { e.textContent = ''; });
          await page.click(`#jobs-table tr[data-job-id="${started[1]}"] button[data-action="output"]`);
          await page.waitForFunction(() => document.getElementById('job-output').textContent.length > 0);
          const printed = await page.textContent('#job-output');
          assert.match(printed, kind === 'compare' ? /KLD/ : new RegExp(`audit job ${started[1]}`), printed);
          if (kind === 'compare') await page.screenshot({ path: path.join(artifacts, 'app-compare.png') });
        }
      } else {
        assert.match(result, new RegExp(`^${kind} finished: `), result);
        assert.equal(await page.getAttribute('#procs-table tr[data-state]', 'data-state'), 'done');
      }
    }
    console.log(`# start form: ${kind} ok (${((Date.now() - t0) / 1000).toFixed(1)} s after the reply)`);
  }
  assert.ok(fs.statSync(path.join(store + '.outputs', 'all-kinds-q8.gguf')).size > 0);
  assert.ok(fs.statSync(path.join(store + '.outputs', 'all-kinds-calib.dat')).size > 0);
  await page.screenshot({ path: path.join(artifacts, 'app-all-kinds.png') });
  assert.deepEqual(errors, []);
  assert.deepEqual(outside, [], 'the app asked for something outside its server');
  await page.close();
});

// Issue 27, pull: a download that stopped is listed with its state and message, and Resume
// in the Pulls list continues it (the stand-in Hub sees a Range request for the second half
// only); the resumed pull reports its progress (300/300 kB) and its file is complete.
test('app: a pull that stopped resumes from the Pulls list', async () => {
  const page = await context.newPage();
  await page.setViewportSize({ width: 1280, height: 800 });
  const errors = [], outside = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => { if (!r.url().startsWith(baseUrl + '/')) outside.push(r.url()); });
  await page.goto(`${baseUrl}/#jobs`);
  await page.waitForSelector('body[data-ready="1"]');
  await page.selectOption('#start-kind', 'pull');
  await page.fill('#start-repo', RESUMABLE.repo);
  await page.$eval('#start-result', (e) => { e.textContent = ''; });
  await page.click('#start-submit');
  await page.waitForFunction(() => /exited|finished/.test(document.getElementById('start-result').textContent), null, { timeout: JOB_TIMEOUT });
  assert.match(await page.textContent('#start-result'), /pull exited with code 1: /);
  const row = `#pulls-table tr[data-repo="${RESUMABLE.repo}"]`;
  await page.waitForSelector(`${row}[data-state="failed"] button[data-action="resume-pull"]`);
  const blobs = path.join(work, 'hf-cache', `models--${RESUMABLE.repo.replace('/', '--')}`, 'blobs');
  const partial = path.join(blobs, RESUMABLE.sha256 + '.incomplete');
  assert.equal(fs.statSync(partial).size, RESUMABLE.bytes.length / 2, 'the first run should leave half the file');
  assert.deepEqual(RESUMABLE.ranges, ['', `bytes=${RESUMABLE.bytes.length / 2}-`]);
  await page.click(`${row} button[data-action="resume-pull"]`);
  await page.waitForSelector(`${row}[data-state="done"]`, { timeout: JOB_TIMEOUT });
  assert.equal(RESUMABLE.ranges.at(-1), `bytes=${RESUMABLE.bytes.length / 2}-`);
  assert.equal(RESUMABLE.ranges.length, 3, RESUMABLE.ranges.join());
  await page.waitForFunction((sel) => / 300\/300 kB/.test(document.querySelector(sel).textContent), `${row}[data-state="done"]`);
  assert.match(await page.textContent(`${row}[data-state="done"] .ql-progress-text`), /100 %/);
  // The stopped run shows how far it got; only the newest pull of a repository is resumable.
  assert.match(await page.textContent(`${row}[data-state="failed"]`), /50 % 150\/300 kB/);
  assert.equal(await page.$(`${row} button[data-action="resume-pull"]`), null);
  const file = path.join(work, 'hf-cache', `models--${RESUMABLE.repo.replace('/', '--')}`, 'snapshots', RESUMABLE.commit, 'model.safetensors');
  assert.ok(fs.readFileSync(file).equals(RESUMABLE.bytes), 'the resumed file differs from the Hub\'s');
  assert.equal(fs.existsSync(partial), false);
  await page.locator('section:has(#pulls-table)').screenshot({ path: path.join(artifacts, 'app-pulls.png') });
  assert.deepEqual(errors, []);
  assert.deepEqual(outside, [], 'the app asked for something outside its server');
  await page.close();
});
