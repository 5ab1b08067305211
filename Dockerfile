# syntax=docker/dockerfile:1
#
# lotgraph gateway image.
#   docker build -t lotgraph:0.1.0 .
#   docker run --rm -p 8000:8000 lotgraph:0.1.0                    # gateway (`lotgraph run`)
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
    LOTGRAPH_DATA_DIR=/var/lib/lotgraph

WORKDIR /var/lib/lotgraph

# Numeric uid:gid so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["lotgraph"]
CMD ["run", "--host", "0.0.0.0", "--port", "8000"]
