// Debian's headless Chromium for the e2e scripts (watch.mjs, ll.mjs), driven by playwright-core.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

// These machines have no GPU and a closed network: without the background-networking flags Chromium
// keeps trying to reach Google's hosts.
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// Starts Chromium (`CHROMIUM`, default /usr/bin/chromium) on an empty profile, so no state leaks between
// runs and nothing is read from the user's profile. Returns the context and a `close` that also removes
// the profile; the profile is removed as well if the launch fails.
export async function launch({ viewport, extraArgs = [] }) {
  const profile = mkdtempSync(join(tmpdir(), 'e2e-chromium-'));
  const remove = () => rmSync(profile, { recursive: true, force: true });
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: [...FLAGS, ...extraArgs],
      viewport,
    });
  } catch (e) {
    remove();
    throw e;
  }
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      remove();
    },
  };
}
