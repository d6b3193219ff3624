#!/usr/bin/env bash
# Installs, from Debian's packages, what the tests run beside .NET: bubblewrap (the code-evaluation sandbox) and
# chromium (the dashboard tests drive it headless through Playwright).
# Does nothing when everything is present; needs root or sudo otherwise.
set -euo pipefail
declare -A needed=( [bwrap]=bubblewrap [chromium]=chromium )
missing=()
for command in "${!needed[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${needed[$command]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages the tests need: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  $sudo apt-get update >/dev/null
  $sudo apt-get install -y --no-install-recommends "${missing[@]}"
}
