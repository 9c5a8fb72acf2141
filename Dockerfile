# syntax=docker/dockerfile:1
# PeerBX node image: one overlay peer with its SIP registrar/proxy.
#   docker build -t peerbx-node .
#   docker run --rm -p 5060:5060/udp -p 5060:5060 -p 5066:5066 -p 7400:7400/udp peerbx-node
# Settings come from environment variables (see docker/node-entrypoint.sh); extra arguments are
# passed on to `peerbx start`. On 0.0.0.0 the node asks phones for digest auth (PEERBX_AUTH=auto):
# mount a config file with `users` (PEERBX_CONFIG) or set PEERBX_AUTH=never on a private network.

FROM node:20-slim AS build
WORKDIR /app
# Sources and lockfile only (.dockerignore keeps node_modules, dist and .git out). The workspace
# packages are copied before `npm ci` so that their bin links have targets.
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages packages
# Install scripts stay off: `prepare` would build before we ask, and classic-level loads its
# bundled prebuilt binary without its install script.
RUN npm ci --no-audit --no-fund --ignore-scripts
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund --ignore-scripts \
 && test -f packages/cli/dist/src/bin.js

FROM node:20-slim
ENV NODE_ENV=production \
    PEERBX_DATA_DIR=/data \
    PEERBX_OVERLAY=0.0.0.0:7400 \
    PEERBX_SIP=0.0.0.0:5060 \
    PEERBX_WS=0.0.0.0:5066 \
    PEERBX_DOMAIN=peerbx.local \
    PEERBX_LOG_LEVEL=info \
    PEERBX_BOOTSTRAP=
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/packages packages
COPY docker/node-entrypoint.sh docker/healthcheck.mjs /usr/local/lib/peerbx/
RUN chmod 0755 /usr/local/lib/peerbx/node-entrypoint.sh \
 && mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
# Overlay (UDP datagrams, TCP links), SIP (UDP and TCP), SIP over WebSocket (TCP).
EXPOSE 7400/udp 7400/tcp 5060/udp 5060/tcp 5066/tcp
# Healthy once the node answers a SIP OPTIONS on its SIP port (bound only after it has joined).
HEALTHCHECK --interval=5s --timeout=4s --start-period=20s --retries=6 \
  CMD ["node", "/usr/local/lib/peerbx/healthcheck.mjs"]
ENTRYPOINT ["/usr/local/lib/peerbx/node-entrypoint.sh"]
CMD []
