// End-to-end: the real resume-server binary and Debian's Chromium, driven the
// way a viewer would. Watches a title, leaves, comes back to the same spot;
// finishes a title and finds it restarting; checks positions are per viewer;
// finishes an episode and finds the next one "Up next"; marks a title watched
// and unwatched. Throughout, it watches the browser itself: no URL Chromium
// requests (pages, fetches, WebSockets) may carry a token, and no page may
// break its Content Security Policy.
//
// Env: RESUME_SERVER_BIN (default ../../target/debug/resume-server),
//      CHROMIUM_BIN (default /usr/bin/chromium),
//      E2E_BASE_URL (use a server that is already running instead),
//      UPDATE_DOCS_SCREENSHOT=1 (refresh docs/demo.png).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createWriteStream, existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const artifacts = path.join(repoRoot, 'target/e2e');
const serverBin = path.resolve(here, process.env.RESUME_SERVER_BIN ?? '../../target/debug/resume-server');

// Deadlines: generous for a 2-core CI box, short enough to fail fast.
const STARTUP_MS = 30_000;
const STEP_MS = 20_000;

let server; // { baseUrl, stop() }
let browser;
const problems = []; // console errors/warnings, page errors and CSP violations, from every page
const requestedUrls = []; // every URL Chromium requested, WebSockets included
const tokens = new Set(); // every demo token a page logged in with

before(async () => {
  await mkdir(artifacts, { recursive: true });
  server = process.env.E2E_BASE_URL
    ? { baseUrl: process.env.E2E_BASE_URL.replace(/\/$/, ''), stop: async () => {} }
    : await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic',
    ],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a viewer resumes where they stopped, per title and per viewer', async (t) => {
  // Each step builds on the last; after a failure the rest would only add noise.
  let failed = false;
  const step = (name, body) =>
    t.test(name, { skip: failed && 'an earlier step failed' }, async () => {
      try {
        await body();
      } catch (error) {
        failed = true;
        throw error;
      }
    });

  let stoppedAt;
  let page;

  await step('alice watches The Clock for a while, then closes the tab', async () => {
    const first = await openPage();
    await logIn(first, 'alice');
    await play(first, 'clock');
    await expectStatus(first, 'Starting from the beginning');
    await first.waitForFunction(() => document.querySelector('[data-testid=video]').currentTime >= 5,
      null, { timeout: STEP_MS });
    stoppedAt = await currentTime(first);
    await first.close({ runBeforeUnload: true });
    // The server saves when the socket closes; wait until it has, rather than
    // racing the next page's read.
    await waitForSavedPosition('alice', 'clock', (p) => p >= stoppedAt - 1);
  });

  await step('alice comes back and The Clock resumes where she left it', async () => {
    page = await openPage();
    await logIn(page, 'alice');
    const resumeCard = page.locator('[data-testid=continue-item][data-movie-id=clock]');
    await resumeCard.waitFor({ timeout: STEP_MS });
    await page.screenshot({ path: path.join(artifacts, 'catalog.png'), fullPage: true });

    await resumeCard.getByTestId('play').click();
    await expectStatus(page, 'Resumed at');
    const resumedAt = await currentTime(page);
    assert.ok(Math.abs(resumedAt - stoppedAt) <= 2,
      `resumed at ${resumedAt.toFixed(2)} s, but playback stopped at ${stoppedAt.toFixed(2)} s`);
    await page.getByTestId('saved-text').getByText('Saved').waitFor({ timeout: STEP_MS });
    await page.locator('[data-testid=connection][data-state=live]').waitFor({ timeout: STEP_MS });
    await page.screenshot({ path: path.join(artifacts, 'player.png'), fullPage: true });
    if (process.env.UPDATE_DOCS_SCREENSHOT === '1') {
      await mkdir(path.join(repoRoot, 'docs'), { recursive: true });
      await copyFile(path.join(artifacts, 'player.png'), path.join(repoRoot, 'docs/demo.png'));
    }
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(artifacts, 'phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await step('a title watched past 95 % starts from the beginning next time', async () => {
    await play(page, 'countdown');
    await expectStatus(page, 'Starting from the beginning');
    // What a viewer dragging the scrubber near the end does.
    await page.evaluate(() => { document.querySelector('[data-testid=video]').currentTime = 57.5; });
    await page.waitForFunction(() => document.querySelector('[data-testid=video]').ended,
      null, { timeout: STEP_MS });
    await page.locator('[data-testid=catalog-item][data-movie-id=countdown][data-watched=true]')
      .waitFor({ timeout: STEP_MS });
    await play(page, 'countdown');
    await expectStatus(page, 'Starting from the beginning');
    assert.ok(await currentTime(page) < 1, 'a finished title restarts from the beginning');
  });

  await step("bob's positions are his own (and the keyboard is enough)", async () => {
    await page.getByTestId('switch-user').click();
    await page.getByTestId('login-name').fill('bob');
    await page.getByTestId('login-name').press('Enter');
    await waitForCatalog(page, 'bob');
    tokens.add(await page.evaluate(() => sessionStorage.getItem('resume.token')));
    assert.equal(await page.getByTestId('continue-item').count(), 0, 'bob has nothing to continue');
    await page.locator('[data-testid=catalog-item][data-movie-id=clock]').getByTestId('play').focus();
    await page.keyboard.press('Enter');
    await expectStatus(page, 'Starting from the beginning');
    assert.ok(await currentTime(page) < 1, "bob's Clock starts from the beginning");
    await page.close({ runBeforeUnload: true });
  });
});

