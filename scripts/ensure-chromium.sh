#!/usr/bin/env bash
# Makes sure Debian's chromium is at /usr/bin/chromium for the browser tests, installing the package when it is
# missing and this runs as root. Nothing is downloaded at test time; playwright-core only drives this browser.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  if [ -x "$CHROMIUM" ]; then exit 0; fi
  echo "ensure-chromium: installed Debian's chromium package but $CHROMIUM is still missing" >&2
  exit 1
fi
echo "ensure-chromium: $CHROMIUM is missing; the browser tests need Debian's chromium package (as root: apt-get install chromium)" >&2
exit 1
