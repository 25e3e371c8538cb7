# Vigil's services in one image: `vigil api`, `vigil ingest`, `vigil jobs`, `vigil db upgrade`...
# Multi-stage: the build stage installs the pinned dependencies (the same constraints file as
# scripts/setup) into a virtual environment; the runtime stage copies it and runs as a
# non-root user.

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/vigil
COPY requirements/constraints.txt requirements/constraints.txt
COPY pyproject.toml README.md ./
COPY edge_agent edge_agent
COPY ingest ingest
COPY analytics analytics
COPY api api
COPY vigil vigil
RUN /opt/vigil/bin/pip install -c requirements/constraints.txt '.[server]'

FROM python:3.11.11-slim-bookworm
RUN groupadd --system --gid 10001 vigil \
    && useradd --system --uid 10001 --gid vigil --home-dir /var/lib/vigil --create-home vigil
COPY --from=build /opt/vigil /opt/vigil
ENV PATH=/opt/vigil/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIGIL_DATA_DIR=/var/lib/vigil
USER vigil
WORKDIR /var/lib/vigil
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD ["vigil", "doctor"]
CMD ["vigil", "api", "--host", "0.0.0.0"]