test('a finished episode puts the next one in continue watching, as Up next', async () => {
  const page = await openPage();
  await logIn(page, 'dana');
  const shelf = page.locator('[data-testid=series][data-series-id=night-shift]');
  await shelf.getByRole('heading', { name: 'Night Shift', exact: true }).waitFor({ timeout: STEP_MS });
  const first = shelf.locator('[data-testid=season][data-season="1"] [data-movie-id=night-shift-s1e1]');
  assert.equal(await first.getByTestId('episode-label').textContent(), 'S1E1');
  assert.equal(await first.getByTestId('card-title').textContent(), 'Arrival');

  await play(page, 'night-shift-s1e1');
  await page.getByTestId('player-title').getByText('Night Shift S1E1 · Arrival').waitFor({ timeout: STEP_MS });
  await expectStatus(page, 'Starting from the beginning');
  // Drag the scrubber near the end and let the episode play out, so that the
  // player itself reports `ended`.
  await page.evaluate(() => { document.querySelector('[data-testid=video]').currentTime = 18.5; });
  await page.waitForFunction(() => document.querySelector('[data-testid=video]').ended,
    null, { timeout: STEP_MS });
  await page.locator('[data-testid=catalog-item][data-movie-id=night-shift-s1e1][data-watched=true]')
    .waitFor({ timeout: STEP_MS });

  await page.getByTestId('player-close').click();
  const upNext = page.locator(
    '[data-testid=continue-item][data-kind=up_next][data-movie-id=night-shift-s1e2]',
  );
  await upNext.waitFor({ timeout: STEP_MS });
  await page.locator('[data-testid=library][aria-busy=false]').waitFor({ timeout: STEP_MS });
  assert.equal(await upNext.getByTestId('up-next-badge').textContent(), 'Up next');
  assert.equal(await upNext.getByTestId('episode-label').textContent(), 'Night Shift · S1E2');
  assert.equal(await upNext.getByTestId('card-title').textContent(), 'Midnight');
  const seriesRows = page.locator('[data-testid=continue-item][data-movie-id^=night-shift-]');
  assert.equal(await seriesRows.count(), 1, 'one continue-watching row per series');
  await page.screenshot({ path: path.join(artifacts, 'up-next.png'), fullPage: true });

  await upNext.getByTestId('play').click();
  await page.getByTestId('player-title').getByText('Night Shift S1E2 · Midnight').waitFor({ timeout: STEP_MS });
  await expectStatus(page, 'Starting from the beginning');
  assert.match(await page.evaluate(() => document.querySelector('[data-testid=video]').currentSrc),
    /\/media\/night-shift-s1e2\.mp4$/);
  await page.waitForFunction(() => document.querySelector('[data-testid=video]').currentTime >= 1,
    null, { timeout: STEP_MS });
  await page.locator('[data-testid=connection][data-state=live]').waitFor({ timeout: STEP_MS });
  await page.close({ runBeforeUnload: true });
});

