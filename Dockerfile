# syntax=docker/dockerfile:1
#
# lotgraph gateway image.
#   docker build -t lotgraph:0.1.0 .
#   docker run --rm -p 8000:8000 -e LOTGRAPH_AUTH__JWKS_URL=https://idp/jwks.json lotgraph:0.1.0   # gateway
#   (`lotgraph run`, production mode: it needs its identity provider's keys, LOTGRAPH_AUTH__JWKS_URL or
#   LOTGRAPH_AUTH__KEY_FILE; the port is LOTGRAPH_PORT, which the HEALTHCHECK follows)
#   docker run --rm lotgraph:0.1.0 sim --host 0.0.0.0 --port 8000  # simulators on 8001-8004
#
# Stage 1 builds the project and its dependencies into /opt/venv; stage 2 copies only that venv,
# so no compiler, pip cache or source tree reaches the runtime image.

FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Same path as in the runtime stage: console-script shebangs point at /opt/venv/bin/python.
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"
RUN pip install --upgrade pip

WORKDIR /src
COPY . .
# A regular (non-editable) install: pip builds the wheel and installs it with its dependencies.
RUN pip install . \
 && python -m compileall -q /opt/venv \
 && lotgraph --help > /dev/null


FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="lotgraph" \
      org.opencontainers.image.description="Governed GraphQL gateway over ERP, QMS, WMS and MES" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 lotgraph \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/lotgraph --no-create-home \
        --shell /usr/sbin/nologin lotgraph \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/lotgraph

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOTGRAPH_MODE=production \
    LOTGRAPH_DATA_DIR=/var/lib/lotgraph \
    LOTGRAPH_HOST=0.0.0.0 \
    LOTGRAPH_PORT=8000

WORKDIR /var/lib/lotgraph

# Numeric uid:gid so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000

# GET /healthz on the port the gateway listens on: LOTGRAPH_PORT (set it, not `run --port`, to move the port).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LOTGRAPH_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["lotgraph"]
# Host and port come from LOTGRAPH_HOST and LOTGRAPH_PORT (above), so the HEALTHCHECK sees what `run` uses.
CMD ["run"]
