# Pendra worker, CPU image:   docker build -t pendra-worker .
# NVIDIA GPUs: Dockerfile.cuda. Runs `pendra --no-ui` as a non-root user; models live in /models.
# The worker key is mounted as a file (Compose secret: /run/secrets/pendra_worker_key, pointed to
# by PENDRA_WORKER_KEY_FILE); never bake it into the image or pass it with -e.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake ninja-build git \
 && rm -rf /var/lib/apt/lists/*
# Portable CPU build (no -march=native): the image may run on another CPU than the one building it.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY installer ./installer
COPY pendra_tui ./pendra_tui
RUN python -m venv /opt/pendra \
 && /opt/pendra/bin/pip wheel --wheel-dir /wheels "llama-cpp-python>=0.3.23,<0.4" \
 && /opt/pendra/bin/pip install /wheels/*.whl . \
 && /opt/pendra/bin/python -m installer.accel --write-stamp cpu source

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin pendra \
 && mkdir -p /models /home/pendra/.pendra \
 && chown pendra:pendra /models /home/pendra/.pendra
COPY --from=build /opt/pendra /opt/pendra
ENV PATH=/opt/pendra/bin:$PATH \
    PENDRA_HOME=/home/pendra/.pendra \
    PENDRA_MODELS_DIR=/models \
    XDG_CACHE_HOME=/home/pendra/.pendra/cache \
    PYTHONUNBUFFERED=1
USER pendra
VOLUME ["/models", "/home/pendra/.pendra"]
# SIGTERM drains in-flight requests (up to 30 s by default): stop with `docker stop -t 45`.
STOPSIGNAL SIGTERM
# Healthy means the worker answers on its admin socket and holds its control-plane link.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["pendra", "healthcheck"]
ENTRYPOINT ["pendra"]
CMD ["--no-ui"]