test('a viewer marks a title watched, then unwatched', async () => {
  const page = await openPage();
  await logIn(page, 'erin');
  const card = (watched) =>
    page.locator(`[data-testid=catalog-item][data-movie-id=testcard][data-watched=${watched}]`);
  await card(false).waitFor({ timeout: STEP_MS });
  assert.equal(await card(false).getByTestId('toggle-watched').textContent(), 'Mark watched');

  await card(false).getByTestId('toggle-watched').click();
  await card(true).waitFor({ timeout: STEP_MS });
  assert.match(await card(true).getByTestId('card-meta').textContent(), /Watched/);
  assert.equal(await card(true).getByTestId('toggle-watched').textContent(), 'Mark unwatched');
  assert.equal(await card(true).getByTestId('play').textContent(), 'Play again');
  // The card was drawn anew; the button that was pressed keeps the focus.
  await page.waitForFunction(
    () => document.activeElement?.matches('[data-movie-id=testcard] [data-testid=toggle-watched]'),
    null, { timeout: STEP_MS });
  assert.equal((await progressOf(page, 'testcard'))?.watched, true, 'the server says watched');

  await card(true).getByTestId('toggle-watched').click();
  await card(false).waitFor({ timeout: STEP_MS });
  assert.doesNotMatch(await card(false).getByTestId('card-meta').textContent(), /Watched/);
  assert.equal(await card(false).getByTestId('toggle-watched').textContent(), 'Mark watched');
  assert.equal(await card(false).getByTestId('play').textContent(), 'Play');
  const saved = await progressOf(page, 'testcard');
  assert.equal(saved?.watched ?? false, false, 'the server says unwatched');
  assert.equal(saved?.position_seconds ?? 0, 0, 'an unwatched title starts from the beginning');
  await page.close({ runBeforeUnload: true });
});

test('the Content Security Policy blocks an injected inline script, and the test sees it', async () => {
  // Proves the violation listener of openPage works: a page that obeys its
  // policy reports nothing, but only if a broken rule would be reported.
  const page = await browser.newPage();
  const violations = [];
  await watchCsp(page, (violation) => violations.push(violation));
  const response = await page.goto(`${server.baseUrl}/`);
  const policy = response.headers()['content-security-policy'] ?? '';
  assert.match(policy, /script-src 'self'/);
  assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval/);
  assert.equal(response.headers()['x-content-type-options'], 'nosniff');
  assert.equal(response.headers()['referrer-policy'], 'no-referrer');
  await page.evaluate(() => {
    const script = document.createElement('script');
    script.textContent = 'window.inlineScriptRan = true;';
    document.head.append(script);
  });
  await until(async () => violations.length > 0, STEP_MS, () => 'no violation was reported');
  assert.equal(await page.evaluate(() => window.inlineScriptRan === true), false, 'the inline script ran');
  assert.match(violations[0], /script-src/);
  await page.close();
});

// Last, so that it covers the pages of every test before it.
test('across every page', async (t) => {
  await t.test('no page logged an error or warning, or broke its Content Security Policy', () => {
    assert.deepEqual(problems, []);
  });

  await t.test('no URL the browser requested carries a token', () => {
    assert.ok(tokens.size >= 2, `logged in as alice and bob (${tokens.size} tokens seen)`);
    const leaks = requestedUrls.filter(
      (url) => /access_token|bearer/i.test(url) || [...tokens].some((token) => url.includes(token)),
    );
    assert.deepEqual(leaks, [], 'URLs that carry a token');
    const sessions = requestedUrls.filter((url) => url.includes('/api/v1/stream/session?'));
    assert.ok(sessions.length >= 3, `sessions were opened: ${JSON.stringify(sessions)}`);
    for (const url of sessions) {
      assert.match(url, /^ws:.*[?&]ticket=[A-Za-z0-9_-]{43}(&|$)/, 'a session opens with a ticket');
    }
  });
});

// ---- page helpers ------------------------------------------------------------

