#!/usr/bin/env bash
# Set up a classroom server on a fresh Debian 12 / Ubuntu 24.04, as root, in one command:
#   examples/install.sh
# Idempotent: running it again changes nothing that is already in place, and never overwrites
# site.yaml, classroom.yaml or a secret.  Paths can be moved for testing with the variables below.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="${PREFIX:-/opt/classroom}"                 # the virtualenv lives in $PREFIX/venv
ETC="${ETC:-/etc/classroom}"                       # site.yaml, classroom.yaml, secrets
STATE="${STATE:-/var/lib/classroom}"               # volumes, manifest, journal, outbox, hub database
HOMES="${HOMES:-/srv/classroom/homes}"             # where volumes are mounted
SYSTEMD_DIR="${SYSTEMD_DIR:-/etc/systemd/system}"
IMAGE_CACHE="${IMAGE_CACHE:-$STATE/image-cache}"
IMAGE_TAG="${IMAGE_TAG:-classroom-student:latest}"
LINK_DIR="${LINK_DIR:-/usr/local/sbin}"            # where the `reconcile` command is linked
SKIP_APT="${SKIP_APT:-}"                           # set to skip apt-get (tests; offline re-runs)
HUB_HOST="${HUB_HOST:-$(hostname -f 2>/dev/null || hostname)}"  # the name people type in their browser
# HTTPS: "self-signed" (default: a certificate for $HUB_HOST made here; browsers warn until you replace it,
# e.g. with certbot, see the README), "CERT:KEY" (your own PEM files), or "none" (plain HTTP on 127.0.0.1:8000
# for a reverse proxy on this host that terminates TLS).  Used only when site.yaml is written.
TLS="${TLS:-self-signed}"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

# A swarm worker (README: When one server is not enough): Docker only, no accounts, no roster, no reconcile.
#   MANAGER=10.0.5.10 JOIN_TOKEN=$(ssh manager docker swarm join-token -q worker) examples/install.sh --worker
if [ "${1:-}" = "--worker" ]; then
  DOCKER_ETC="${DOCKER_ETC:-/etc/docker}"
  systemd_running() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }
  if [ -z "$SKIP_APT" ] && ! dpkg-query -W -f='${Status}' docker.io 2>/dev/null | grep -q "ok installed"; then
    say "installing docker.io"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  fi
  # No registry: a worker runs the image `reconcile image push-nodes` loaded, instead of trying a registry first.
  dropin="$SYSTEMD_DIR/docker.service.d/classroom-worker.conf"
  want=$'[Service]\nEnvironment=DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1'
  changed=""
  if [ "$(cat "$dropin" 2>/dev/null)" != "$want" ]; then
    install -d "$(dirname "$dropin")" && printf '%s\n' "$want" > "$dropin" && changed=yes
    say "wrote $dropin (DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1)"
  fi
  # Servers on one worker must not reach each other over its default bridge.
  if [ ! -e "$DOCKER_ETC/daemon.json" ]; then
    install -d "$DOCKER_ETC" && printf '{"icc": false}\n' > "$DOCKER_ETC/daemon.json" && changed=yes
    say "wrote $DOCKER_ETC/daemon.json (icc: false)"
  elif ! grep -q '"icc": *false' "$DOCKER_ETC/daemon.json"; then
    say "$DOCKER_ETC/daemon.json exists: kept; add \"icc\": false to it so servers cannot reach each other"
  fi
  if systemd_running; then
    [ -z "$changed" ] || { systemctl daemon-reload; systemctl restart docker; }
    systemctl enable --now docker
  elif ! docker info >/dev/null 2>&1; then
    say "systemd is not PID 1 here: starting dockerd in the background (log: /var/log/dockerd.log)"
    DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 nohup dockerd >>/var/log/dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  elif [ -n "$changed" ]; then
    say "dockerd was already running: restart it with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 set"
  fi
  state=$(docker info --format '{{.Swarm.LocalNodeState}}')
  if [ "$state" = active ]; then
    say "this worker is in a swarm already"
  elif [ -n "${MANAGER:-}" ] && [ -n "${JOIN_TOKEN:-}" ]; then
    say "joining the swarm of $MANAGER"
    docker swarm join --token "$JOIN_TOKEN" "$MANAGER:2377"
  else
    say "not in a swarm yet: on the manager run \`docker swarm join-token worker\` and run the command it prints here"
  fi
  say "done.  On the manager: add this worker to hub.swarm.workers in site.yaml, then \`reconcile image push-nodes\`."
  exit 0
