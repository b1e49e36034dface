#!/usr/bin/env bash
# Builds the local images the docker runtime's tests (and a newcomer's first
# pods) use, without any registry: a rootfs from Debian's busybox-static,
# brought in with `docker import`. Idempotent: an image already present is
# kept (bump its tag when what goes into it changes).
#
#   shoal-test/busybox:1   busybox (sh, httpd, nc, ...), CMD ["sh"]
#   shoal-test/web:1       the same with /www/index.html, and as its CMD
#                          `httpd -f -p 8080 -h /www` (EXPOSE 8080)
#
#   ./scripts/images.sh            build what is missing
#   ./scripts/images.sh --check    exit 1 if an image is missing
set -euo pipefail
cd "$(dirname "$0")/.."

images=(shoal-test/busybox:1 shoal-test/web:1)
have() { docker image inspect "$1" >/dev/null 2>&1; }

if [ "${1:-}" = --check ]; then
  for i in "${images[@]}"; do have "$i" || { echo "missing image $i (./scripts/images.sh)"; exit 1; }; done
  exit 0
fi
command -v docker >/dev/null 2>&1 || { echo "images.sh: no docker CLI"; exit 1; }
docker version --format '{{.Server.APIVersion}}' >/dev/null || { echo "images.sh: the Docker Engine does not answer"; exit 1; }

missing=()
for i in "${images[@]}"; do have "$i" || missing+=("$i"); done
((${#missing[@]})) || exit 0

if [ ! -x /bin/busybox ] || ! /bin/busybox --list >/dev/null 2>&1 || ! file -L /bin/busybox 2>/dev/null | grep -q static; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq busybox-static file >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root="$tmp/rootfs"
mkdir -p "$root"/{bin,etc,tmp,root,www,home/user}
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/:/bin/false
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
user:x:1000:
nogroup:x:65534:
EOF
chown 1000:1000 "$root/home/user"
echo "shoal-test web" > "$root/www/index.html"

build() { # tag, then --change arguments
  local tag=$1; shift
  have "$tag" && return 0
  tar --numeric-owner -C "$root" -c . | docker import "$@" - "$tag" >/dev/null
  echo "images.sh: built $tag"
}
build shoal-test/busybox:1 --change 'ENV PATH=/bin' --change 'CMD ["sh"]'
build shoal-test/web:1 --change 'ENV PATH=/bin' --change 'EXPOSE 8080' \
  --change 'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]'
