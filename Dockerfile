# syntax=docker/dockerfile:1
# One image for the Python services; compose picks the service with SERVICE.
# The web UI is built here with the same commands as `make ui` (npm ci, npm run build).
FROM node:20-slim AS ui
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend ./
RUN SPE_UI_OUT_DIR=/ui npm run build

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY services ./services
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 spe
COPY --from=build /install /usr/local
COPY --from=ui /ui /app/ui
WORKDIR /app
ENV PYTHONUNBUFFERED=1 HOST=0.0.0.0 SERVICE=ingest PORT=8000 GATEWAY_STATIC_DIR=/app/ui
USER spe
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/ready', timeout=2)"
# The same command make run, the tests and the benchmarks use (services.common.stack): uvicorn
# with <SERVICE>_WORKERS worker processes and, for several, their shared metrics folder.
CMD ["sh", "-c", "exec python -m services.common.serve ${SERVICE} --host ${HOST} --port ${PORT}"]
