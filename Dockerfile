# kopfscale's operator image (also the default image of Greeter Pods: `kopfscale greet`).
#
# Two stages: `build` makes a virtual environment with kopfscale and its runtime dependencies;
# the final stage is the same base with only that environment copied in: no compilers, no pip,
# no caches. It runs as a fixed non-root UID (10001), which the Helm chart and deploy/ also set.
# The build context is pyproject.toml, README.md and operator/ only (.dockerignore): the image holds
# the operator (kopfscale) and the greeting server (kopfscale_greeting), never the local control
# plane (tools/devcluster) or tests (tests/unit/test_packaging.py checks the wheel).
#
# Build with any OCI builder; on machines without a registry or a Docker engine, see
# tools/image/build.sh (buildah, a locally made base image passed as BASE_IMAGE).

# The base: an official slim Python image, pinned by its full version.
# checkov:skip=CKV_DOCKER_7:FROM uses the BASE_IMAGE ARG, whose default is pinned to a full Python version; checkov cannot resolve ARGs.
ARG BASE_IMAGE=docker.io/library/python:3.11.14-slim-bookworm

FROM ${BASE_IMAGE} AS build
# A CA bundle for pip behind a TLS-intercepting proxy: the path of a file mounted at build time
# only (buildah bud -v HOST_FILE:PATH:ro); it never becomes part of an image layer.
ARG PIP_CERT_FILE=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/kopfscale
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
# pip and setuptools leave the final venv. So does kubernetes.aio, the asyncio twin of the
# generated client that kubernetes>=35 bundles (~68 MB with bytecode): kopfscale uses the sync
# client only (kopfscale.kube), and nothing imports kubernetes.aio implicitly.
# hadolint ignore=DL3013
RUN if [ -n "$PIP_CERT_FILE" ]; then export PIP_CERT="$PIP_CERT_FILE"; fi \
    && /opt/kopfscale/bin/pip install --no-cache-dir --no-compile . \
    && /opt/kopfscale/bin/pip uninstall --yes pip setuptools \
    && rm -rf /opt/kopfscale/lib/python3*/site-packages/kubernetes/aio \
    && /opt/kopfscale/bin/python -m compileall -q -j 0 /opt/kopfscale/lib

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="kopfscale" \
      org.opencontainers.image.description="A Kubernetes operator on kopf: Greeter web apps and ScaledApp autoscaling" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kopfscale/kopfscale"
RUN groupadd --system --gid 10001 kopfscale \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin kopfscale
COPY --from=build /opt/kopfscale /opt/kopfscale
ENV PATH=/opt/kopfscale/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
USER 10001:10001
# Kubernetes probes kopf's liveness endpoint (--liveness); a Docker HEALTHCHECK would duplicate it.
# checkov:skip=CKV_DOCKER_2:Kubernetes liveness/readiness probes on kopf's /healthz are the health check; the image runs under Kubernetes only.
EXPOSE 8080 8081
ENTRYPOINT ["kopfscale"]
CMD ["run", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--log-format=json"]
