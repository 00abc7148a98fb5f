#!/usr/bin/env bash
# Set up this checkout on a fresh Debian 12 (as root): system packages, then .venv with the package.
# Idempotent, and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

need=()
for pair in useradd:passwd chpasswd:passwd mkfs.ext4:e2fsprogs resize2fs:e2fsprogs e2fsck:e2fsprogs \
            losetup:mount mount:mount iptables:iptables dockerd:docker.io debootstrap:debootstrap \
            configurable-http-proxy:node-configurable-http-proxy chromium:chromium systemd-analyze:systemd \
            openssl:openssl certutil:libnss3-tools zstd:zstd tar:tar setpriv:util-linux fsfreeze:util-linux; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c 'import reconciler, pydantic, yaml, hypothesis, pamela, jupyterhub, dockerspawner, playwright, kubespawner'
# nbgrader, for the tests that grade collected work with it: a venv of its own (it brings JupyterLab and a
# jupyter_server the hub's venv must not take)
[ -x .venv-nbgrader/bin/nbgrader ] || {
  python3 -m venv .venv-nbgrader
  .venv-nbgrader/bin/python -m pip install -q --disable-pip-version-check 'nbgrader>=0.9.6,<0.10' 2>&1 | grep -v "^WARNING: Location" || true
}
.venv-nbgrader/bin/nbgrader --version >/dev/null
