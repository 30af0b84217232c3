// Measures live latency and re-buffering against an edge in Debian's headless Chromium (playwright-core):
// hls.js on LL-HLS (ll.m3u8 with lowLatencyMode), hls.js on plain HLS (index.m3u8) and shaka-player on
// LL-HLS (lowLatencyMode) play side by side in three pages for the same wall-clock minute, each sampled
// every 500 ms. Run by e2e/tests/ll_hls.rs, which judges.
//
//   node ll.mjs --base http://127.0.0.1:PORT --stream NAME --out DIR [--seconds 60]
//
// Writes DIR/result.json: `versions`, and per player (`ll`, `plain`, `shakaLl`) the median/p90/max of the
// player's latency estimate, the samples, the stalls (re-buffering after playback started, see
// startPlayer) and the player's errors.
//
// Any other server (bench/compare.py's latency runs): hls.js players of your own, hls.js from a file:
//   node ll.mjs --player NAME=URL[,ll] ... --hlsjs-file PATH --out DIR [--seconds 60]
// (`,ll` plays that URL with lowLatencyMode; the page is about:blank, so the server must send CORS headers
// for Origin: null, or give --origin URL: the page is then opened at that URL first and keeps its origin).
// Where a playlist carries EXT-X-PROGRAM-DATE-TIME, hls.js players also report the median of wall clock -
// hls.playingDate.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

// The player page: muted autoplay; the player's script is added by the caller (hls.js from the edge
// itself, the copy the watch page uses; shaka-player from node_modules, pinned by package-lock.json).
const page_html = `<!doctype html><html><body>
<video id="v" muted autoplay playsinline width="640" height="360"></video>
</body></html>`;

// Runs inside the page: starts the player and records what happens. A re-buffering event is the video
// element's `waiting` after playback started, and the player's own stall report on top (hls.js's
// BUFFER_STALLED_ERROR, shaka's `buffering` event with buffering=true): a player may recover before
// the element notices, and the user still saw the picture freeze.
async function startPlayer({ url, player, lowLatency, shakaConfig }) {
  const video = document.getElementById('v');
  const state = { errors: [], stallEvents: [], started: false, startedAt: null };
  window.probe = state;
  video.addEventListener('playing', () => {
    if (!state.started) {
      state.started = true;
      state.startedAt = performance.now();
    }
  });
  video.addEventListener('waiting', () => {
    if (state.started) state.stallEvents.push({ t: video.currentTime, kind: 'waiting' });
  });
  if (player === 'shaka') {
    window.shaka.polyfill.installAll();
    const shaka = new window.shaka.Player();
    window.shakaPlayer = shaka;
    await shaka.attach(video);
    shaka.configure({ streaming: { lowLatencyMode: lowLatency } });
    if (shakaConfig) shaka.configure(shakaConfig);
    shaka.addEventListener('error', (e) => {
      const d = e.detail || {};
      state.errors.push({ code: d.code, category: d.category, severity: d.severity, data: String(d.data) });
    });
    shaka.addEventListener('buffering', (e) => {
      if (state.started && e.buffering) state.stallEvents.push({ t: video.currentTime, kind: 'shaka buffering' });
    });
    window.latency = () => {
      const l = shaka.getStats().liveLatency;
      return Number.isFinite(l) ? l : null;
    };
    window.targetLatency = () => null;
    await shaka.load(url).catch((e) => state.errors.push({ code: e.code, data: String(e.data) }));
    video.play().catch(() => {});
    return `shaka-player ${window.shaka.Player.version}`;
  }
  const hls = new window.Hls({ lowLatencyMode: lowLatency });
  window.latency = () => hls.latency;
  window.targetLatency = () => hls.targetLatency;
  window.wallLatency = () => (hls.playingDate ? (Date.now() - hls.playingDate.getTime()) / 1000 : null);
  hls.on(window.Hls.Events.ERROR, (_e, d) => {
    if (d.details === 'bufferStalledError') {
      if (state.started) state.stallEvents.push({ t: video.currentTime, kind: 'hls.js bufferStalledError' });
    } else {
      state.errors.push({ type: d.type, details: d.details, fatal: d.fatal });
    }
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  video.play().catch(() => {});
  return `hls.js ${window.Hls.version}`;
}

const sample = () => {
  const v = document.getElementById('v');
  return {
    latency: window.latency ? window.latency() : null,
    targetLatency: window.targetLatency ? window.targetLatency() : null,
    wallLatency: window.wallLatency ? window.wallLatency() : null,
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
  const ll = `${opt.base}/live/${opt.stream}/ll.m3u8`;
  const players = {};
  if (opt.players.length) {
    for (const spec of opt.players) {
      const eq = spec.indexOf('=');
      let url = spec.slice(eq + 1);
      const lowLatency = url.endsWith(',ll');
      if (lowLatency) url = url.slice(0, -3);
      players[spec.slice(0, eq)] = { url, player: 'hls.js', lowLatency };
    }
  } else {
    players.ll = { url: ll, player: 'hls.js', lowLatency: true };
    players.plain = { url: `${opt.base}/live/${opt.stream}/index.m3u8`, player: 'hls.js', lowLatency: false };
    // sequenceMode: shaka-player 5.2.12 (the newest release) in its default segments mode calls abort()
    // before appending a part whenever it recomputes the timestamp offset, and for any live stream whose
    // media time is ahead of its playlist time the Edge workaround in setTimestampOffset_ (+0.001 on
    // negative offsets) makes that recomputation differ by 0.001, which meets its ">= 0.001" threshold by
    // floating-point chance: Chromium then drops the part's video up to the next keyframe and shaka waits
    // at the next segment boundary. Fixed upstream (shaka-player#10559, #10591, issue #10589) but not
    // released; sequence mode skips the recomputation, as the maintainers suggest there.
    players.shakaLl = { url: ll, player: 'shaka', lowLatency: true, shakaConfig: { manifest: { hls: { sequenceMode: true } } } };
  }
  const scripts = {
    'hls.js': opt.hlsjsFile ? { path: opt.hlsjsFile } : { url: `${opt.base}/assets/hls.min.js` },
    shaka: { path: join(dirname(fileURLToPath(import.meta.url)), 'node_modules/shaka-player/dist/shaka-player.compiled.js') },
  };
  const pages = {};
  for (const [name, p] of Object.entries(players)) {
    const page = context.pages().length && !Object.keys(pages).length ? context.pages()[0] : await context.newPage();
    page.on('pageerror', (e) => log(`${name} page error: ${e.message}`));
    if (opt.origin) await page.goto(opt.origin).catch((e) => log(`${name}: ${opt.origin}: ${e.message}`));
    await page.setContent(page_html, { waitUntil: 'load' });
    await page.addScriptTag(scripts[p.player]);
    const version = await page.evaluate(startPlayer, p);
    result.versions = { ...result.versions, [name]: version };
    if (p.player === 'hls.js') result.hlsVersion = version;
    pages[name] = page;
    log(`${name}: playing ${p.url} with ${version}`);
  }
  // Wait for both to start, then measure for the requested time.
  const startDeadline = Date.now() + 20000;
  while (Date.now() < startDeadline) {
    const s = await Promise.all(Object.values(pages).map((p) => p.evaluate(sample)));
    if (s.every((x) => x.started)) break;
    await sleep(200);
  }
  const samples = Object.fromEntries(Object.keys(pages).map((n) => [n, []]));
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
