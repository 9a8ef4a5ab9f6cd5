#!/usr/bin/env bash
# The report's render check (tests/tools/test_eval_report.py) screenshots report.html with headless
# Chromium, Debian's `chromium` package. Install it when it is missing and this is a root shell with
# apt (a CI container, a Docker image); otherwise say that the check will be skipped. Never fatal.
# PERCEPTION_NO_APT=1 leaves the system alone.
set -uo pipefail
for exe in chromium chromium-browser google-chrome "${PERCEPTION_CHROMIUM:-}"; do
  [[ -n "$exe" ]] && command -v "$exe" >/dev/null 2>&1 && exit 0
done
if [[ -n "${PERCEPTION_NO_APT:-}" || "$(id -u)" != "0" ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "==> Chromium not found and not installing it (needs root + apt, and PERCEPTION_NO_APT unset):"
  echo "    the report render check will be skipped (apt-get install chromium to run it)"
  exit 0
fi
echo "==> installing Debian's chromium for the report render check (PERCEPTION_NO_APT=1 skips this)"
export DEBIAN_FRONTEND=noninteractive
apt_get() { timeout 300 apt-get -q -o Acquire::http::Timeout=20 -o Acquire::Retries=1 "$@"; }
apt_get install -y --no-install-recommends chromium >/tmp/perception-chromium-install.log 2>&1 \
  || { apt_get update >>/tmp/perception-chromium-install.log 2>&1 \
       && apt_get install -y --no-install-recommends chromium >>/tmp/perception-chromium-install.log 2>&1; } \
  || echo "    could not install chromium (see /tmp/perception-chromium-install.log): the render check will be skipped"
exit 0
