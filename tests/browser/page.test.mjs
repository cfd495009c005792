// The search page in a real headless Chromium (Debian's package, driven by playwright-core),
// against a real `quarry serve` over the sample folder. cli/tests/browser.rs starts the server and
// runs this script:  node page.test.mjs URL SCREENSHOT_DIR   (CHROMIUM names the browser binary).
// It prints one JSON line of measurements and exits non-zero on the first failed check.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const [url, shots] = process.argv.slice(2);
assert.ok(url && shots, 'usage: node page.test.mjs URL SCREENSHOT_DIR');
const executablePath = process.env.CHROMIUM;
assert.ok(executablePath, 'CHROMIUM must name the browser binary');

// Without the background-networking flags Chromium keeps trying hosts a closed network refuses.
const browser = await chromium.launch({
  executablePath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const measured = {};
const consoleErrors = [];
const id = (t) => `[data-testid="${t}"]`;

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  // Each failed response's status, path and error code, read as it arrives (the browser may drop
  // a body it has been holding by the end of the test).
  const failed = [];
  page.on('response', (r) => {
    if (r.status() < 400) return;
    failed.push(r.json().catch(() => ({})).then((b) => `${r.status()} ${new URL(r.url()).pathname} ${b?.error?.code}`));
  });
  // The browser logs every failed response too; those are checked by URL below.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(url);
  await page.locator(id('empty-state')).waitFor();

  // Keyboard only: from the top of the page, Tab reaches the query box (after the skip link and the
  // navigation), typing searches once typing stops, and the answer leads.
  await page.locator(id('filters')).locator('select').first().waitFor();
  let tabs = 0;
  while (!(await page.evaluate(() => document.activeElement?.dataset?.testid === 'query-input'))) {
    await page.keyboard.press('Tab');
    assert.ok(++tabs < 15, 'Tab never reached the query box');
  }
  const focusRing = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(focusRing, 'none', 'the focused query box shows a focus ring');
  await page.keyboard.type('who is at risk of vitamin D deficiency', { delay: 20 });
  const first = page.locator(id('result-item')).first();
  await first.waitFor();
  await page.waitForFunction(() => window.quarryTiming.lastFirstResultAt !== null);
  assert.match(await first.innerText(), /vitamin-d\.md/, 'the vitamin D document leads');
  assert.ok((await first.locator('mark').count()) > 0, 'the passage is highlighted from the API spans');
  measured.keys_to_query_box = tabs;

  // Time to first result after typing stops, over several queries typed afresh.
  const times = [];
  for (const q of ['does salt raise blood pressure', 'which foods are high in fiber', 'omega-3 and the heart',
    'protein as we age', 'how much water should I drink', 'vitamin D and bones']) {
    await page.locator(id('query-input')).fill('');
    await page.keyboard.type(q, { delay: 15 });
    await page.waitForFunction(() => {
      const t = window.quarryTiming;
      return t.lastFirstResultAt !== null && t.lastFirstResultAt > t.lastInputAt;
    });
    times.push(await page.evaluate(() => window.quarryTiming.lastFirstResultAt - window.quarryTiming.lastInputAt));
  }
  times.sort((a, b) => a - b);
  measured.first_result_ms = times.map((t) => Math.round(t));
  measured.first_result_median_ms = Math.round(times[Math.floor(times.length / 2)]);

  // A search response whose request matches `want` (query, mode, top_k, cursor, filter).
  // A response whose body never arrived (the page aborted it for a newer search: typing the query
  // can start one just before a click does) does not count.
  const searched = (want) => page.waitForResponse(async (r) => {
    if (!r.url().endsWith('/v1/search')) return false;
    const body = r.request().postDataJSON() ?? {};
    const matches = Object.entries(want).every(([k, v]) =>
      (typeof v === 'function' ? v(body[k]) : JSON.stringify(body[k] ?? null) === JSON.stringify(v)));
    return matches && (await r.body().then(() => true, () => false));
  });
  // The rendered list holds exactly these results, in order (by their record links).
  const rendered = (results) => page.waitForFunction((ids) => {
    const links = [...document.querySelectorAll('[data-testid="result-item"] [data-testid="document-link"]')];
    return links.length === ids.length && links.every((l, i) => l.getAttribute('href').endsWith(ids[i]));
  }, results.map((r) => r.document_id));

  // Mode and filter: keyword mode over Markdown alone finds the Markdown document only.
  await page.locator(id('query-input')).fill('vitamin D');
  await page.locator(id('mode-keyword')).check();
  const format = page.locator(id('filter-format'));
  const option = await format.locator('option', { hasText: 'markdown' }).getAttribute('value');
  const filtered = searched({ query: 'vitamin D', mode: 'keyword', filter: { format: 'markdown' } });
  await format.selectOption(option);
  const onlyMarkdown = await (await filtered).json();
  assert.ok(onlyMarkdown.results.length > 0, 'the Markdown document matches');
  for (const r of onlyMarkdown.results) assert.match(r.source.uri, /vitamin-d\.md$/, 'only Markdown under the filter');
  await rendered(onlyMarkdown.results);
  await format.selectOption('');

  // Pages: five results a page, Next and Previous through the cursors.
  await page.locator(id('mode-hybrid')).check();
  await page.locator('details.options > summary').click();
  await page.locator(id('top-k')).selectOption('5');
  const query = 'nutrition and health';
  const firstPage = searched({ query, mode: 'hybrid', top_k: 5, cursor: null });
  await page.locator(id('query-input')).fill(query);
  await page.locator(id('search-submit')).click();
  const p1 = await (await firstPage).json();
  assert.equal(p1.results.length, 5);
  assert.ok(p1.next_cursor, 'the sample folder has more than five chunks');
  await rendered(p1.results);
  // Any cursor: typing the query may have started a first page of its own before the click, and
  // each first page seals its own cursor (the page keeps the one it rendered last).
  const secondPage = searched({ query, top_k: 5, cursor: (c) => typeof c === 'string' && c.length > 0 });
  await page.locator(id('next')).click();
  const p2 = await (await secondPage).json();
  assert.ok(p2.results.length > 0);
  assert.ok(!p2.results.some((r) => p1.results.some((q) => q.chunk_id === r.chunk_id)), 'page 2 repeats nothing');
  await rendered(p2.results);
  assert.ok(!(await page.locator(id('prev')).isDisabled()), 'Previous is offered on page 2');
  const backAgain = searched({ query, top_k: 5, cursor: null });
  await page.locator(id('prev')).click();
  const p1again = await (await backAgain).json();
  assert.deepEqual(p1again.results.map((r) => r.chunk_id), p1.results.map((r) => r.chunk_id), 'Previous is page 1');
  await rendered(p1.results);

  // A document's record opens from its result.
  await page.locator(id('document-link')).first().click();
  await page.getByText(/indexed/i).first().waitFor();

  // An API error reads as a sentence, not a code.
  await page.locator(id('query-input')).fill('x'.repeat(5000));
  await page.locator(id('search-submit')).click();
  await page.locator(id('error')).waitFor({ state: 'visible' });
  const error = await page.locator(id('error')).innerText();
  // A sentence first; the server's own message and code follow as details, for a bug report.
  assert.match(error.split('\n')[0], /^The query is too long\./, error);

  // Adding documents: files dropped on the page (a real drop event carrying a DataTransfer).
  await page.locator('a[data-view-link="batches"]').click();
  await page.locator(id('drop-zone')).waitFor({ state: 'visible' });
  const drop = async (files) => {
    const dt = await page.evaluateHandle((fs) => {
      const d = new DataTransfer();
      for (const f of fs) d.items.add(new File([f.text], f.name, { type: f.type }));
      return d;
    }, files);
    await page.locator(id('drop-zone')).dispatchEvent('drop', { dataTransfer: dt });
  };
  const upload = (name) => page.locator(id('upload-item'), { hasText: name });
  const settled = async (name, state) => {
    await page.waitForFunction(([n, s]) => [...document.querySelectorAll('[data-testid="upload-item"]')]
      .some((li) => li.querySelector('.name')?.textContent === n && li.dataset.state === s), [name, state],
    { timeout: 60_000 });
    return upload(name).innerText();
  };
  await drop([
    { name: 'tidal-lagoons.md', type: 'text/markdown',
      text: '# Tidal lagoons\n\nA tidal lagoon holds seawater behind a wall and releases it through turbines.\n' },
    { name: 'photo.png', type: 'image/png', text: 'not sent' },
    { name: 'vitamin-d.md', type: 'text/markdown', text: 'a second file of a taken name' },
  ]);
  assert.match(await settled('photo.png', 'refused'), /Not sent: Quarry does not read \.png files/);
  assert.match(await settled('vitamin-d.md', 'failed'), /already indexed/, 'a taken name reads as a sentence');
  assert.match(await settled('tidal-lagoons.md', 'done'), /Indexed as tidal-lagoons\.md/);
  await page.locator('a[data-view-link="search"]').click();
  await page.locator(id('mode-hybrid')).check();
  const tidal = searched({ query: 'tidal lagoon turbines' });
  await page.locator(id('query-input')).fill('tidal lagoon turbines');
  await page.locator(id('search-submit')).click();
  const found = await (await tidal).json();
  assert.match(found.results[0]?.source?.uri ?? '', /tidal-lagoons\.md$/, 'the dropped file is found first');
  await page.locator(id('result-item')).first().filter({ hasText: 'tidal-lagoons.md' }).waitFor();

  // A file that passes screening but cannot be read: its reason, in the batches view, and a retry.
  await page.locator('a[data-view-link="batches"]').click();
  await drop([{ name: 'scan.pdf', type: 'application/pdf', text: '%PDF-1.7 truncated' }]);
  assert.match(await settled('scan.pdf', 'failed'), /Not indexed: /);
  const card = page.locator(id('batch-item'), { hasText: 'Upload: scan.pdf' });
  await card.locator('.failures li', { hasText: 'scan.pdf' }).waitFor();
  const reason = await card.locator('.failures .reason').first().innerText();
  assert.ok(reason.length > 10, `a reason, not a code: ${reason}`);
  const retried = page.waitForResponse((r) => r.url().includes('/retry') && r.request().method() === 'POST');
  await card.getByRole('button', { name: 'Retry failed' }).click();
  assert.equal((await retried).status(), 202, 'the retry starts');
  // Batches started elsewhere are listed too (the samples' own, from `quarry ingest` or a watch, are not
  // batches; the two uploads' are): every card the server lists is on the page.
  const listed = await (await page.request.get(new URL('/v1/batches', url).href)).json();
  for (const b of listed.batches) await page.locator(`[data-batch-id="${b.batch_id}"]`).waitFor();
  await card.locator('.failures li', { hasText: 'scan.pdf' }).waitFor();
  await page.screenshot({ path: `${shots}/batches-desktop.png`, fullPage: true });
  await page.locator('a[data-view-link="search"]').click();

  // Screenshots: desktop, then phone width, which must not scroll sideways.
  await page.locator(id('query-input')).fill('who is at risk of vitamin D deficiency');
  await page.locator(id('search-submit')).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="result-item"]').length > 0
    && document.querySelector('[data-testid="error"]').hidden);
  await page.screenshot({ path: `${shots}/search-desktop.png` });
  await page.setViewportSize({ width: 375, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the phone-width page scrolls sideways by ${overflow}px`);
  await page.screenshot({ path: `${shots}/search-phone.png` });

  assert.deepEqual(consoleErrors, [], 'no errors in the console');
  // Typing the long query and submitting it may both ask; the taken name is refused; nothing else may fail.
  const codes = await Promise.all(failed);
  // (A request the click aborted may have answered too; its body is gone, its status is not.)
  assert.ok(codes.includes('400 /v1/search query_too_long'), `failed: ${codes}`);
  assert.ok(codes.includes('409 /v1/uploads file_exists'), `failed: ${codes}`);
  // The new file's record is polled until the worker has written it.
  const expected = ['400 /v1/search query_too_long', '400 /v1/search undefined', '409 /v1/uploads file_exists'];
  assert.ok(codes.every((c) => expected.includes(c) || /^404 \/v1\/documents\/[0-9a-f]{32} document_not_found$/.test(c)),
    `failed: ${codes}`);
  console.log(JSON.stringify(measured));
} finally {
  await browser.close();
}