fi

# 1. system packages
PACKAGES=(python3-venv e2fsprogs mount passwd iptables docker.io node-configurable-http-proxy debootstrap lvm2
          rsync git openssl zstd tar util-linux)
if [ -z "$SKIP_APT" ]; then
  missing=()
  for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "system packages: already installed"
  fi
fi

# 2. the package, in its own virtualenv (reinstalled only when the source changed)
hash=$(cd "$SRC" && find pyproject.toml reconciler -type f \( -name '*.py' -o -name '*.j2' -o -name '*.toml' -o -name '*.txt' -o -name '*.html' -o -name '*.css' -o -name '*.js' \) \
       -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
[ -x "$PREFIX/venv/bin/python" ] || { say "creating $PREFIX/venv"; python3 -m venv "$PREFIX/venv"; }
if [ "$(cat "$PREFIX/.source-hash" 2>/dev/null)" != "$hash" ]; then
  say "installing reconcile into $PREFIX/venv"
  "$PREFIX/venv/bin/pip" install -q --disable-pip-version-check "$SRC" 2>&1 | grep -v "^WARNING: Location" || true
  "$PREFIX/venv/bin/reconcile" --help >/dev/null
  echo "$hash" > "$PREFIX/.source-hash"
else
  say "reconcile: already installed ($hash)"
fi
install -d "$LINK_DIR" && ln -sfn "$PREFIX/venv/bin/reconcile" "$LINK_DIR/reconcile"

# 3. configuration: only when absent
install -d -m 755 "$ETC" "$STATE" "$HOMES" "$(dirname "$HOMES")/shared"
if [ ! -e "$ETC/site.yaml" ]; then
  case "$TLS" in
    none)
      PUBLIC_URL="http://127.0.0.1:8000"; TLS_YAML=""
      say "no TLS: the hub listens on $PUBLIC_URL for a reverse proxy that terminates HTTPS (see the README)";;
    self-signed)
      install -d -m 700 "$ETC/tls"
      if [ ! -e "$ETC/tls/key.pem" ]; then
        say "generating a self-signed certificate for $HUB_HOST ($ETC/tls): browsers will warn until you replace it"
        openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$HUB_HOST" \
          -addext "subjectAltName=DNS:$HUB_HOST" -keyout "$ETC/tls/key.pem" -out "$ETC/tls/cert.pem" 2>/dev/null
        chmod 600 "$ETC/tls/key.pem"
      fi
      PUBLIC_URL="https://0.0.0.0:443"; TLS_YAML="  tls: {cert: $ETC/tls/cert.pem, key: $ETC/tls/key.pem}";;
    *:*)
      PUBLIC_URL="https://0.0.0.0:443"; TLS_YAML="  tls: {cert: ${TLS%%:*}, key: ${TLS#*:}}";;
    *) echo "install.sh: TLS must be self-signed, none or CERT:KEY" >&2; exit 1;;
  esac
  say "writing $ETC/site.yaml"
  cat > "$ETC/site.yaml" <<EOF
# This server's settings (see $SRC/examples/site.yaml for every option).
classroom_file: $ETC/classroom.yaml
state_dir: $STATE
homes_dir: $HOMES
volumes: {backend: loop}
max_disable_fraction: 0.2
hub:
  public_url: $PUBLIC_URL
$TLS_YAML
  token_file: $ETC/hub-token
  cookie_secret_file: $ETC/jupyterhub_cookie_secret
  image: $IMAGE_TAG
  shared_dir: $(dirname "$HOMES")/shared
EOF
else
  say "$ETC/site.yaml exists: kept"