async function openPage() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning'
      || /content security policy/i.test(message.text())) {
      problems.push(`console ${message.type()}: ${message.text()} (${message.location().url})`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('request', (request) => requestedUrls.push(request.url()));
  page.on('websocket', (socket) => requestedUrls.push(socket.url()));
  await watchCsp(page, (violation) => problems.push(`CSP violation: ${violation}`));
  await page.goto(`${server.baseUrl}/`);
  return page;
}

/** Calls `report` with every Content Security Policy violation the page sees. */
async function watchCsp(page, report) {
  await page.exposeFunction('reportCspViolation', report);
  // Init scripts are the test's, not the page's: the policy does not apply to them.
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      window.reportCspViolation(
        `${event.violatedDirective} blocked ${event.blockedURI || 'inline'} at ${event.sourceFile}:${event.lineNumber}`,
      );
    });
  });
}

async function logIn(page, name) {
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-submit').click();
  await waitForCatalog(page, name);
  tokens.add(await page.evaluate(() => sessionStorage.getItem('resume.token')));
}

async function waitForCatalog(page, name) {
  await page.getByTestId('current-user').getByText(name, { exact: true }).waitFor({ timeout: STEP_MS });
  await page.locator('[data-testid=library][aria-busy=false]').waitFor({ timeout: STEP_MS });
}

async function play(page, movieId) {
  await page.locator(`[data-testid=catalog-item][data-movie-id=${movieId}]`).getByTestId('play').click();
}

async function expectStatus(page, text) {
  await page.getByTestId('status-text').getByText(text).waitFor({ timeout: STEP_MS });
}

function currentTime(page) {
  return page.evaluate(() => document.querySelector('[data-testid=video]').currentTime);
}

// ---- server helpers ----------------------------------------------------------

async function waitForSavedPosition(user, movieId, accept) {
  const { token } = await apiJson('/api/v1/demo/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: user }),
  });
  let last;
  await until(async () => {
    const response = await fetch(`${server.baseUrl}/api/v1/progress/${movieId}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    if (response.status === 404) return false;
    last = await response.json();
    return accept(last.position_seconds);
  }, STEP_MS, () => `${user}'s position in ${movieId} was not saved (last seen: ${JSON.stringify(last)})`);
}

/** The page's viewer's saved progress on a title, asked with the page's token; null if none. */
async function progressOf(page, movieId) {
  const token = await page.evaluate(() => sessionStorage.getItem('resume.token'));
  const response = await fetch(`${server.baseUrl}/api/v1/progress/${movieId}`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (response.status === 404) return null;
  assert.equal(response.status, 200, `GET /api/v1/progress/${movieId}`);
  return response.json();
}

async function apiJson(route, init) {
  const response = await fetch(`${server.baseUrl}${route}`, init);
  assert.ok(response.ok, `${init?.method ?? 'GET'} ${route}: HTTP ${response.status}`);
  return response.json();
}

async function until(check, timeoutMs, describe) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(describe());
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function freePort() {
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function startServer() {
  if (!existsSync(serverBin)) {
    throw new Error(`no server binary at ${serverBin}: run \`cargo build\` or set RESUME_SERVER_BIN`);
  }
  const port = await freePort();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'resume-e2e-'));
  const logPath = path.join(artifacts, 'server.log');
  const log = createWriteStream(logPath);
  const env = { ...process.env };
  delete env.RESUME_JWT_SECRET; // demo mode: the page logs in by name
  delete env.RESUME_JWT_PUBLIC_KEY;
  const child = spawn(serverBin, [], {
    cwd: repoRoot,
    env: {
      ...env,
      RESUME_LISTEN: `127.0.0.1:${port}`,
      RESUME_DATA_DIR: dataDir,
      RESUME_STATIC_DIR: path.join(repoRoot, 'static'),
      RESUME_FLUSH_INTERVAL_MS: '1000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const exited = new Promise((resolve) => child.once('exit', resolve));

  const baseUrl = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    await until(async () => {
      if (child.exitCode !== null) throw new Error('server exited');
      return (await fetch(`${baseUrl}/healthz`)).status === 200;
    }, STARTUP_MS, () => `server did not answer GET /healthz with 200 within ${STARTUP_MS} ms` +
      ` (exit code ${child.exitCode}); see ${logPath}`);
  } catch (error) {
    await stop();
    throw error;
  }
  return { baseUrl, stop };
}
