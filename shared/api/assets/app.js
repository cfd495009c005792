/* Quarry search page: plain ES2020, no dependencies, no build step.
 *
 * It talks to the API on this page's origin (or the one <meta name="quarry-api-base"> names): the
 * server sends no CORS headers, so serve the page from the API's origin or behind the same proxy.
 * docs/PAGE.md describes it; docs/API.md has every field and error code used here.
 */
'use strict';

(() => {
  // ---- Configuration ----

  const API_BASE = (document.querySelector('meta[name="quarry-api-base"]')?.content || '').replace(/\/+$/, '');
  // The pause that counts as "typing stopped". Issue 18's budget is 100 ms from the last keystroke
  // to the first result painted: 50 ms of pause, then a search (about 10 to 20 ms locally) and a
  // paint. Stale requests are aborted and the server caches query vectors, so searching between
  // a fast typist's keystrokes costs little.
  const DEBOUNCE_MS = 50;
  const POLL_MS = 2000;
  const MAX_TRACKED_BATCHES = 20;
  // The server caps requests at once (server.max_concurrency, 64 by default); a big drop of files
  // must not use them all and starve searches.
  const UPLOAD_CONCURRENCY = 2;
  const KEY_STORAGE = 'quarry.apiKey';       // sessionStorage: gone when the tab closes
  // localStorage: the labels of batches started here ("Upload: notes.md"); GET /v1/batches lists
  // every recent batch, including those started elsewhere.
  const BATCH_STORAGE = 'quarry.batches';
  const HIDDEN_STORAGE = 'quarry.hiddenBatches';  // localStorage: ids removed from the list here
  const RETRY_PATH = (id) => `/v1/batches/${id}/retry`;
  // How long an upload's document is watched for its outcome (GET /v1/documents/{id}).
  const DOCUMENT_WATCH_MS = 5 * 60 * 1000;
  // Extensions the server reads; the page checks them first so a
  // user learns at once, not from a batch failure later.
  const ACCEPTED_EXT = ['txt', 'text', 'log', 'rst', 'adoc', 'md', 'markdown', 'mdown', 'mkd', 'html', 'htm',
    'xhtml', 'pdf', 'docx', 'csv', 'tsv', 'json', 'jsonl', 'ndjson'];
  // Filter fields the API knows at top level; other metadata is filtered as `user.<name>` (docs/API.md).
  const BUILTIN_FIELDS = new Set(['key', 'format', 'title']);

  // Every `code` the API answers (docs/API.md). `network` is the page's own.
  const ERROR_TEXT = {
    invalid_request: 'The server could not read the request.',
    empty_query: 'Type some words to search for.',
    query_too_long: 'The query is too long. Shorten it and try again.',
    invalid_top_k: 'Results per page must be between 1 and 100.',
    invalid_min_score: 'The minimum score must be a number from 0 to 1.',
    unsupported_mode: 'This server offers semantic search only.',
    filter_unknown_operator: 'A filter uses an operator the server does not know.',
    filter_wrong_type: 'A filter value has the wrong type for its test.',
    filter_empty: 'A filter is empty.',
    filter_too_deep: 'The filter is nested too deeply.',
    filter_too_large: 'The filter has too many conditions or values.',
    invalid_cursor: 'That page of results is no longer valid (the server may have restarted). Showing the first page again.',
    too_deep: 'This is as deep as results go. Refine the query to see other documents.',
    invalid_document_id: 'That document id is not valid.',
    empty_batch: 'Give a key prefix, some keys, or both.',
    too_many_keys: 'Too many keys for one batch (up to 10,000). Split the list.',
    invalid_key: 'One of the keys is empty. Remove blank entries.',
    unauthorized: 'This server needs an API key. Enter it in the “API key” form at the top of the page.',
    not_found: 'The server could not find that. It may have expired, or this server does not offer it yet.',
    document_not_found: 'That document is no longer in the index.',
    request_too_large: 'The request is larger than the server accepts.',
    overloaded: 'The server is busy. Try again in a moment.',
    unavailable: 'A service behind the server is busy. Try again in a moment.',
    not_ready: 'The server is not ready yet. Try again in a moment.',
    starting: 'The server is still starting up. Try again in a moment.',
    internal: 'The server hit an internal error; its log has the details.',
    invalid_values: 'The filter menus asked for too many values.',  // GET /v1/fields?values= (the page sends none)
    invalid_limit: 'The batch list asked for too many batches.',
    nothing_to_retry: 'No document of this batch failed, so there is nothing to retry.',
    network: 'Could not reach the Quarry server. Check that it is running and your connection works.',
    // Uploads (POST /v1/uploads, PUT /v1/files/{name}); the screening codes are also what batches
    // record for a refused file.
    empty_file: 'The file is empty.',
    file_too_large: 'The file is over the server’s size limit.',
    unsupported_type: 'Quarry does not read this kind of file.',
    invalid_name: 'The file name cannot be used: rename the file (no slashes, not starting with a dot).',
    file_exists: 'A file with this name is already indexed. Rename the new file to add it beside the old one.',
    uploads_unavailable: 'This server does not take files from the page.',
    upload_rejected: 'Storage refused the file. The upload link may have expired; try again.',
  };

  // Read by browser tests: the last keystroke in the query box, a search starting, and its first
  // result painted (performance.now() milliseconds).
  const timing = { lastInputAt: null, lastQueryStartedAt: null, lastFirstResultAt: null };
  window.quarryTiming = timing;

  // ---- Small helpers ----

  const $ = (id) => document.getElementById(id);
  let uid = 0;  // for element ids: the same document can appear twice on a page (two chunks)

  /** Creates an element; children are nodes or strings (strings become text, never HTML). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === false || v == null) continue;
      if (k === 'class') node.className = v;
      else if (k === 'hidden') node.hidden = true;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    node.append(...children.filter((c) => c != null && c !== false));
    return node;
  }

  const str = (v) => (typeof v === 'string' && v.trim() ? v.trim() : '');
  const baseName = (path) => str(path).replace(/[/\\]+$/, '').split(/[/\\]/).pop() || '';
  const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? '' : 's'}`;

  function fmtBytes(n) {
    if (!Number.isFinite(n)) return '—';
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];  // decimal, as the server's limits are (50 MB = 50 × 1000²)
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
  }

  function fmtDuration(s) {
    if (!Number.isFinite(s)) return '—';
    s = Math.max(0, Math.round(s));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.round(s / 60)} min`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  const fmtTime = (ms) => (Number.isFinite(ms) ? new Date(ms).toLocaleString() : '—');

  function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(resolve, ms);
      signal?.addEventListener('abort', () => {
        clearTimeout(t);
        reject(new DOMException('Aborted', 'AbortError'));
      }, { once: true });
    });
  }

  const isAbort = (e) => e?.name === 'AbortError';

  // ---- API access ----

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    // The server strips exactly "Bearer " (one space, that case) before comparing.
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  /**
   * One API call. Resolves to the parsed JSON body; rejects with an ApiError carrying the API's
   * {error: {code, message}} (or `network`), or with an AbortError.
   * `json` sends a JSON body; `body` sends raw bytes (a File) with `contentType`.
   */
  async function api(method, path, opts = {}, retried = false) {
    const { json, body, contentType, signal } = opts;
    const headers = { Accept: 'application/json', ...authHeaders() };
    let payload;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(json);
    } else if (body !== undefined) {
      headers['Content-Type'] = contentType || 'application/octet-stream';
      payload = body;
    }
    let res;
    try {
      res = await fetch(API_BASE + path, { method, headers, body: payload, signal });
    } catch (e) {
      if (isAbort(e)) throw e;
      throw new ApiError(0, 'network', e?.message || 'network error');
    }
    let data = null;
    try {
      const text = await res.text();
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      if (isAbort(e)) throw e;
      // A proxy's HTML error page, say: fall through with no body.
    }
    if (res.ok) return data;

    const code = str(data?.error?.code) || `http_${res.status}`;
    const message = str(data?.error?.message) || res.statusText || '';
    if (res.status === 401) auth.required();
    // Every 503 carries Retry-After: 1. One quiet retry rides out a brief overload;
    // all routes used here are safe to repeat (POST /v1/batches is idempotent by design).
    if (res.status === 503 && !retried && (code === 'overloaded' || code === 'unavailable')) {
      const wait = Math.min(5, Number(res.headers.get('Retry-After')) || 1) * 1000;
      await sleep(wait, signal);
      return api(method, path, opts, true);
    }
    throw new ApiError(res.status, code, message);
  }

  /** A plain-English sentence for an error, and the server's own words as detail. */
  function describeError(e) {
    if (!(e instanceof ApiError)) return { sentence: 'Something went wrong in the page.', detail: String(e?.message || e) };
    const known = ERROR_TEXT[e.code];
    if (known) return { sentence: known, detail: e.code === 'network' ? '' : `${e.message} (${e.code})` };
    // Unknown code: the API's message is the best explanation there is.
    const status = e.status ? ` (HTTP ${e.status})` : '';
    return { sentence: e.message ? `The server said: ${e.message}` : `The request failed${status}.`, detail: `${e.code}${status}` };
  }

  function errorContent(e) {
    const { sentence, detail } = describeError(e);
    return [el('p', {}, sentence), detail ? el('p', { class: 'detail' }, `Details: ${detail}`) : null];
  }

  function showError(box, e) {
    box.replaceChildren(...errorContent(e).filter(Boolean));
    box.hidden = false;
  }

  function hideError(box) {
    box.hidden = true;
    box.replaceChildren();
  }

  // A document's failure: the server's message is already written for people (e.g. "the PDF has no
  // text layer on any of its 3 pages (scanned images need OCR, which Quarry does not do)").
  const failureText = (f) => `${str(f?.message) || ERROR_TEXT[f?.code] || 'Failed.'} (${f?.code || 'no code'})${f?.retryable ? '; a retry may help' : ''}`;

  // ---- Elements ----

  const els = {
    authToggle: $('auth-toggle'), authForm: $('auth'), authMsg: $('auth-msg'), apiKey: $('api-key'),
    authForget: $('auth-forget'),
    form: $('search-form'), q: $('q'), filters: $('filters'), filterList: $('filter-list'),
    topK: $('top-k'), minScore: $('min-score'), semanticHl: $('semantic-hl'),
    error: $('search-error'), region: $('results-region'), resultsHeading: $('results-h'),
    status: $('search-status'), loading: $('loading'), empty: $('results-empty'), results: $('results'),
    prev: $('prev'), next: $('next'), pageLabel: $('page-label'),
    views: { search: $('view-search'), batches: $('view-batches') },
    dropZone: $('drop-zone'), fileInput: $('file-input'), fileHint: $('file-hint'), uploads: $('uploads'),
    startForm: $('start-form'), prefix: $('prefix'), keys: $('keys'), startResult: $('start-result'),
    watchForm: $('watch-form'), watchId: $('watch-id'),
    batchList: $('batch-list'), batchesEmpty: $('batches-empty'),
  };

  // ---- Access (API key) ----

  const auth = {
    required() {
      const had = !!sessionStorage.getItem(KEY_STORAGE);
      els.authMsg.textContent = had
        ? 'The API key in use was not accepted. Enter a valid key.'
        : 'This server needs an API key. It is kept for this browser tab only.';
      auth.show(false);
    },
    show(focus) {
      els.authForm.hidden = false;
      els.authToggle.setAttribute('aria-expanded', 'true');
      // Only on request: a 401 arriving while the user types must not steal the focus.
      if (focus) els.apiKey.focus();
    },
    hide() {
      els.authForm.hidden = true;
      els.authToggle.setAttribute('aria-expanded', 'false');
    },
  };

  els.authToggle.addEventListener('click', () => (els.authForm.hidden ? auth.show(true) : auth.hide()));
  els.authForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = els.apiKey.value.trim();
    if (!key) { els.apiKey.focus(); return; }
    sessionStorage.setItem(KEY_STORAGE, key);
    els.apiKey.value = '';
    auth.hide();
    els.q.focus();
    retryAfterAuth();
  });
  els.authForget.addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    els.apiKey.value = '';
    els.authMsg.textContent = 'Key forgotten. Enter a key to use one again.';
    els.apiKey.focus();
  });

  /** With a new key, redo whatever needed one. */
  function retryAfterAuth() {
    if (!fields.loaded) loadFields();
    if (!uploads.loaded) loadUploads();
    if (els.q.value.trim()) runSearch('same');
    if (currentView === 'batches') refreshAllBatches();
  }

  // ---- Filters (GET /v1/fields) ----

  const fields = { loaded: false, list: [] };

  // The route names fields as filters do ("format", "user.year": docs/API.md, GET /v1/fields); a bare
  // name that is not a built-in field (the first sketch of the route said "year") is user metadata.
  const filterKey = (name) => (BUILTIN_FIELDS.has(name) || name.startsWith('user.') ? name : `user.${name}`);
  const fieldLabel = (name) => {
    const bare = name.replace(/^user\./, '').replace(/[_.]+/g, ' ');
    return bare.charAt(0).toUpperCase() + bare.slice(1);
  };
  // The filter language takes strings, numbers and booleans only.
  const isScalar = (v) => typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));

  async function loadFields() {
    let data;
    try {
      data = await api('GET', '/v1/fields');
    } catch (e) {
      // No filters is a working page: hide them and keep searching.
      els.filters.hidden = true;
      return;
    }
    fields.loaded = true;
    fields.list = [];
    els.filterList.replaceChildren();
    // `available: false` (S3 Vectors cannot list its metadata) comes with an empty list: no filters.
    const list = data?.available !== false && Array.isArray(data?.fields) ? data.fields : [];
    list.forEach((f, i) => {
      const name = str(f?.name);
      const values = (Array.isArray(f?.values) ? f.values : []).filter((v) => isScalar(v?.value));
      if (!name || !values.length) return;
      const id = `filter-${i}`;
      const select = el('select', { id, 'data-testid': `filter-${name}`, 'data-field': name });
      select.append(el('option', { value: '' }, 'Any'));
      values.forEach((v, j) => {
        // Each value counts `documents` (docs/API.md, GET /v1/fields).
        const n = Number.isFinite(v.documents) ? v.documents : v.count;
        const count = Number.isFinite(n) ? ` (${n.toLocaleString()})` : '';
        select.append(el('option', { value: String(j) }, `${v.value}${count}`));
      });
      select.addEventListener('change', () => runSearch('new'));
      // Values stay as JSON (a number stays a number) so equality means what the server stored.
      fields.list.push({ key: filterKey(name), values: values.map((v) => v.value), select });
      els.filterList.append(el('div', {}, el('label', { for: id }, fieldLabel(name)), select));
    });
    els.filters.hidden = fields.list.length === 0;
  }

  /** The chosen filters as the API's filter object: a bare value means $eq (docs/API.md). */
  function currentFilter() {
    const filter = {};
    for (const f of fields.list) {
      if (f.select.value !== '') filter[f.key] = f.values[Number(f.select.value)];
    }
    return Object.keys(filter).length ? filter : null;
  }

  // ---- Search ----

  const search = {
    timer: 0,
    seq: 0,             // id of the newest search; answers to older ones are dropped
    controller: null,
    cursor: null,       // cursor of the page on screen (null: first page)
    stack: [],          // cursors of the pages before it, for "Previous"
    next: null,         // next_cursor of the page on screen
    topK: 10,
    notice: '',         // said once with the next results (why the page restarted)
  };

  function currentMode() {
    return els.form.querySelector('input[name="mode"]:checked')?.value || 'hybrid';
  }

  function searchBody(query, cursor) {
    const body = { query, top_k: search.topK, mode: currentMode() };
    const filter = currentFilter();
    if (filter) body.filter = filter;
    const min = els.minScore.value.trim();
    if (min !== '') body.min_score = Number(min);   // out of range: the server's invalid_min_score says so
    if (els.semanticHl.checked) body.semantic_highlights = true;
    if (cursor) body.cursor = cursor;
    return body;
  }

  /**
   * Runs a search. nav: 'new' (first page), 'next', 'prev', or 'same' (the page on screen again).
   * Each call aborts the one before; `seq` also guards against an answer that was already on its
   * way when a newer search began.
   */
  async function runSearch(nav = 'new') {
    // Nothing to page to: leave the search in flight (and its busy state) alone.
    if ((nav === 'next' && !search.next) || (nav === 'prev' && !search.stack.length)) return;
    clearTimeout(search.timer);
    search.controller?.abort();
    const id = ++search.seq;
    const query = els.q.value.trim();
    if (nav === 'new') search.topK = Number(els.topK.value) || 10;

    if (!query) {
      setBusy(false);
      hideError(els.error);
      Object.assign(search, { cursor: null, stack: [], next: null });
      renderEmpty('Type a query to search your documents.', '');
      return;
    }

    let cursor = null;
    let stack = [];
    if (nav === 'next') {
      stack = [...search.stack, search.cursor];
      cursor = search.next;
    } else if (nav === 'prev') {
      stack = search.stack.slice(0, -1);
      cursor = search.stack[search.stack.length - 1];
    } else if (nav === 'same') {
      ({ cursor, stack } = search);
    }

    const controller = new AbortController();
    search.controller = controller;
    timing.lastQueryStartedAt = performance.now();
    timing.lastFirstResultAt = null;
    setBusy(true);

    try {
      const data = await api('POST', '/v1/search', { json: searchBody(query, cursor), signal: controller.signal });
      if (id !== search.seq) return;
      hideError(els.error);
      // The page state moves only once its page has arrived, so a failed "Next" leaves it as it was.
      Object.assign(search, { cursor, stack, next: str(data?.next_cursor) || null });
      renderResults(data, query, id, nav);
    } catch (e) {
      if (isAbort(e) || id !== search.seq) return;
      if (e.code === 'invalid_cursor' && cursor) {
        // A cursor dies with the key that sealed it (a restart without QUARRY_CURSOR_SECRET, another
        // instance): start the sequence again rather than strand the user on an error.
        Object.assign(search, { cursor: null, stack: [], next: null, notice: ERROR_TEXT.invalid_cursor });
        runSearch('new');
        return;
      }
      if (e.code === 'unsupported_mode' && currentMode() !== 'semantic') {
        lockToSemantic();
        search.notice = `${ERROR_TEXT.unsupported_mode} Switched to semantic.`;
        runSearch('new');
        return;
      }
      showError(els.error, e);
      if (nav === 'new') {
        Object.assign(search, { cursor: null, stack: [], next: null });
        renderEmpty('', 'The search did not complete.');
      }
    } finally {
      if (id === search.seq) setBusy(false);
    }
  }

  /** The backend has no full-text index (S3 Vectors): offer only what it can do. */
  function lockToSemantic() {
    for (const radio of els.form.querySelectorAll('input[name="mode"]')) {
      radio.disabled = radio.value !== 'semantic';
      radio.checked = radio.value === 'semantic';
    }
    const legend = els.form.querySelector('.modes legend');
    legend.textContent = 'Mode (this server offers semantic search only)';
  }

  function setBusy(busy) {
    els.region.setAttribute('aria-busy', String(busy));
    els.loading.hidden = !busy;
  }

  function renderEmpty(message, status) {
    els.results.replaceChildren();
    els.empty.textContent = message;
    els.empty.hidden = !message;
    els.status.textContent = status;
    updatePager(0);
  }

  function renderResults(data, query, id, nav) {
    const results = Array.isArray(data?.results) ? data.results : [];
    const notice = search.notice ? `${search.notice} ` : '';
    search.notice = '';
    const offset = search.stack.length * search.topK;
    const page = search.stack.length + 1;

    if (!results.length) {
      const hints = [];
      if (currentFilter()) hints.push('removing a filter');
      if (els.minScore.value.trim()) hints.push('lowering the minimum score');
      if (currentMode() === 'keyword') hints.push('switching to semantic or hybrid mode');
      const hint = hints.length ? ` Try ${hints.join(' or ')}.` : '';
      renderEmpty(`No results for “${query}”.${hint}`, `${notice}No results for “${query}”.`);
      return;
    }

    const frag = document.createDocumentFragment();
    results.forEach((r) => frag.append(resultItem(r)));
    els.results.replaceChildren(frag);
    els.results.start = offset + 1;
    els.empty.hidden = true;
    const more = search.next ? ', more on the next page' : '';
    els.status.textContent = `${notice}${plural(results.length, 'result')}${page > 1 || search.next ? `, page ${page}` : ''}${more}`;
    updatePager(page);

    // rAF runs just before the frame that shows the new list is painted: the closest a page can get
    // to "first result on screen" without a paint-timing API.
    requestAnimationFrame(() => {
      if (id === search.seq) timing.lastFirstResultAt = performance.now();
    });
    // After "Next"/"Previous" the button may be gone or disabled: put keyboard users at the top of the list.
    if (nav === 'next' || nav === 'prev') els.resultsHeading.focus();
  }

  function updatePager(page) {
    els.prev.disabled = !page || !search.stack.length;
    els.next.disabled = !page || !search.next;
    els.pageLabel.textContent = page && (page > 1 || search.next) ? `Page ${page}` : '';
  }

  /**
   * The passage with its highlights in <mark>. Offsets count Unicode scalar values (Rust `char`s,
   * shared/pipeline/src/query/highlight.rs), while JS strings index UTF-16 code units; splitting
   * by code point (Array.from) makes the two agree, so an emoji or a rare CJK character before a
   * highlight does not shift it. Rust strings hold no lone surrogates, so code points = chars.
   */
  function markedText(text, highlights) {
    if (!Array.isArray(highlights) || !highlights.length) return [text];
    const chars = Array.from(text);
    const spans = highlights
      .map((h) => [h?.start, h?.end])
      .filter(([s, e]) => Number.isInteger(s) && Number.isInteger(e) && s >= 0 && e > s && s < chars.length)
      .map(([s, e]) => [s, Math.min(e, chars.length)])
      .sort((a, b) => a[0] - b[0]);
    const out = [];
    let at = 0;
    for (const [s, e] of spans) {
      if (s < at) continue;  // overlapping spans: the API sends disjoint sentences, but stay safe
      if (s > at) out.push(chars.slice(at, s).join(''));
      out.push(el('mark', {}, chars.slice(s, e).join('')));
      at = e;
    }
    if (at < chars.length) out.push(chars.slice(at).join(''));
    return out;
  }

  function resultItem(r) {
    const meta = r?.metadata && typeof r.metadata === 'object' ? r.metadata : {};
    const key = str(meta.key) || str(r?.source?.uri);
    const title = str(meta.title) || str(meta['user.title']) || baseName(key) || str(r?.document_id) || 'Untitled';
    const docId = str(r?.document_id);
    const page = r?.source?.page;
    const score = Number(r?.score);

    const metaLine = el('p', { class: 'result-meta' },
      key ? el('span', {}, el('span', { class: 'visually-hidden' }, 'Source: '), el('code', {}, key)) : null,
      Number.isInteger(page) ? el('span', {}, `page ${page}`) : null,
      Number.isFinite(score) ? el('span', {}, `score ${score.toFixed(3)}`) : null);

    const item = el('li', { class: 'result', 'data-testid': 'result-item' },
      el('h3', {}, title),
      el('p', { class: 'passage' }, ...markedText(typeof r?.text === 'string' ? r.text : '', r?.highlights)),
      metaLine);

    if (/^[0-9a-f]{32}$/.test(docId)) {
      const panelId = `record-${++uid}`;
      const panel = el('div', { class: 'record', id: panelId, tabindex: '-1', hidden: true });
      const link = el('a', { href: `${API_BASE}/v1/documents/${docId}`, 'aria-controls': panelId, 'aria-expanded': 'false',
        'data-testid': 'document-link' }, 'Document record');
      // A plain navigation would not carry the API key, so the record is fetched and shown inline;
      // a modified click (new tab) still opens the raw JSON.
      link.addEventListener('click', (ev) => {
        if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
        ev.preventDefault();
        toggleRecord(link, panel, docId);
      });
      metaLine.append(el('span', {}, link));
      item.append(panel);
    }
    return item;
  }

  async function toggleRecord(link, panel, docId) {
    if (!panel.hidden) {
      panel.hidden = true;
      link.setAttribute('aria-expanded', 'false');
      return;
    }
    panel.hidden = false;
    link.setAttribute('aria-expanded', 'true');
    panel.replaceChildren(el('p', {}, 'Loading the record…'));
    try {
      const d = await api('GET', `/v1/documents/${docId}`);
      panel.replaceChildren(recordList(d));
    } catch (e) {
      panel.replaceChildren(...errorContent(e).filter(Boolean));
    }
    panel.focus();
  }

  /** GET /v1/documents/{id}: {id, key, content_hash, model, status, chunks | failure | attempt, updated_ms}. */
  function recordList(d) {
    const rows = [['Key', str(d?.key) || '—'], ['Status', str(d?.status) || '—']];
    if (Number.isFinite(d?.chunks)) rows.push(['Chunks', String(d.chunks)]);
    if (Number.isFinite(d?.attempt)) rows.push(['Attempt', String(d.attempt)]);
    if (d?.failure) rows.push(['Failure', failureText(d.failure)]);
    if (str(d?.model)) rows.push(['Model', d.model]);
    rows.push(['Updated', fmtTime(d?.updated_ms)]);
    const dl = el('dl');
    for (const [k, v] of rows) dl.append(el('dt', {}, k), el('dd', {}, v));
    return dl;
  }

  // Typing searches after a pause; submitting (Enter, the button) searches at once.
  els.q.addEventListener('input', () => {
    timing.lastInputAt = performance.now();
    // The query on screen has changed: an answer to an older one must not render after this.
    search.controller?.abort();
    search.seq++;
    clearTimeout(search.timer);
    search.timer = setTimeout(() => runSearch('new'), DEBOUNCE_MS);
  });
  els.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    runSearch('new');
  });
  // Changing anything the cursor is bound to (mode, filter, page size, min_score) starts at page 1.
  els.form.addEventListener('change', (ev) => {
    if (ev.target.name === 'mode' || ev.target === els.topK || ev.target === els.semanticHl) runSearch('new');
  });
  els.minScore.addEventListener('input', () => {
    clearTimeout(search.timer);
    search.timer = setTimeout(() => runSearch('new'), DEBOUNCE_MS * 2);
  });
  els.next.addEventListener('click', () => runSearch('next'));
  els.prev.addEventListener('click', () => runSearch('prev'));

  // ---- Views (hash routing) ----

  let currentView = null;

  function route(fromUser) {
    const hash = location.hash;
    // Other fragments (the skip link's #main) leave the view as it is.
    if (fromUser && hash !== '#search' && hash !== '#batches') return;
    const view = hash === '#batches' ? 'batches' : 'search';
    if (view === currentView) return;
    currentView = view;
    for (const [name, section] of Object.entries(els.views)) section.hidden = name !== view;
    for (const a of document.querySelectorAll('[data-view-link]')) {
      if (a.dataset.viewLink === view) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = view === 'batches' ? 'Batches · Quarry' : 'Quarry search';
    if (view === 'batches') refreshAllBatches();
    else stopPolling();
    if (fromUser) (view === 'batches' ? $('batches-h') : $('search-h')).focus();
  }

  window.addEventListener('hashchange', () => route(true));

  // ---- Batches ----

  const batches = {
    list: readBatchList(),   // [{id, label, added_ms}], newest first
    hidden: readHidden(),    // ids the user removed
    cards: new Map(),        // id -> {root, ...parts}
    timers: new Map(),       // id -> timeout of its next poll
    // id -> number of its latest refresh: an older refresh still in flight must neither render
    // over a newer answer nor start a second polling chain.
    gen: new Map(),
  };

  function readBatchList() {
    try {
      const list = JSON.parse(localStorage.getItem(BATCH_STORAGE) || '[]');
      return Array.isArray(list) ? list.filter((b) => str(b?.id)).slice(0, MAX_TRACKED_BATCHES) : [];
    } catch {
      return [];
    }
  }

  function readHidden() {
    try {
      const list = JSON.parse(localStorage.getItem(HIDDEN_STORAGE) || '[]');
      return Array.isArray(list) ? list.filter((id) => typeof id === 'string') : [];
    } catch {
      return [];
    }
  }

  function saveBatchList() {
    try {
      localStorage.setItem(BATCH_STORAGE, JSON.stringify(batches.list));
      localStorage.setItem(HIDDEN_STORAGE, JSON.stringify(batches.hidden));
    } catch {
      // Storage full or disabled: the list still works for this visit.
    }
  }

  function trackBatch(id, label) {
    id = str(id);
    if (!id) return;
    // Started or followed here again: shown again.
    batches.hidden = batches.hidden.filter((h) => h !== id);
    const known = batches.list.find((b) => b.id === id);
    batches.list = [known || { id, label, added_ms: Date.now() }, ...batches.list.filter((b) => b.id !== id)]
      .slice(0, MAX_TRACKED_BATCHES);
    saveBatchList();
    renderBatchList();
    refreshBatch(id);
  }

  function untrackBatch(id) {
    batches.list = batches.list.filter((b) => b.id !== id);
    // The server keeps listing it: remember not to show it again.
    batches.hidden = [id, ...batches.hidden.filter((h) => h !== id)].slice(0, 200);
    clearTimeout(batches.timers.get(id));
    batches.timers.delete(id);
    batches.gen.delete(id);
    saveBatchList();
    renderBatchList();
  }

  function renderBatchList() {
    const ids = new Set(batches.list.map((b) => b.id));
    for (const [id, card] of batches.cards) {
      if (!ids.has(id)) { card.root.remove(); batches.cards.delete(id); }
    }
    for (const b of batches.list) {
      const card = batches.cards.get(b.id) || batchCard(b);
      els.batchList.append(card.root);  // append moves an existing card: keeps list order
    }
    els.batchesEmpty.hidden = batches.list.length > 0;
  }

  function batchCard(b) {
    const progressId = `batch-progress-${++uid}`;
    const card = {
      status: el('p', {}, 'Loading…'),
      // Hidden until the first answer: a bar for a batch the server does not know would mislead.
      progressLabel: el('label', { for: progressId, hidden: true }, 'Progress'),
      progress: el('progress', { id: progressId, hidden: true }),
      rate: el('p', { class: 'hint' }),
      failures: el('div'),
      error: el('div', { class: 'error', role: 'alert', hidden: true }),
      actions: el('div', { class: 'actions' }),
    };
    const remove = el('button', { type: 'button', class: 'secondary' }, 'Remove from list');
    remove.setAttribute('aria-label', `Remove batch ${b.id} from the list`);
    remove.addEventListener('click', () => {
      untrackBatch(b.id);
      $('list-h').focus();  // the button is gone with its card: keep keyboard users in the list
    });
    if (RETRY_PATH) {
      card.retry = el('button', { type: 'button', hidden: true }, 'Retry failed');
      card.retry.addEventListener('click', () => retryBatch(b.id, card));
      card.actions.append(card.retry);
    }
    card.actions.append(remove);
    card.root = el('li', { class: 'batch', 'data-testid': 'batch-item', 'data-batch-id': b.id },
      el('h3', {}, b.label || 'Batch'),
      el('p', { class: 'hint' }, 'Id ', el('code', {}, b.id)),
      card.status, card.progressLabel, card.progress, card.rate, card.failures, card.error, card.actions);
    batches.cards.set(b.id, card);
    return card;
  }

  async function refreshBatch(id) {
    clearTimeout(batches.timers.get(id));
    batches.timers.delete(id);
    const card = batches.cards.get(id);
    if (!card) return;
    const gen = (batches.gen.get(id) || 0) + 1;
    batches.gen.set(id, gen);
    const stale = () => batches.gen.get(id) !== gen || batches.cards.get(id) !== card;
    let v;
    try {
      v = await api('GET', `/v1/batches/${encodeURIComponent(id)}`);
    } catch (e) {
      if (stale()) return;
      if (e.code === 'not_found') {
        card.status.textContent = 'The server does not know this batch: it may have expired, or come from another server.';
        card.error.hidden = true;
      } else {
        showError(card.error, e);
        schedulePoll(id, POLL_MS * 3);  // a busy or unreachable server: keep trying, more slowly
      }
      return;
    }
    if (stale()) return;  // removed, or refreshed again, while the request was out
    hideError(card.error);
    renderBatch(card, v);
    if (v?.status === 'running') schedulePoll(id, POLL_MS);
  }

  function schedulePoll(id, ms) {
    if (currentView !== 'batches') return;
    batches.timers.set(id, setTimeout(() => {
      // A hidden tab is not watched; the next visit (or visibilitychange) refreshes it.
      if (document.hidden || currentView !== 'batches') { batches.timers.delete(id); return; }
      refreshBatch(id);
    }, ms));
  }

  function refreshAllBatches() {
    renderBatchList();
    for (const b of batches.list) refreshBatch(b.id);
    loadRecentBatches();
  }

  // GET /v1/batches: batches started anywhere (the CLI, another tab, a script) join the list; the
  // ones started here keep their labels.
  async function loadRecentBatches() {
    let data;
    try {
      data = await api('GET', `/v1/batches?limit=${MAX_TRACKED_BATCHES}`);
    } catch {
      return;  // the tracked batches still show; each card reports its own errors
    }
    const known = new Set([...batches.list.map((b) => b.id), ...batches.hidden]);
    const fresh = (Array.isArray(data?.batches) ? data.batches : [])
      .filter((b) => str(b?.batch_id) && !known.has(b.batch_id))
      .map((b) => ({ id: b.batch_id, label: 'Batch', added_ms: Number(b.created_ms) || Date.now() }));
    if (!fresh.length) return;
    batches.list = [...batches.list, ...fresh].sort((a, b) => b.added_ms - a.added_ms).slice(0, MAX_TRACKED_BATCHES);
    saveBatchList();
    renderBatchList();
    for (const b of fresh) if (batches.cards.has(b.id)) refreshBatch(b.id);
  }

  function stopPolling() {
    for (const t of batches.timers.values()) clearTimeout(t);
    batches.timers.clear();
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && currentView === 'batches') refreshAllBatches();
  });

  /** GET /v1/batches/{id}. */
  function renderBatch(card, v) {
    const d = v?.documents || {};
    const total = Number(d.total) || 0;
    const pending = Number(d.pending) || 0;
    const done = v?.status === 'done';
    const processed = Math.max(0, total - pending);

    const counts = [`${Number(d.indexed) || 0} indexed`, `${Number(d.unchanged) || 0} unchanged`,
      `${Number(d.failed) || 0} failed`, `${pending} pending`].join(', ');
    card.status.textContent = `${done ? 'Done' : 'Running'}: ${processed.toLocaleString()} of ${plural(total, 'document')} processed (${counts}).`;

    // Rate and ETA are by bytes (docs/API.md), so the bar is too when there are bytes to count;
    // a finished batch shows full whatever its byte counts say (refused files may never count).
    const bytesTotal = Number(v?.bytes_total) || 0;
    const byBytes = bytesTotal > 0;
    const max = byBytes ? bytesTotal : Math.max(total, 1);
    const value = done ? max : Math.min(max, byBytes ? Number(v?.bytes_done) || 0 : processed);
    card.progress.hidden = card.progressLabel.hidden = false;
    card.progress.max = max;
    card.progress.value = value;
    card.progress.textContent = `${Math.round((value / max) * 100)}%`;
    card.progressLabel.textContent = byBytes
      ? `Progress: ${fmtBytes(done ? bytesTotal : value)} of ${fmtBytes(bytesTotal)}`
      : `Progress: ${processed} of ${plural(total, 'document')}`;

    const rate = Number.isFinite(v?.rate_bytes_per_s) ? `${fmtBytes(v.rate_bytes_per_s)}/s` : '—';
    const eta = done ? 'finished' : Number.isFinite(v?.eta_s) ? `about ${fmtDuration(v.eta_s)} left` : 'time left unknown';
    card.rate.textContent = `Rate ${rate} · ${eta} · started ${fmtTime(v?.created_ms)}`;

    const failures = Array.isArray(v?.failures) ? v.failures : [];
    card.failures.replaceChildren();
    if (failures.length) {
      const list = el('ul', { class: 'failures' });
      for (const f of failures) {
        list.append(el('li', {},
          el('code', {}, str(f?.key) || '—'),
          el('span', { class: 'reason' }, failureText(f))));
      }
      // Open while few: a thousand failures should not push everything else off the screen.
      card.failures.append(el('details', { class: 'failed', open: failures.length <= 5 },
        el('summary', {}, plural(failures.length, 'failed document')), list));
    }
    if (card.retry) card.retry.hidden = !failures.length || !done;
  }

  async function retryBatch(id, card) {
    card.retry.disabled = true;
    try {
      const started = await api('POST', RETRY_PATH(encodeURIComponent(id)), { json: {} });
      const next = str(started?.batch) || str(started?.batch_id);
      if (next && next !== id) trackBatch(next, 'Retry');
      else refreshBatch(id);
    } catch (e) {
      showError(card.error, e);
    } finally {
      card.retry.disabled = false;
    }
  }

  // Start a batch over keys or a prefix already in storage (POST /v1/batches).
  els.startForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const prefix = els.prefix.value.trim();
    const keys = els.keys.value.split('\n').map((k) => k.trim()).filter(Boolean);
    const out = els.startResult;
    if (!prefix && !keys.length) {
      out.replaceChildren(el('p', { class: 'error' }, ERROR_TEXT.empty_batch));
      els.prefix.focus();
      return;
    }
    const body = { keys };
    if (prefix) body.prefix = prefix;
    const button = els.startForm.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      // 202 {batch, documents, missing}.
      const s = await api('POST', '/v1/batches', { json: body });
      const missing = Array.isArray(s?.missing) ? s.missing : [];
      out.replaceChildren(el('p', { class: 'ok' },
        `Batch started with ${plural(Number(s?.documents) || 0, 'document')}.`,
        missing.length ? ` Not found: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', …' : ''}.` : ''));
      trackBatch(s?.batch, prefix ? `Prefix ${prefix}` : plural(keys.length, 'key'));
    } catch (e) {
      out.replaceChildren(el('div', { class: 'error' }, ...errorContent(e).filter(Boolean)));
    } finally {
      button.disabled = false;
    }
  });

  els.watchForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = els.watchId.value.trim();
    if (!id) { els.watchId.focus(); return; }
    trackBatch(id, 'Followed batch');
    els.watchId.value = '';
  });

  // ---- Uploads (POST /v1/uploads, then the bytes where it says) ----

  const uploads = { queue: [], active: 0, maxFileBytes: null, loaded: false };

  /** GET /v1/uploads: the drop zone shows where the server takes files, with its size limit. */
  async function loadUploads() {
    let info;
    try {
      info = await api('GET', '/v1/uploads');
    } catch {
      return;  // an older server, or none: the panel stays hidden
    }
    uploads.loaded = true;
    const max = info?.max_file_bytes;
    uploads.maxFileBytes = Number.isFinite(max) && max > 0 ? max : null;
    renderFileHint();
    $('upload-panel').hidden = info?.available !== true;
  }

  function renderFileHint() {
    const limit = uploads.maxFileBytes ? `; up to ${fmtBytes(uploads.maxFileBytes)} each` : '';
    els.fileHint.textContent = `Text, Markdown, HTML, PDF, Word (.docx), CSV and JSON files${limit}.`;
  }

  /** Why the server would refuse this file, checked before sending it; null if none. */
  function precheck(file) {
    const dot = file.name.lastIndexOf('.');
    const ext = dot > 0 ? file.name.slice(dot + 1).toLowerCase() : '';
    if (!ACCEPTED_EXT.includes(ext)) {
      return ext ? `Quarry does not read .${ext} files.` : 'The file has no extension, so its type is unknown.';
    }
    if (file.size === 0) return ERROR_TEXT.empty_file;
    if (uploads.maxFileBytes && file.size > uploads.maxFileBytes) {
      return `The file is ${fmtBytes(file.size)}; the limit is ${fmtBytes(uploads.maxFileBytes)}.`;
    }
    return null;
  }

  function setUpload(job, state, ...content) {
    job.item.className = `upload-${state}`;
    job.item.dataset.state = state;  // for tests: queued, uploading, uploaded, done, failed, refused
    job.status.replaceChildren(...content.filter(Boolean));
  }

  function addFiles(fileList) {
    for (const file of Array.from(fileList || [])) {
      const status = el('span', {});
      const item = el('li', { 'data-testid': 'upload-item' }, el('span', { class: 'name' }, file.name),
        el('span', { class: 'hint' }, fmtBytes(file.size)), status);
      const job = { file, item, status };
      els.uploads.prepend(item);
      const refusal = precheck(file);
      if (refusal) {
        setUpload(job, 'refused', `Not sent: ${refusal}`);
      } else {
        setUpload(job, 'queued', 'Waiting…');
        uploads.queue.push(job);
      }
    }
    pumpUploads();
  }

  function pumpUploads() {
    while (uploads.active < UPLOAD_CONCURRENCY && uploads.queue.length) {
      const job = uploads.queue.shift();
      uploads.active += 1;
      upload(job).finally(() => {
        uploads.active -= 1;
        pumpUploads();
      });
    }
  }

  async function upload(job) {
    const { file } = job;
    // fetch reports no upload progress: an indeterminate bar says "working" without inventing a number.
    setUpload(job, 'uploading', el('progress', { 'aria-label': `Uploading ${file.name}` }), ' Uploading…');
    try {
      // The server screens name, size and type first, and says where the bytes go.
      const grant = await api('POST', '/v1/uploads', { json: { name: file.name, size: file.size, content_type: file.type || null } });
      const headers = grant?.headers && typeof grant.headers === 'object' ? grant.headers : {};
      const url = str(grant?.url);
      let batchId = '';
      if (url.startsWith('/')) {
        // This server takes the bytes itself (locally): 201 {key, document_id, batch}.
        const r = await api(str(grant?.method) || 'PUT', url, { body: file, contentType: headers['content-type'] });
        batchId = str(r?.batch?.batch);  // null if the server could not start one; the record still tells
      } else {
        // A presigned storage URL (AWS): no API key goes there, only the signed headers.
        let res;
        try {
          res = await fetch(url, { method: str(grant?.method) || 'PUT', headers, body: file });
        } catch (e) {
          throw new ApiError(0, 'network', e?.message || 'network error');
        }
        if (res.status === 412) throw new ApiError(409, 'file_exists', 'an object with this key appeared meanwhile');
        if (!res.ok) throw new ApiError(res.status, 'upload_rejected', `storage answered HTTP ${res.status}`);
      }
      const key = str(grant?.key) || file.name;
      setUpload(job, 'uploaded', 'Uploaded as ', el('code', {}, key), '; indexing…');
      if (batchId) trackBatch(batchId, `Upload: ${file.name}`);
      watchDocument(job, key, str(grant?.document_id));
    } catch (e) {
      const { sentence, detail } = describeError(e);
      setUpload(job, 'failed', `Failed: ${sentence}`, detail ? el('span', { class: 'hint' }, ` ${detail}`) : null);
    }
  }

  /** Polls the uploaded document's record until it is indexed or failed: the same on both deployments. */
  async function watchDocument(job, key, id) {
    if (!id) return;
    const until = Date.now() + DOCUMENT_WATCH_MS;
    while (Date.now() < until) {
      await sleep(1000);
      let d;
      try {
        d = await api('GET', `/v1/documents/${encodeURIComponent(id)}`);
      } catch (e) {
        if (e.code === 'document_not_found') continue;  // not picked up yet
        return;  // the upload itself worked; the batches view has the rest
      }
      if (d?.status === 'indexed' || d?.status === 'unchanged') {
        const chunks = Number(d?.chunks);
        setUpload(job, 'done', 'Indexed as ', el('code', {}, key),
          Number.isFinite(chunks) ? ` (${plural(chunks, 'passage')}). It can be searched now.` : '. It can be searched now.');
        return;
      }
      if (d?.status === 'failed') {
        setUpload(job, 'failed', 'Not indexed: ', failureText(d?.failure));
        return;
      }
    }
  }

  els.fileInput.addEventListener('change', () => {
    addFiles(els.fileInput.files);
    els.fileInput.value = '';  // choosing the same file again must fire `change` again
  });

  const hasFiles = (ev) => Array.from(ev.dataTransfer?.types || []).includes('Files');
  let dragDepth = 0;  // dragenter/leave fire for every child crossed; count them to know when the drag really left
  els.dropZone.addEventListener('dragenter', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    dragDepth += 1;
    els.dropZone.classList.add('is-over');
  });
  els.dropZone.addEventListener('dragover', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = 'copy';
  });
  els.dropZone.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) els.dropZone.classList.remove('is-over');
  });
  els.dropZone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    dragDepth = 0;
    els.dropZone.classList.remove('is-over');
    addFiles(ev.dataTransfer?.files);
  });
  // A file dropped beside the zone would make the browser navigate away to it (losing the page).
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (ev) => {
      if (hasFiles(ev) && !els.dropZone.contains(ev.target)) ev.preventDefault();
    });
  }

  // ---- Start ----

  renderFileHint();
  route(false);
  loadFields();
  loadUploads();
  if (els.q.value.trim()) runSearch('new');  // a query the browser restored on back/forward
})();
