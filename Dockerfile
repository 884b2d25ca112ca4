# rollbot: the Slack app (`rollbot serve`), slim, multi-stage, non-root.
#
#   docker build -t rollbot .                                   # PostgreSQL 15 client tools
#   docker build --build-arg PG_MAJORS="14 15 16" -t rollbot .   # one set per server major
#   docker run --env-file rollbot.env -p 3000:3000 rollbot serve --http --port 3000
#   docker run --env-file rollbot.env rollbot serve --socket
#   ... -v "$PWD/rollbot.toml:/app/rollbot.toml:ro" -e ROLLBOT_CONFIG=/app/rollbot.toml
#
# It runs as uid/gid 10001; state lives in the /data volume (owned by 10001).
#
# pg_dump/pg_restore must match the SERVER's major version, so PG_MAJORS lists every
# major the bot talks to; they come from the PostgreSQL project's apt repository and
# land in /usr/lib/postgresql/<major>/bin, where rollbot looks first.

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------- build: locked venv
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
# uv pinned to one exact version (from PyPI, like ./run): the one uv.lock was last written with.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY bot ./bot
COPY handlers ./handlers
COPY providers ./providers
RUN uv sync --frozen --no-dev --no-editable

# ---------------------------------------------------------------- runtime
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG PG_MAJORS="15"
# The package-list logic lives in a script so tests/test_dockerfile.py runs the same code.
COPY docker/install-pg-clients.sh /tmp/install-pg-clients.sh
RUN PG_MAJORS="${PG_MAJORS}" sh /tmp/install-pg-clients.sh && rm /tmp/install-pg-clients.sh
# A numeric uid/gid (10001), so Kubernetes' runAsNonRoot can verify it; /data (the state
# volume) belongs to it. --no-log-init: no huge sparse lastlog for a high uid.
RUN groupadd --system --gid 10001 rollbot \
    && useradd --system --no-log-init --uid 10001 --gid 10001 \
       --create-home --home-dir /home/rollbot --shell /usr/sbin/nologin rollbot \
    && install -d -o 10001 -g 10001 -m 0750 /data
# The venv stays root-owned: the app reads its code and cannot change it.
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ROLLBOT_DATABASE_URL=sqlite:////data/rollbot.db
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000
# No HEALTHCHECK: Socket Mode serves no HTTP. In HTTP mode probe GET /healthz.
ENTRYPOINT ["rollbot"]
CMD ["serve", "--http", "--port", "3000"]
