// Opens an edge's watch page in Debian's headless Chromium (driven by playwright-core) and reports what a
// viewer would see. Run by e2e/tests/watch_page.rs; the Rust test judges the result.
//
//   node watch.mjs --base http://127.0.0.1:PORT --stream NAME --out DIR [--min-seconds 6]
//                  [--timeout-ms 90000] [--wait-ended]
//
// Writes DIR/result.json and screenshots into DIR; progress goes to stderr.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from './chromium.mjs';

function args(argv) {
  const out = { minSeconds: 6, timeoutMs: 90000, waitEnded: false };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === '--base') out.base = next();
    else if (a === '--stream') out.stream = next();
    else if (a === '--out') out.out = next();
    else if (a === '--min-seconds') out.minSeconds = Number(next());
    else if (a === '--timeout-ms') out.timeoutMs = Number(next());
    else if (a === '--wait-ended') out.waitEnded = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!out.base || !out.stream || !out.out) throw new Error('--base, --stream and --out are required');
  return out;
}

const opt = args(process.argv);
const log = (...m) => console.error(`[browser ${new Date().toISOString().slice(11, 23)}]`, ...m);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What the page and the player say, read inside the page.
const snapshot = () => {
  const v = document.getElementById('video');
  const w = window.watch || {};
  const msg = document.getElementById('message');
  return {
    currentTime: v ? v.currentTime : -1,
    paused: v ? v.paused : true,
    readyState: v ? v.readyState : -1,
    state: w.state || null,
    badge: (document.getElementById('state') || {}).textContent || null,
    engine: w.engine || null,
    lowLatency: !!w.lowLatency,
    errors: w.errors || [],
    message: msg && !msg.hidden ? msg.textContent : '',
    hlsLoaded: typeof window.Hls === 'function',
    videoWidth: v ? v.videoWidth : 0,
    videoHeight: v ? v.videoHeight : 0,
  };
};

const result = {
  ok: false,
  screenshots: [],
  consoleErrors: [],
  pageErrors: [],
  failedRequests: [],
};
let browser;
const deadline = Date.now() + opt.timeoutMs;

function watchPage(page, label) {
  page.on('console', (m) => {
    if (m.type() === 'error') result.consoleErrors.push(`${label}: ${m.text()}`);
  });
  page.on('pageerror', (e) => result.pageErrors.push(`${label}: ${e.message}`));
  page.on('requestfailed', (r) =>
    result.failedRequests.push(`${label}: ${r.url()} ${r.failure() ? r.failure().errorText : ''}`)
  );
}

async function shot(page, name) {
  const path = join(opt.out, name);
  await page.screenshot({ path });
  result.screenshots.push(path);
  log('screenshot', path);
}

try {
  browser = await launch({ viewport: { width: 1280, height: 800 } });
  const { context } = browser;
  result.browserVersion = context.browser() ? context.browser().version() : null;

  // The stream list links to the stream.
  const index = context.pages()[0] || (await context.newPage());
  watchPage(index, 'index');
  await index.goto(`${opt.base}/`, { waitUntil: 'load' });
  result.indexLinks = await index.$$eval('ul.streams a', (as) => as.map((a) => a.getAttribute('href')));
  await shot(index, 'index.png');

  // The watch page plays: currentTime passes minSeconds, and advanced that much while we watched.
  const page = await context.newPage();
  watchPage(page, 'watch');
  const opened = Date.now();
  await page.goto(`${opt.base}/watch/${opt.stream}`, { waitUntil: 'load' });
  let first = null;
  let last = null;
  while (Date.now() < deadline) {
    last = await page.evaluate(snapshot);
    if (first === null && !last.paused && last.currentTime > 0) {
      first = { currentTime: last.currentTime, atMs: Date.now() };
      result.startupSeconds = (first.atMs - opened) / 1000;
      log(`playing with ${last.engine} from currentTime ${last.currentTime.toFixed(2)}`);
    }
    if (first && last.currentTime >= opt.minSeconds && last.currentTime - first.currentTime >= opt.minSeconds) {
      break;
    }
    if (last.errors.some((e) => e.fatal)) break;
    await sleep(500);
  }
  result.firstCurrentTime = first ? first.currentTime : null;
  result.playing = last;
  result.advancedSeconds = first ? last.currentTime - first.currentTime : 0;
  result.wallSeconds = first ? (Date.now() - first.atMs) / 1000 : 0;
  log(`currentTime ${last.currentTime.toFixed(2)} (advanced ${result.advancedSeconds.toFixed(2)} s), state ${last.state}`);
  await shot(page, 'watch-desktop.png');

  // The same page on a phone-sized screen: nothing wider than the screen, the video fits.
  const phone = await context.newPage();
  watchPage(phone, 'phone');
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(`${opt.base}/watch/${opt.stream}`, { waitUntil: 'load' });
  const phoneUntil = Math.min(deadline, Date.now() + 15000);
  let phoneState;
  while (Date.now() < phoneUntil) {
    phoneState = await phone.evaluate(snapshot);
    if (phoneState.currentTime > 1) break;
    await sleep(300);
  }
  result.phone = await phone.evaluate(() => {
    const v = document.getElementById('video').getBoundingClientRect();
    return {
      innerWidth: window.innerWidth,
      scrollWidth: document.documentElement.scrollWidth,
      videoLeft: v.left,
      videoRight: v.right,
      videoHeight: v.height,
    };
  });
  result.phone.currentTime = phoneState ? phoneState.currentTime : -1;
  await shot(phone, 'watch-phone.png');
  await phone.close();

  // After the publisher stops, the page says the broadcast ended.
  if (opt.waitEnded) {
    while (Date.now() < deadline) {
      last = await page.evaluate(snapshot);
      if (last.state === 'ended') break;
      await sleep(500);
    }
    result.ended = last;
    log(`final state ${last.state} (${last.badge}); message: ${last.message}`);
    await shot(page, 'watch-ended.png');
  }
  result.ok = true;
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
  log('failed:', result.error);
} finally {
  if (browser) await browser.close();
  writeFileSync(join(opt.out, 'result.json'), JSON.stringify(result, null, 2));
}
process.exit(result.ok ? 0 : 1);
