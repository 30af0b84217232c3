// Reads playlists with two HLS parsers nobody on this project wrote, so a misreading of the spec the
// project's own readers (e2e/src/ll_playlist.rs, e2e/src/lib.rs) share with the server cannot pass:
// `hls-parser` in strict mode (throws on any rule of RFC 8216 / rfc8216bis it checks) and video.js's
// `m3u8-parser` (warns instead of throwing: every warning counts as a failure here). Run by the e2e tests.
//
//   node validate.mjs URL [URL...]
//
// Prints one JSON object per playlist ({url, ok, problems, mediaSequence, segments, parts}) on stdout and
// exits 1 when any playlist fails either parser or could not be fetched.
import HLS from 'hls-parser';
import { Parser } from 'm3u8-parser';

// Integers a player may hold in a signed 32-bit int (GStreamer 1.22's hlsdemux2 does).
const INT32_MAX = 2 ** 31 - 1;

async function check(url) {
  const out = { url, ok: false, problems: [] };
  let text;
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(10000) });
    if (r.status !== 200) {
      out.problems.push(`HTTP ${r.status}`);
      return out;
    }
    text = await r.text();
  } catch (e) {
    out.problems.push(`fetch: ${e.message}`);
    return out;
  }

  HLS.setOptions({ strictMode: true, silent: true });
  try {
    const p = HLS.parse(text);
    if (!p.isMasterPlaylist) {
      out.mediaSequence = p.mediaSequenceBase;
      out.segments = p.segments.length;
      out.parts = p.segments.reduce((n, s) => n + (s.parts ? s.parts.length : 0), 0) +
        (p.prefetchSegments || []).reduce((n, s) => n + (s.parts ? s.parts.length : 0), 0);
    }
  } catch (e) {
    out.problems.push(`hls-parser (strict): ${e.message}`);
  }

  const parser = new Parser();
  parser.on('warn', (w) => out.problems.push(`m3u8-parser: ${w.message}`));
  parser.push(text);
  parser.end();
  const m = parser.manifest;
  if (!m.segments || m.segments.length === 0) out.problems.push('m3u8-parser: no segments');
  for (const [name, v] of [['media sequence', m.mediaSequence], ['discontinuity sequence', m.discontinuitySequence]]) {
    if (typeof v === 'number' && v > INT32_MAX) out.problems.push(`${name} ${v} exceeds 2^31-1`);
  }
  out.ok = out.problems.length === 0;
  return out;
}

const urls = process.argv.slice(2);
if (urls.length === 0) {
  console.error('usage: node validate.mjs URL [URL...]');
  process.exit(2);
}
let failed = false;
for (const url of urls) {
  const r = await check(url);
  failed ||= !r.ok;
  console.log(JSON.stringify(r));
}
process.exit(failed ? 1 : 0);
