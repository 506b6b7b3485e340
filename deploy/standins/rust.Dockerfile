# Stand-in for lukemathwalker/cargo-chef:latest-rust-<version>-slim-bookworm: the local bookworm
# base, a C toolchain for -sys crates, and the Rust toolchain and cargo-chef copied from the host.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# The host's own extra certificate authorities (none on most machines).
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY rust /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo && rustc --version && cargo --version && cargo chef --version
