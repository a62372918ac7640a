# The API and the workers run from this one image (the role is the command's --role).
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libopenblas-dev liblapacke-dev g++ make python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json binding.gyp ./
COPY models/linalg/native ./models/linalg/native
# The install step builds the float64 BLAS/LAPACK addon with node-gyp.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY models ./models
COPY workers ./workers
COPY services ./services
COPY scripts ./scripts
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libopenblas0-pthread liblapacke \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production \
    IMMUNIZE_DATA_DIR=/data \
    PORT=8080
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/build/Release/immunize_linalg.node ./build/Release/immunize_linalg.node
COPY --from=build /app/dist ./dist
COPY data ./data
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "dist/services/server.js", "--role", "api"]
