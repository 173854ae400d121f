# The Wanli Safety service (`wanli run`): MQTT ingest, alert engine, operations screen.
# Used by docker-compose.yml; configured entirely through WANLI_* environment variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# README.md is part of the package metadata (pyproject's `readme`).
COPY pyproject.toml README.md ./
COPY foundation ./foundation
COPY wanli ./wanli
COPY ingest ./ingest
COPY devices ./devices
COPY alerts ./alerts
COPY dashboards ./dashboards
COPY simulators ./simulators
RUN pip install . \
    && groupadd --system --gid 1883 wanli \
    && useradd --system --uid 1883 --gid 1883 --home-dir /data wanli \
    && mkdir -p /data \
    && chown wanli:wanli /data

# uid 1883 is the eclipse-mosquitto image's `mosquitto` user: in docker-compose.yml the service
# shares the broker's process namespace and signals it to reload the files it writes for it
# (a process may signal only one of its own uid).
# Registry, incidents and dead letters live here; docker-compose.yml mounts a volume.
ENV WANLI_DATA_DIR=/data \
    WANLI_HTTP_HOST=0.0.0.0 \
    WANLI_HTTP_PORT=8000
VOLUME ["/data"]
WORKDIR /data
USER wanli
EXPOSE 8000

CMD ["wanli", "run"]
