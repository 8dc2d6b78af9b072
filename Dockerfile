# edgecorn as a container: `edgecorn -c /etc/edgecorn/edge.yaml`, as a non-root user.
# Mount the config at /etc/edgecorn/edge.yaml and the certificates next to it (paths in the
# file are relative to the file); see docker-compose.yml and deploy/kubernetes/.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgecorn ./edgecorn
# uvloop is a Linux dependency of the package already; named here so the image never
# silently falls back to the plain asyncio loop.
RUN pip install --no-cache-dir . "uvloop>=0.19" \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin edgecorn \
    && mkdir -p /etc/edgecorn \
    && rm -rf /src
COPY deploy/healthcheck.py /usr/local/bin/edgecorn-healthcheck
WORKDIR /etc/edgecorn

# Ports below 1024 as a non-root user: Docker (20.10+) and Kubernetes set
# net.ipv4.ip_unprivileged_port_start=0 in the container; compose sets it explicitly.
USER 10001
EXPOSE 443/tcp 443/udp 80/tcp

HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "/usr/local/bin/edgecorn-healthcheck"]

ENTRYPOINT ["edgecorn", "-c", "/etc/edgecorn/edge.yaml"]
