# Histora in one container: the Reflex app (frontend, websocket and /api/v1 on one
# port) plus the embedded local model server. Production settings come from the
# environment, e.g. HISTORA_SECRET_KEY, HISTORA_DATABASE_URL, HISTORA_OPENAI_API_KEY.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HISTORA_ENV=production \
    HISTORA_DATA_DIR=/data \
    HISTORA_CACHE_DIR=/opt/histora-cache

RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm cmake g++ make curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies, bun and the local model server first, so code changes reuse the layer.
COPY requirements.txt requirements-dev.txt ./
COPY scripts/ ./scripts/
RUN ./scripts/setup.sh

COPY . .
RUN . scripts/env.sh && reflex export --frontend-only --no-zip >/dev/null

RUN useradd --create-home --uid 10001 histora && mkdir -p /data && chown -R histora /data /app
USER histora
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD curl -fsS http://127.0.0.1:3000/api/v1/health || exit 1

CMD ["bash", "-c", ". scripts/env.sh && exec reflex run --env prod --frontend-port 3000 --backend-port 3000 --backend-host 0.0.0.0"]
