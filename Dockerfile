# syntax=docker/dockerfile:1
# Switchboard's container image: one image with both binaries, built with the Rust toolchain and run
# on distroless/cc (glibc and CA certificates, no shell), as the nonroot user 65532.
#
#   docker build -t switchboard .
#   docker run --rm -p 4233:4233 -p 9233:9233 switchboard                       # a standalone edge
#   docker run --rm switchboard --nats nats://nats:4222                         # an edge of a cluster
#   docker run --rm -p 9234:9234 -e SWITCHBOARD_ADMIN_LISTEN=0.0.0.0:9234 \
#     --entrypoint /usr/local/bin/switchboard-router switchboard --nats nats://nats:4222   # a router
#
# docs/operations.md ("Container image") says more. scripts/image lints this file (hadolint) and
# assembles the same final stage with buildah, without a Docker daemon or registry, and runs it: it
# reads the final stage's LABEL, COPY --from=build, ENV, EXPOSE, USER and ENTRYPOINT lines from here,
# so keep each of those instructions on one line and in exec form.

# The toolchain the tests run with (Cargo.toml's rust-version is the oldest that builds), on Debian 12
# like distroless/cc-debian12, so the binaries find the glibc they were linked against.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# No COPY of the sources: they are bind-mounted, and the registry and the target directory live in
# BuildKit caches, so a change of one file recompiles only the crates it touches, and dependencies are
# downloaded and compiled once. The binaries are copied out of the cache into the image's layer.
RUN --mount=type=bind,target=/src \
    --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/target,sharing=locked \
    CARGO_TARGET_DIR=/target cargo build --release --locked --bins \
    && install -D -m 0755 -t /out /target/release/switchboard-edge /target/release/switchboard-router

FROM gcr.io/distroless/cc-debian12:nonroot
# Cargo.toml's [workspace.package] version, repository and license; scripts/image checks that they
# agree.
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="switchboard"
LABEL org.opencontainers.image.description="A palava-compatible WebRTC signaling server (switchboard-edge) and its cluster router (switchboard-router)"
LABEL org.opencontainers.image.source="https://example.invalid/switchboard"
LABEL org.opencontainers.image.licenses="Apache-2.0"
LABEL org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/switchboard-edge /usr/local/bin/switchboard-edge
COPY --from=build /out/switchboard-router /usr/local/bin/switchboard-router
# The binaries listen on 127.0.0.1 by default; in a container that is unreachable from outside, so the
# image listens on every interface. The router reads SWITCHBOARD_ADMIN_LISTEN too: in this image its
# admin port is 9233 unless overridden (docs/operations.md).
ENV SWITCHBOARD_LISTEN=0.0.0.0:4233
ENV SWITCHBOARD_ADMIN_LISTEN=0.0.0.0:9233
# The edge's public (WebSockets, the JS client, the demo page) and admin (metrics, probes) ports.
EXPOSE 4233 9233
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/switchboard-edge"]
