# syntax=docker/dockerfile:1
# The taskpool operator image. Build from the repository root:
#   docker build -t ghcr.io/taskpool/taskpool-operator:$(python -c 'import taskpool_operator as t; print(t.__version__)') .
# tests/unit/test_images.py runs these install steps and the entrypoint as local commands (no Docker engine in CI).

# Exact tag of the base image; the same Python minor version as the project's venv.
ARG PYTHON_IMAGE=python:3.12.12-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/taskpool
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
COPY operator/ operator/
# The runtime venv gets no pip of its own: the build stage's pip installs into it (--python), so the final
# image carries neither pip nor a download cache. psycopg-binary brings libpq; the image has no compiler.
RUN python -m venv --without-pip "$VIRTUAL_ENV" \
    && python -m pip --python "$VIRTUAL_ENV/bin/python" install --no-cache-dir \
        -c requirements/constraints.txt ./operator psycopg-binary

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="taskpool-operator" \
      org.opencontainers.image.description="Kubernetes operator that runs and autoscales Django task workers from the django-tasks-db queue" \
      org.opencontainers.image.source="https://github.com/taskpool/taskpool" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="taskpool" \
      org.opencontainers.image.version="${VERSION}"
ENV VIRTUAL_ENV=/opt/taskpool \
    PATH=/opt/taskpool/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/taskpool /opt/taskpool
# A numeric non-root user, so Pod Security "restricted" (runAsNonRoot) can verify it without a passwd entry.
USER 10001:10001
# No passwd entry for 10001: kopf names its peering identity after getpass.getuser(), which reads $USER first.
ENV USER=taskpool-operator
# glibc gives every thread that allocates its own heap arena (up to 8 per core) and keeps what is freed in it:
# with the operator's handler threads (kopf's and asyncio's executors, up to 32 each on a large node) that
# free-but-kept heap grew with the pools (`make bench-many_pools` reports it: c_heap_free_kept_mb). Two
# arenas bound the waste.
ENV MALLOC_ARENA_MAX=2
EXPOSE 8080 8081
ENTRYPOINT ["taskpool-operator"]
CMD ["run"]
