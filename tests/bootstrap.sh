#!/usr/bin/env bash
# Set up this checkout on a fresh Debian 12 (as root): system tools, then .venv with the package.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in useradd:passwd chpasswd:passwd mkfs.ext4:e2fsprogs resize2fs:e2fsprogs e2fsck:e2fsprogs \
            losetup:mount mount:mount; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || PATH="/usr/sbin:/sbin:$PATH" command -v "${pair%%:*}" >/dev/null 2>&1 \
    || need+=("${pair#*:}")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
[ -e /lib/x86_64-linux-gnu/libpam.so.0 ] || [ -e /usr/lib/x86_64-linux-gnu/libpam.so.0 ] || need+=(libpam0g)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c 'import reconciler, pydantic, yaml, hypothesis, pamela' # fail loudly if the install did not take
