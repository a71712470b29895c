# syntax=docker/dockerfile:1
#
# kpod-metrics node agent image.
#
#   docker build -t kpod-metrics:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/kpod-metrics:TAG .
#
# Two stages on the same Python base (the venv built in the first stage points at the
# interpreter at the same path in the second):
#   build    creates /opt/kpod (a venv) and installs the package with its prebuilt CO-RE
#            objects (src/kpodmetrics/bpf/objects/*.bpf.o, committed; see docs/deploy.md
#            for arm64). Only pure-Python or manylinux wheels: no compiler is needed.
#   runtime  the same base plus the distribution's libbpf1 (libbpf.so.1, loaded through
#            cffi's dlopen). No compiler, no headers, no pip cache.
#
# Packages mirror `make run` (Makefile APT_RUN = libbpf1 python3-venv): libbpf1 comes
# from apt in the runtime stage; python3-venv is what the base image's own Python
# already provides (`python -m venv`), so Debian's second interpreter is not installed.
# tests/unit/test_deploy_dockerfile.py checks this file against the Makefile.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/kpod
WORKDIR /src
# README.m[d]: optional (the glob lets the COPY succeed while pyproject.toml matches)
COPY pyproject.toml README.m[d] ./
COPY src ./src
RUN /opt/kpod/bin/pip install --no-compile . \
 && /opt/kpod/bin/python -c "import importlib.resources as r, sys; \
objs = [p.name for p in r.files('kpodmetrics.bpf').joinpath('objects').iterdir() \
        if p.name.endswith('.bpf.o')]; \
print('bundled BPF objects:', objs); sys.exit(0 if objs else 'no prebuilt BPF objects: run make bpf')"

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="kpod-metrics" \
      org.opencontainers.image.description="eBPF node agent: per-pod kernel signals for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY --from=build /opt/kpod /opt/kpod
ENV PATH=/opt/kpod/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Root (uid 0) with every capability dropped except the few the DaemonSet adds:
# Kubernetes does not raise added capabilities into the effective set of a non-root
# process (no ambient capabilities), so a non-root user could not load BPF at all.
# The root filesystem is mounted read-only by the DaemonSet; nothing here writes to it.
USER 0:0
WORKDIR /
EXPOSE 9090
ENTRYPOINT ["kpod-metrics"]
CMD ["run"]
