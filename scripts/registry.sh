#!/usr/bin/env bash
# Runs a local Docker image registry with basic auth, for the tests of
# private-registry pulls (imagePullSecrets), without the internet: Debian's
# docker-registry (the distribution registry) on 127.0.0.1, holding the
# test images of ./scripts/images.sh. Idempotent: a registry already
# answering is kept, and images it already holds are not pushed again.
#
#   127.0.0.1:$PORT/shoal-test/busybox:1
#   127.0.0.1:$PORT/shoal-test/web:1
#
#   ./scripts/registry.sh          install, start, push what is missing
#   ./scripts/registry.sh stop     stop our instance (pid file)
#
# Settings (env): SHOAL_REGISTRY_PORT (5055), SHOAL_REGISTRY_DIR
# (/tmp/shoal-registry: config, htpasswd, storage, pid, log),
# SHOAL_REGISTRY_USER (shoal), SHOAL_REGISTRY_PASSWORD (shoal-test).
#
# Docker treats 127.0.0.0/8 as an insecure (plain http) registry by default,
# so the engine needs no configuration. The engine is left holding no
# credentials for the registry (docker logout after the push), and the
# 127.0.0.1:$PORT/... tags are removed again: a test's pull is a real pull,
# and it succeeds only with the credentials the test passes.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${SHOAL_REGISTRY_PORT:-5055}
dir=${SHOAL_REGISTRY_DIR:-/tmp/shoal-registry}
user=${SHOAL_REGISTRY_USER:-shoal}
password=${SHOAL_REGISTRY_PASSWORD:-shoal-test}
addr=127.0.0.1:$port
url=http://$addr
images=(shoal-test/busybox:1 shoal-test/web:1)
bin=/usr/bin/docker-registry

# Our instance's pid, if it runs: the pid file's, or else (pid file lost)
# the listener's on our address, if it is docker-registry with our config.
running_pid() {
  local pid cmd
  pid=$(cat "$dir/registry.pid" 2>/dev/null) || true
  if ! { [ -n "$pid" ] && grep -qa docker-registry "/proc/$pid/cmdline" 2>/dev/null; }; then
    pid=$(ss -ltnpH "src $addr" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2) || true
    [ -n "$pid" ] && cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd = *"docker-registry serve $dir/config.yml"* ]] || return 1
  fi
  echo "$pid"
}
# The HTTP status of GET /v2/ (000: nothing answers), with curl's own
# arguments (-u for the credentials).
status() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$@" "$url/v2/" || true; }

if [ "${1:-}" = stop ]; then
  if pid=$(running_pid); then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "registry.sh: stopped $addr (pid $pid)"
  else
    echo "registry.sh: not running (no live pid in $dir/registry.pid)"
  fi
  rm -f "$dir/registry.pid"
  exit 0
fi
[ -z "${1:-}" ] || { echo "usage: $0 [stop]"; exit 2; }

# --- install ----------------------------------------------------------------
# docker-registry's package starts its own instance (on *:5000, all
# interfaces; config in /etc/docker/registry; user docker-registry) through
# its systemd unit or init script (the latter only where there is a
# runlevel). Ours is separate: install it with services kept from starting
# (a policy-rc.d that denies, unless the machine already has one, as Docker's
# Debian images do), then disable the package's service.
need=()
[ -x "$bin" ] || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
  echo "registry.sh: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  if [ -n "$policy" ]; then $SUDO rm -f "$policy"; trap - EXIT; fi
  if [[ " ${need[*]} " = *" docker-registry "* ]]; then
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
    else
      $SUDO /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
      $SUDO update-rc.d docker-registry disable >/dev/null 2>&1 || true
    fi
  fi
fi

# --- start ------------------------------------------------------------------
# Kept when it answers 401 without credentials and 200 with ours (whoever
# started it: the pid file may be gone with an older state dir).
if [ "$(status)" = 401 ] && [ "$(status -u "$user:$password")" = 200 ]; then
  :
else
  code=$(status)
  if [ "$code" != 000 ]; then
    echo "registry.sh: $addr is taken (GET /v2/ answers $code; not our registry, or other credentials)"
    [ "$code" = 401 ] && echo "registry.sh: stop it with: $0 stop"
    exit 1
  fi
  if pid=$(running_pid); then kill "$pid" 2>/dev/null || true; sleep 0.2; fi
  mkdir -p "$dir/storage"
  htpasswd -Bbc "$dir/htpasswd" "$user" "$password" 2>/dev/null
  cat > "$dir/config.yml" <<EOF
# Written by scripts/registry.sh (rewritten at each start).
version: 0.1
log:
  level: info
  fields:
    service: shoal-test-registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $addr
  secret: shoal-test-registry
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: shoal-test-registry
    path: $dir/htpasswd
EOF
  # Detached: its own session, stdin from /dev/null, so neither the end of
  # this script nor of its terminal stops it. (No job control here: setsid
  # and nohup exec in place, so $! is the registry's pid.)
  setsid nohup "$bin" serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null &
  echo $! > "$dir/registry.pid"
  deadline=$((SECONDS + 15))
  until [ "$(status)" = 401 ]; do
    if ! running_pid >/dev/null || ((SECONDS >= deadline)); then
      echo "registry.sh: the registry did not come up on $addr; $dir/registry.log:"
      tail -n 20 "$dir/registry.log"
      exit 1
    fi
    sleep 0.1
  done
  echo "registry.sh: started $addr (pid $(cat "$dir/registry.pid"), log $dir/registry.log)"
fi

# --- images -----------------------------------------------------------------
# Pushed when the registry's manifest does not name the local image: the
# image id is the manifest's config digest.
has() { # image
  local id manifest name=${1%:*} tag=${1##*:}
  id=$(docker image inspect -f '{{.Id}}' "$1")
  manifest=$(curl -sf -m 5 -u "$user:$password" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "$url/v2/$name/manifests/$tag") || return 1
  [[ $manifest = *"\"$id\""* ]]
}
./scripts/images.sh
push=()
for i in "${images[@]}"; do has "$i" || push+=("$i"); done
if ((${#push[@]})); then
  cleanup() {
    docker logout "$addr" >/dev/null 2>&1 || true
    for i in "${push[@]}"; do docker rmi "$addr/$i" >/dev/null 2>&1 || true; done
  }
  trap cleanup EXIT
  printf '%s' "$password" | docker login "$addr" -u "$user" --password-stdin >/dev/null 2>&1 \
    || { echo "registry.sh: docker login $addr failed"; exit 1; }
  for i in "${push[@]}"; do
    docker tag "$i" "$addr/$i"
    docker push -q "$addr/$i" >/dev/null
    echo "registry.sh: pushed $addr/$i"
  done
  cleanup
  trap - EXIT
fi
echo "registry: $addr user $user"
