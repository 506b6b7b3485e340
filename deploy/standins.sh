#!/usr/bin/env bash
# Builds local stand-ins for the official images that deploy/Dockerfile and
# deploy/docker-compose.yml name, for a machine that cannot pull from a public registry.
# Each is made from Debian's packages and tagged with the official name, so the Dockerfile and
# the compose file run unchanged:
#   debian:bookworm-slim      debootstrap bookworm, minbase variant
#   redis:7-bookworm          that plus Debian's redis-server
#   lukemathwalker/cargo-chef:latest-rust-<version>-slim-bookworm
#                             that plus gcc, libc6-dev, this machine's Rust toolchain, cargo-chef
# An image that already exists is kept (pass --force to rebuild all). Needs root, docker,
# debootstrap, and the Debian mirror and crates.io reachable; build steps that fetch use the
# host network.
set -euo pipefail
cd "$(dirname "$0")/.."

force=false
[ "${1:-}" = "--force" ] && force=true

rust_version=$(rustc --version | awk '{print $2}' | cut -d. -f1,2)
RUNTIME_IMAGE=${RUNTIME_IMAGE:-debian:bookworm-slim}
REDIS_IMAGE=${REDIS_IMAGE:-redis:7-bookworm}
BUILDER_IMAGE=${BUILDER_IMAGE:-lukemathwalker/cargo-chef:latest-rust-${rust_version}-slim-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CARGO_CHEF_VERSION=${CARGO_CHEF_VERSION:-0.1.78}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

wanted() { $force || ! docker image inspect "$1" >/dev/null 2>&1; }
say() { printf 'standins: %s\n' "$*"; }

if wanted "$RUNTIME_IMAGE"; then
    say "$RUNTIME_IMAGE from debootstrap (minbase)"
    debootstrap --variant=minbase bookworm "$work/rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log"; exit 1; }
    # What the official slim image also leaves out: package caches and lists.
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    tar -C "$work/rootfs" -c . | docker import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$RUNTIME_IMAGE" >/dev/null
else
    say "$RUNTIME_IMAGE exists"
fi

if wanted "$REDIS_IMAGE"; then
    say "$REDIS_IMAGE from Debian's redis-server"
    docker build --network host -q -t "$REDIS_IMAGE" \
        --build-arg "BASE=$RUNTIME_IMAGE" -f deploy/standins/redis.Dockerfile deploy/standins \
        >/dev/null 2>"$work/build.log" || { cat "$work/build.log"; exit 1; }
else
    say "$REDIS_IMAGE exists"
fi

if wanted "$BUILDER_IMAGE"; then
    say "$BUILDER_IMAGE from this machine's Rust $(rustc --version | awk '{print $2}') and cargo-chef $CARGO_CHEF_VERSION"
    sysroot=$(rustc --print sysroot)
    mkdir -p "$work/ctx/rust"
    # The toolchain without its documentation (rustc finds its libraries next to its binary).
    for part in bin lib libexec etc; do
        [ -d "$sysroot/$part" ] && cp -a "$sysroot/$part" "$work/ctx/rust/"
    done
    cargo install --quiet --locked --root "$work/chef" cargo-chef --version "$CARGO_CHEF_VERSION"
    cp "$work/chef/bin/cargo-chef" "$work/ctx/rust/bin/"
    # The certificate authorities this machine adds to Debian's (a TLS-inspecting egress proxy,
    # say), so that cargo in the image reaches crates.io as cargo here does.
    mkdir -p "$work/ctx/ca"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$work/ctx/ca/"
    fi
    cp deploy/standins/rust.Dockerfile "$work/ctx/Dockerfile"
    docker build --network host -q -t "$BUILDER_IMAGE" --build-arg "BASE=$RUNTIME_IMAGE" "$work/ctx" \
        >/dev/null 2>"$work/build.log" || { cat "$work/build.log"; exit 1; }
else
    say "$BUILDER_IMAGE exists"
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' |
    grep -E "^(${RUNTIME_IMAGE}|${REDIS_IMAGE}|${BUILDER_IMAGE}) " | sed 's/^/standins: /'
