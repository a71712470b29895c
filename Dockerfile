# syntax=docker/dockerfile:1
#
# kpod-metrics node agent image. Build it with `make image` (scripts/image/build.sh):
# it turns the package and its dependencies into wheels first (build/image/wheels), so
# this build needs no network and no registry.
#
#   make image                                   base built from Debian packages
#   make image BASE_IMAGE=python:3.11-slim-bookworm   any base with python3 3.11 + venv
#
# Two stages on the same base (the venv built in the first stage points at the
# interpreter at the same path in the second):
#   build    creates /opt/kpod (a venv) and installs the package, with its prebuilt CO-RE
#            objects (src/kpodmetrics/bpf/objects/, committed), from the wheels only.
#   runtime  the same base plus the distribution's libbpf1 (libbpf.so.1, loaded through
#            cffi's dlopen) when the base lacks it. No compiler, no headers, no pip cache.
#
# Packages mirror `make run` (Makefile APT_RUN = libbpf1 python3-venv): the Debian base
# (scripts/image/base-image.sh) has both; a python:*-slim base has its own venv-capable
# Python and gets libbpf1 from apt here.
# tests/unit/test_deploy_dockerfile.py checks this file against the Makefile.

ARG BASE_IMAGE=localhost/kpod-metrics-base:bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY build/image/wheels /wheels
RUN python3 -m venv /opt/kpod \
 && /opt/kpod/bin/pip install --no-index --find-links /wheels --no-compile kpod-metrics \
 && /opt/kpod/bin/python -c "import importlib.resources as r, sys; \
objs = [p.name for p in r.files('kpodmetrics.bpf').joinpath('objects').iterdir() \
        if p.name.endswith('.bpf.o')]; \
print('bundled BPF objects:', objs); sys.exit(0 if objs else 'no prebuilt BPF objects: run make bpf')"

FROM ${BASE_IMAGE} AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="kpod-metrics" \
      org.opencontainers.image.description="eBPF node agent: per-pod kernel signals for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
RUN if ! ldconfig -p | grep -q 'libbpf\.so\.1 '; then \
      apt-get update \
      && apt-get install -y --no-install-recommends libbpf1 \
      && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    fi
COPY --from=build /opt/kpod /opt/kpod
ENV PATH=/opt/kpod/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
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
