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
  const failed = [];
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${new URL(r.url()).pathname}`); });
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

  // Mode and filter: keyword mode over Markdown alone finds the Markdown document only.
  await page.locator(id('query-input')).fill('vitamin D');
  await page.locator(id('mode-keyword')).check();
  const format = page.locator(id('filter-format'));
  const option = await format.locator('option', { hasText: 'markdown' }).getAttribute('value');
  const answered = page.waitForResponse((r) => r.url().endsWith('/v1/search'));
  await format.selectOption(option);
  const request = JSON.parse((await answered).request().postData());
  assert.equal(request.mode, 'keyword');
  assert.deepEqual(request.filter, { format: 'markdown' });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="result-item"]').length > 0);
  for (const text of await page.locator(id('result-item')).allInnerTexts()) {
    assert.match(text, /vitamin-d\.md/, 'only Markdown results under the filter');
  }
  await format.selectOption('');

  // Pages: five results a page, Next and Previous through the cursors.
  await page.locator(id('mode-hybrid')).check();
  await page.locator('details.options > summary').click();
  await page.locator(id('top-k')).selectOption('5');
  await page.locator(id('query-input')).fill('nutrition and health');
  await page.locator(id('search-submit')).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="result-item"]').length === 5);
  const page1 = await page.locator(id('result-item')).allInnerTexts();
  await page.locator(id('next')).click();
  await page.waitForFunction((before) => {
    const now = [...document.querySelectorAll('[data-testid="result-item"]')].map((e) => e.innerText);
    return now.length > 0 && now[0] !== before;
  }, page1[0]);
  assert.ok(!(await page.locator(id('prev')).isDisabled()), 'Previous is offered on page 2');
  await page.locator(id('prev')).click();
  await page.waitForFunction((want) => document.querySelector('[data-testid="result-item"]')?.innerText === want, page1[0]);

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
  // Typing the long query and submitting it may both ask; nothing else may fail.
  assert.ok(failed.length > 0 && failed.every((f) => f === '400 /v1/search'), `failed requests: ${failed}`);
  console.log(JSON.stringify(measured));
} finally {
  await browser.close();
}
