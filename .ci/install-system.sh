#!/usr/bin/env bash
# Install the Debian packages the external test tools need:
#   curl, nghttp2-client (nghttp/h2load), chromium (browser test), nginx (proxy test).
# Idempotent: runs `apt-get update` + `apt-get install` only when a package is missing.
# Services are NOT started by the install (a temporary policy-rc.d denies it), so
# no stray nginx ends up listening on port 80; tests start their own nginx.
set -euo pipefail

PKGS=(curl nghttp2-client chromium nginx)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in "${PKGS[@]}"; do
    installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    action="installed: ${missing[*]}"
else
    action="already installed: ${PKGS[*]}"
fi

# Verify every tool answers.
curl_v=$(curl --version | head -n1 | awk '{print $2}')
nghttp_v=$(nghttp --version 2>&1 | head -n1 | awk '{print $NF}')
chromium_v=$(/usr/bin/chromium --version 2>/dev/null | head -n1)
nginx_v=$(nginx -v 2>&1 | head -n1 | sed 's/^nginx version: //')

echo "install-system: ${action} (curl ${curl_v}, nghttp ${nghttp_v}, ${chromium_v}, ${nginx_v})"
