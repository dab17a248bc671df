# The invoker's production image: openwhisk-invoker-ts:<version>.
#
# Build it with scripts/build-invoker-image.sh, which first stages what this
# file copies (no registry, no network inside the build):
#   .cache/invoker-image/deps/node_modules   production dependencies only:
#                                            `npm ci --omit=dev --omit=optional`
#                                            from package-lock.json, on the host
#   .cache/invoker-image/app/                package.json and dist/ (`tsc -p
#                                            tsconfig.build.json`, a clean tree)
#   .cache/invoker-image/tini                Debian's static tini (/usr/bin/tini-static)
# and imports the base (Node.js 24 and the libraries it links, nothing else:
# no shell, no package manager) as whisk/node24-base:local.
#
# In a registry world BASE_IMAGE is a pinned image, by digest, never a moving
# tag alone, e.g.
#   --build-arg BASE_IMAGE=docker.io/library/node:24-bookworm-slim@sha256:<digest>
# Nothing below needs more than /usr/bin/node in the base.
#
# Exec forms only (the base has no shell); works with the classic builder
# (DOCKER_BUILDKIT=0) and BuildKit alike: no COPY --chmod/--link, no heredocs.
ARG BASE_IMAGE=whisk/node24-base:local

# ------------------------------------------------------------------ build
# Assembles /app, the user and the journal directory, and checks that the
# production tree alone loads every module of the invoker.
FROM ${BASE_IMAGE} AS build
ARG STAGE=.cache/invoker-image
ARG INVOKER_UID=10001
ARG INVOKER_GID=10001
# Group id of the Docker socket the invoker will use; when given, the user is
# made a member of a `docker` group with that id in /etc/group. Empty: none
# (grant the group at run time: `docker run --group-add <gid>`, Kubernetes
# `securityContext.supplementalGroups: [<gid>]`).
ARG DOCKER_GID=

COPY ${STAGE}/deps/node_modules/ /app/node_modules/
COPY ${STAGE}/app/ /app/
COPY ${STAGE}/tini /usr/bin/tini
COPY scripts/invoker-image-setup.mjs /build/setup.mjs
WORKDIR /app
RUN ["/usr/bin/node", "/build/setup.mjs"]

# ------------------------------------------------------------------ runtime
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG INVOKER_UID=10001
ARG INVOKER_GID=10001
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=https://github.com/apache/openwhisk

COPY --from=build /etc/passwd /etc/group /etc/
COPY --from=build /usr/bin/tini /usr/bin/tini
COPY --from=build /app/ /app/
COPY --from=build --chown=${INVOKER_UID}:${INVOKER_GID} /var/lib/invoker/ /var/lib/invoker/

LABEL org.opencontainers.image.title="openwhisk-invoker-ts" \
      org.opencontainers.image.description="Apache OpenWhisk-compatible invoker (HTTP push and Kafka), Node.js 24" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# --max-semi-space-size=8 (MiB): V8's young generation grows to 3x 16 MiB
# under load by default; measured with test/bench/e2e.bench.ts, 8 MiB kept
# the invoker's RSS after load at 145 MB instead of 182 MB with no rise in
# CPU per activation beyond run-to-run noise (2 MiB: 132 MB, but more CPU).
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    NODE_ENV=production \
    NODE_OPTIONS=--max-semi-space-size=8 \
    HOME=/tmp \
    INVOKER_JOURNAL_DIR=/var/lib/invoker/journal

WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it. The uid alone (no
# ":gid"): the engine then takes the primary group from /etc/passwd and adds
# the user's supplementary groups from /etc/group, the docker group included
# (with "uid:gid" it adds none). Access to the Docker socket comes from that
# group (DOCKER_GID above) or from one granted at run time.
USER ${INVOKER_UID}
EXPOSE 8080
# tini is PID 1: it forwards SIGTERM/SIGINT to node (which drains and exits 0)
# and reaps orphans; node as PID 1 would get no default signal handling.
# Override CMD (Kubernetes `args:`), never the entrypoint (`command:`).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/usr/bin/node", "/app/dist/invoker/main.js"]
