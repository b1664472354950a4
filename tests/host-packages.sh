#!/usr/bin/env bash
# Debian packages the lab tier needs: real dockerd, HAProxy, sshd, busybox, and the
# system python3 (a lab VM has its own home, so not the pyenv one a test may run from).
# Idempotent; installs only what is missing. Needs root (the lab does too).
set -euo pipefail
need=()
for pkg in docker.io haproxy openssh-server busybox-static iproute2 python3; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
