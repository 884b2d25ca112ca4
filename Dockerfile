# rollbot: the Slack app (`rollbot serve`), slim, multi-stage, non-root.
#
#   docker build -t rollbot .                                   # PostgreSQL 15 client tools
#   docker build --build-arg PG_MAJORS="14 15 16" -t rollbot .   # one set per server major
#   docker run --env-file rollbot.env -p 3000:3000 rollbot serve --http --port 3000
#   docker run --env-file rollbot.env rollbot serve --socket
#
# pg_dump/pg_restore must match the SERVER's major version, so PG_MAJORS lists every
# major the bot talks to; they come from the PostgreSQL project's apt repository and
# land in /usr/lib/postgresql/<major>/bin, where rollbot looks first.

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------- build: locked venv
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv
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
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl gnupg; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL https://www.postgresql.org/media/keys/ACCC4CF8.asc \
      -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    for v in ${PG_MAJORS}; do pkgs="$pkgs postgresql-client-$v"; done; \
    apt-get install -y --no-install-recommends $pkgs; \
    apt-get purge -y --auto-remove curl gnupg; \
    rm -rf /var/lib/apt/lists/*; \
    for v in ${PG_MAJORS}; do /usr/lib/postgresql/$v/bin/pg_dump --version; done
RUN useradd --system --create-home --home-dir /home/rollbot --uid 10001 rollbot \
    && install -d -o rollbot -g rollbot /data
COPY --from=build --chown=rollbot:rollbot /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ROLLBOT_DATABASE_URL=sqlite:////data/rollbot.db
USER rollbot
WORKDIR /data
EXPOSE 3000
# No HEALTHCHECK: Socket Mode serves no HTTP. In HTTP mode probe GET /healthz.
ENTRYPOINT ["rollbot"]
CMD ["serve", "--http", "--port", "3000"]
