# dancegate: DANE client-authentication TLS front proxy.
#
#   docker build -t dancegate .
#   docker run --rm -p 8443:8443 -v "$PWD/config:/etc/dancegate:ro" dancegate
#
# The configuration directory (dancegate.yaml and the files it names) is
# mounted at /etc/dancegate. The admin listener must stay on 127.0.0.1:9901
# (the default) for the HEALTHCHECK below, or be set to 0.0.0.0:9901 so that
# an orchestrator can probe it (see examples/kubernetes).

ARG NODE_VERSION=26

# --- build: the native TLS engine and the TypeScript, full dependency set --
FROM node:${NODE_VERSION}-slim AS build
# A C compiler for the native TLS engine, in this stage only. The addon needs
# no libssl-dev: it compiles against the headers of this image's own Node
# (/usr/local/include/node, OpenSSL's included) and uses the OpenSSL inside
# the node executable at run time.
RUN apt-get update \
  && apt-get install -y --no-install-recommends gcc libc6-dev make \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the install script would build the addon before its
# sources are here; it is built explicitly below, and must succeed.
RUN npm ci --ignore-scripts
# Before src/, so that a TypeScript change does not recompile the addon.
COPY native ./native
RUN DANCEGATE_NATIVE_BUILD=require node native/tls-engine/build.mjs
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY certs ./certs
RUN npm run build

# --- runtime: production dependencies and the compiled code only ----------
FROM node:${NODE_VERSION}-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /src/dist ./dist
# The loader looks for the addon at <package root>/native/tls-engine/build/.
COPY --from=build /src/native/tls-engine/build/dancegate_tls.node ./native/tls-engine/build/dancegate_tls.node
# Non-root: the image's own 'node' user (uid 1000). Ports below 1024 need
# CAP_NET_BIND_SERVICE or a port mapping (-p 443:8443).
USER node
VOLUME ["/etc/dancegate"]
EXPOSE 8443 9901
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9901/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["serve", "-c", "/etc/dancegate/dancegate.yaml"]
