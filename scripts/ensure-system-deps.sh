#!/usr/bin/env bash
# Install the Debian packages the test-suite needs (redis, nftables, chromium, node …), when they are missing.
# Idempotent and fast when everything is present. Needs root for apt-get; without it,
# it says what is missing and the tests that need those tools skip with a reason.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The browser client's tests: Debian's Chromium (driven by Playwright with executable_path;
# Playwright's own browser download is not reachable) and espeak-ng for the fake microphone.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# The demo's live view is checked in a real terminal (tmux); the docs' curl example is run.
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v curl >/dev/null 2>&1 || need+=(curl)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-system-deps: missing ${need[*]} and cannot apt-get here; tests that need them will skip" >&2
  exit 0
fi
echo "ensure-system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package may start a system redis on 6379; the tests start their own on
# free ports, so stop it to leave the machine as it was.
if command -v systemctl >/dev/null 2>&1; then systemctl stop redis-server >/dev/null 2>&1 || true; fi
