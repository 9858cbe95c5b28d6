# syntax=docker/dockerfile:1
# aiops: a multi-stage build. cargo-chef compiles the dependencies in a layer of their own, keyed on
# the Cargo manifests and lock file only, so a change to the sources rebuilds aiops and nothing else.
# The runtime image is Debian slim with the one binary, run as a non-root user.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p aiops --bin aiops

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/aiops --shell /usr/sbin/nologin aiops \
    && mkdir -p /var/lib/aiops/data \
    && chown -R aiops /var/lib/aiops
COPY --from=builder /src/target/release/aiops /usr/local/bin/aiops
USER aiops
# The store's default, sqlite://data/aiops.db, is relative to here: /var/lib/aiops/data.
WORKDIR /var/lib/aiops
VOLUME ["/var/lib/aiops/data"]
ENV AIOPS__SERVER__LISTEN=0.0.0.0:8080 \
    AIOPS__LOG__FORMAT=json
EXPOSE 8080
# `aiops health` GETs /health on server.listen: the image needs no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/aiops", "health"]
ENTRYPOINT ["/usr/local/bin/aiops"]
CMD ["serve"]