fi
if [ ! -e "$ETC/classroom.yaml" ]; then
  say "writing a starter $ETC/classroom.yaml (no people yet: add them, or reconcile import-csv roster.csv)"
  cat > "$ETC/classroom.yaml" <<EOF
# yaml-language-server: \$schema=$SRC/schemas/classroom.schema.json
# The desired state of this classroom: edit it (or keep it in git) and the daemon applies it.
version: 1
name: my-class
quotas:
  default: {memory: 1Gi, cpu: 1, disk: 2Gi}
admins: []
students: []
EOF
else
  say "$ETC/classroom.yaml exists: kept"
fi
for secret in hub-token jupyterhub_cookie_secret; do
  if [ ! -e "$ETC/$secret" ]; then
    (umask 077; openssl rand -hex 32 > "$ETC/$secret" 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ETC/$secret")
    say "created $ETC/$secret (0600)"
  fi
  chmod 600 "$ETC/$secret"
done
RECONCILE_SITE="$ETC/site.yaml" "$PREFIX/venv/bin/reconcile" validate >/dev/null

systemd_running() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }

# 3b. a swarm manager whose workers mount the homes over NFS (hub.swarm.homes: nfs): the kernel NFS server.
#     reconcile writes the exports (one per mounted home, for the workers only); nfs-server re-reads them at boot.
nfs=$("$PREFIX/venv/bin/python" -c 'import sys, pathlib; from reconciler.config.load import load_site
s = load_site(pathlib.Path(sys.argv[1])); print(s.hub is not None and s.hub.swarm is not None and s.hub.swarm.homes == "nfs")' "$ETC/site.yaml")
if [ "$nfs" = True ]; then
  if [ -z "$SKIP_APT" ] && ! dpkg-query -W -f='${Status}' nfs-kernel-server 2>/dev/null | grep -q "ok installed"; then
    say "installing nfs-kernel-server (hub.swarm.homes: nfs)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nfs-kernel-server >/dev/null
  fi
  if systemd_running; then
    systemctl enable --now nfs-server
  else
    say "systemd is not PID 1 here: start the NFS server yourself (rpc.mountd; rpc.nfsd)"
  fi
fi

# 4. Docker and the student image
if ! docker info >/dev/null 2>&1; then
  if systemd_running; then
    systemctl enable --now docker
  else
    say "systemd is not PID 1 here: starting dockerd in the background (log: /var/log/dockerd.log)"
    nohup dockerd >>/var/log/dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
fi
say "student image (cached by the hash of its inputs)"
RECONCILE_SITE="$ETC/site.yaml" "$PREFIX/venv/bin/reconcile" image build --cache-dir "$IMAGE_CACHE"

# 5. systemd units
install -d "$SYSTEMD_DIR"
changed=""
for unit in "$SRC"/examples/systemd/*.service; do
  target="$SYSTEMD_DIR/$(basename "$unit")"
  rendered=$(sed -e "s#/opt/classroom/venv#$PREFIX/venv#g" -e "s#/etc/classroom#$ETC#g" \
                 -e "s#/var/lib/classroom#$STATE#g" -e "s#/srv/classroom#$(dirname "$HOMES")#g" "$unit")
  if [ ! -e "$target" ] || [ "$(cat "$target")" != "$rendered" ]; then
    printf '%s\n' "$rendered" > "$target"
    changed=yes
  fi
done
units="classroom-mount.service classroom-hub.service classroom-reconcile.service"
if systemd_running; then
  [ -z "$changed" ] || systemctl daemon-reload
  systemctl enable --now $units
  say "running: $units"
else
  say "systemd is not PID 1 here, so the units are installed in $SYSTEMD_DIR but not started."
  cat <<EOF
    Start the processes by hand, in this order:
      RECONCILE_SITE=$ETC/site.yaml reconcile mount-all
      RECONCILE_SITE=$ETC/site.yaml nohup reconcile hub   > /var/log/classroom-hub.log 2>&1 &
      RECONCILE_SITE=$ETC/site.yaml nohup reconcile watch > /var/log/classroom-reconcile.log 2>&1 &
EOF
fi
say "done.  Edit $ETC/classroom.yaml; the hub will be at the public_url in $ETC/site.yaml."
