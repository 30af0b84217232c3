// Measures hls.js's live latency against an edge in Debian's headless Chromium (playwright-core):
// LL-HLS (ll.m3u8 with lowLatencyMode) and plain HLS (index.m3u8) play side by side in two pages for
// the same wall-clock minute, each sampled every 500 ms. Run by e2e/tests/ll_hls.rs, which judges.
//
//   node ll.mjs --base http://127.0.0.1:PORT --stream NAME --out DIR [--seconds 60]
//
// Any other server (bench/compare.py's latency runs): players of your own, hls.js from a file:
//   node ll.mjs --player NAME=URL[,ll] ... --hlsjs-file PATH --out DIR [--seconds 60]
// (`,ll` plays that URL with lowLatencyMode; the page is about:blank, so the server must send CORS headers
// for Origin: null, or give --origin URL: the page is then opened at that URL first and keeps its origin).
//
// Writes DIR/result.json: per player the median/p90/max of hls.latency, the samples, the stalls
// (`waiting` events and hls.js BUFFER_STALLED_ERROR after playback started) and hls.js errors; also,
// where the playlist carries EXT-X-PROGRAM-DATE-TIME, the median of wall clock - hls.playingDate.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from './chromium.mjs';

function args(argv) {
  const out = { seconds: 60, players: [] };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === '--base') out.base = next();
    else if (a === '--stream') out.stream = next();
    else if (a === '--out') out.out = next();
    else if (a === '--seconds') out.seconds = Number(next());
    else if (a === '--player') out.players.push(next());
    else if (a === '--hlsjs-file') out.hlsjsFile = next();
    else if (a === '--origin') out.origin = next();
    else throw new Error(`unknown argument ${a}`);
  }
  if (!out.out) throw new Error('--out is required');
  if (!out.players.length && (!out.base || !out.stream)) throw new Error('--base and --stream, or --player, are required');
  if (!out.base && !out.hlsjsFile) throw new Error('--base or --hlsjs-file is required');
  return out;
}

const opt = args(process.argv);
const log = (...m) => console.error(`[ll ${new Date().toISOString().slice(11, 23)}]`, ...m);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The player page: hls.js from the edge itself (the copy the watch page uses), muted autoplay.
const page_html = (base) => `<!doctype html><html><body>
<video id="v" muted autoplay playsinline width="640" height="360"></video>
${base ? `<script src="${base}/assets/hls.min.js"></script>` : ''}
</body></html>`;

// Runs inside the page: starts hls.js and records what happens.
function startPlayer({ url, lowLatency }) {
  const video = document.getElementById('v');
  const state = { errors: [], stallEvents: [], started: false, startedAt: null };
  window.probe = state;
  const hls = new window.Hls({ lowLatencyMode: lowLatency });
  window.hls = hls;
  hls.on(window.Hls.Events.ERROR, (_e, d) => {
    if (d.details === 'bufferStalledError') {
      if (state.started) state.stallEvents.push({ t: video.currentTime, kind: 'hls.js bufferStalledError' });
    } else {
      state.errors.push({ type: d.type, details: d.details, fatal: d.fatal });
    }
  });
  video.addEventListener('playing', () => {
    if (!state.started) {
      state.started = true;
      state.startedAt = performance.now();
    }
  });
  video.addEventListener('waiting', () => {
    if (state.started) state.stallEvents.push({ t: video.currentTime, kind: 'waiting' });
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  video.play().catch(() => {});
  return window.Hls.version;
}

const sample = () => {
  const v = document.getElementById('v');
  return {
    latency: window.hls ? window.hls.latency : null,
    wallLatency: window.hls && window.hls.playingDate ? (Date.now() - window.hls.playingDate.getTime()) / 1000 : null,
    targetLatency: window.hls ? window.hls.targetLatency : null,
    currentTime: v.currentTime,
    paused: v.paused,
    started: window.probe.started,
  };
};

const quantile = (xs, q) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))];
};

const result = { ok: false };
let browser;
try {
  browser = await launch({
    viewport: { width: 700, height: 400 },
    extraArgs: [
      '--autoplay-policy=no-user-gesture-required',
      // Two pages play at once: neither may be throttled as a background tab.
      '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows',
    ],
  });
  const { context } = browser;
  result.browserVersion = context.browser() ? context.browser().version() : null;
  const players = {};
  if (opt.players.length) {
    for (const spec of opt.players) {
      const eq = spec.indexOf('=');
      let url = spec.slice(eq + 1);
      const lowLatency = url.endsWith(',ll');
      if (lowLatency) url = url.slice(0, -3);
      players[spec.slice(0, eq)] = { url, lowLatency };
    }
  } else {
    players.ll = { url: `${opt.base}/live/${opt.stream}/ll.m3u8`, lowLatency: true };
    players.plain = { url: `${opt.base}/live/${opt.stream}/index.m3u8`, lowLatency: false };
  }
  const pages = {};
  for (const [name, p] of Object.entries(players)) {
    const page = context.pages().length && !Object.keys(pages).length ? context.pages()[0] : await context.newPage();
    page.on('pageerror', (e) => log(`${name} page error: ${e.message}`));
    if (opt.origin) await page.goto(opt.origin).catch((e) => log(`${name}: ${opt.origin}: ${e.message}`));
    await page.setContent(page_html(opt.hlsjsFile ? null : opt.base), { waitUntil: 'load' });
    if (opt.hlsjsFile) await page.addScriptTag({ path: opt.hlsjsFile });
    result.hlsVersion = await page.evaluate(startPlayer, p);
    pages[name] = page;
    log(`${name}: playing ${p.url} with hls.js ${result.hlsVersion}`);
  }
  // Wait for both to start, then measure for the requested time.
  const startDeadline = Date.now() + 20000;
  while (Date.now() < startDeadline) {
    const s = await Promise.all(Object.values(pages).map((p) => p.evaluate(sample)));
    if (s.every((x) => x.started)) break;
    await sleep(200);
  }
  const samples = Object.fromEntries(Object.keys(players).map((n) => [n, []]));
  const first = {};
  const begin = Date.now();
  while (Date.now() - begin < opt.seconds * 1000) {
    for (const [name, page] of Object.entries(pages)) {
      const s = await page.evaluate(sample);
      if (first[name] === undefined) first[name] = s.currentTime;
      samples[name].push(s);
    }
    await sleep(500);
  }
  for (const [name, page] of Object.entries(pages)) {
    const probe = await page.evaluate(() => window.probe);
    const lat = samples[name].filter((s) => s.started && typeof s.latency === 'number' && s.latency > 0).map((s) => s.latency);
    const last = samples[name][samples[name].length - 1];
    const wall = samples[name].filter((s) => s.started && typeof s.wallLatency === 'number').map((s) => s.wallLatency);
    result[name] = {
      url: players[name].url,
      samples: lat.length,
      medianLatency: quantile(lat, 0.5),
      p90Latency: quantile(lat, 0.9),
      maxLatency: lat.length ? Math.max(...lat) : null,
      wallSamples: wall.length,
      medianWallLatency: quantile(wall, 0.5),
      p90WallLatency: quantile(wall, 0.9),
      targetLatency: last ? last.targetLatency : null,
      played: last ? last.currentTime - first[name] : 0,
      stalls: probe.stallEvents.length,
      stallEvents: probe.stallEvents,
      errors: probe.errors,
    };
    log(`${name}: median latency ${result[name].medianLatency}, stalls ${result[name].stalls}, played ${result[name].played.toFixed(1)} s`);
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
