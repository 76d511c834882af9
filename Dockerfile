# syntax=docker/dockerfile:1
# hs-platform: one binary on one SQLite file, with Chromium for screenshots.
#   docker build -t hs-platform .
#   docker run -p 10000:10000 -v hs-data:/var/data -e ADMIN_EMAIL=... -e ADMIN_PASSWORD=... hs-platform

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- build -------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
# The commit shown by the hs_build_info metric:
#   docker build --build-arg HS_GIT_COMMIT=$(git rev-parse HEAD) ...
ARG HS_GIT_COMMIT=unknown
WORKDIR /src
# Queries are checked against the committed .sqlx/ data, without a database.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
COPY Cargo.toml Cargo.lock ./
COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    HS_GIT_COMMIT="$HS_GIT_COMMIT" HS_RUSTC_VERSION="$(rustc --version)" \
    cargo build --release --locked --bin hs-platform \
    && install -m 0755 target/release/hs-platform /usr/local/bin/hs-platform

# --- run ---------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# chromium: screenshots; fonts: PDF/DOCX text and CJK glyphs in screenshots;
# ca-certificates: HTTPS to the Claude API and webhooks; tini: PID 1 that
# forwards SIGTERM and reaps Chromium's children.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        chromium fonts-dejavu-core fonts-droid-fallback ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*
# The service runs as this unprivileged user (see docker/entrypoint.sh).
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app
COPY --from=builder /usr/local/bin/hs-platform /usr/local/bin/hs-platform
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/docker-entrypoint
# DATA_DIR is deliberately not created here: it must be the mounted disk, and
# the service refuses to start when it is missing (rather than writing to the
# container's ephemeral file system).
ENV HOST=0.0.0.0 \
    PORT=10000 \
    DATA_DIR=/var/data \
    CHROMIUM_PATH=/usr/bin/chromium \
    LOG_FORMAT=json \
    HOME=/home/app
EXPOSE 10000
WORKDIR /home/app
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/docker-entrypoint"]
CMD ["hs-platform", "serve"]
