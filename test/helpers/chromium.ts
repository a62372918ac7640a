/** Debian's chromium, as the browser tests drive it: headless, and kept off the network it would otherwise reach for. */
import { existsSync } from 'node:fs';

export const CHROMIUM = '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Stops a browser test file at load, with what to install, when chromium is missing. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: the browser tests drive Debian's chromium package. ` +
        'Install it with scripts/ensure-chromium.sh (as root: apt-get install chromium).',
    );
  }
}
