// What the browser tests share (imported by *.test.mjs, not a test itself): where the
// repository, the build, the shared test data and chromium are, and chromium's launch.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const build = path.resolve(repo, process.env.QL_BUILD_DIR || 'build');
export const shared = process.env.QUANTLENS_SHARED || path.resolve(repo, '../shared');
export const chromiumPath = process.env.QL_CHROMIUM || '/usr/bin/chromium';
export const artifacts = path.join(build, 'test-artifacts', 'browser');
export const quantlens = path.join(build, 'quantlens');

// Headless chromium with a fresh profile under `work`; the flags keep it from calling home
// (updates, sync, QUIC probes).
export function launchChromium(work) {
  return chromium.launchPersistentContext(fs.mkdtempSync(path.join(work, 'profile-')), {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// Opens the self-contained report `file` in `context` with the network off, runs
// check(page), saves a screenshot as artifacts/SCREENSHOT, and fails on any page error or any
// request the report attempted (other than file/data/blob URLs); the network comes back on
// and the page closes whatever happened.
export async function checkReportOffline(context, file, screenshot, check) {
  const page = await context.newPage();
  const requests = [], errors = [];
  page.on('request', (r) => { if (!/^(file|data|blob):/.test(r.url())) requests.push(r.url()); });
  page.on('pageerror', (e) => errors.push(e.message));
  await context.setOffline(true);  // and any request that is attempted is recorded above
  try {
    await page.goto('file://' + file, { timeout: 90000 });
    await check(page);
    await page.screenshot({ path: path.join(artifacts, screenshot), fullPage: true });
    assert.deepEqual(errors, []);
    assert.deepEqual(requests, [], 'the report made network requests');
  } finally {
    await context.setOffline(false);
    await page.close();
  }
}
