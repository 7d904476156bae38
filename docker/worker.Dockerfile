# The training worker: Celery (prefork, one process) on a CUDA base image with the GPU build of torch.
# One container per GPU; it falls back to the CPU when it sees none (DEVICE=auto).
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t unilabel-worker .
#
# torch==2.13.0 from PyPI is its CUDA 13.0 build for Linux x86_64: its metadata requires cuda-toolkit 13.0.3,
# nvidia-cudnn-cu13 9.20 and nccl, all as wheels, so the CUDA libraries come with torch and the image needs only
# CUDA 13's base layer; the host needs an NVIDIA driver for CUDA 13 (>= 580) and the container toolkit.
# (Checked against PyPI's metadata for torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl; the image itself
# has not been built here: no Docker engine on the development machine.)
FROM nvidia/cuda:13.0.0-base-ubuntu24.04

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_NO_CACHE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
WORKDIR /app

# A standalone CPython 3.11 (the project needs >=3.11,<3.12; Ubuntu 24.04 ships 3.12), then GPU torch.
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv
RUN uv venv /opt/venv --python 3.11 \
    && uv pip install torch==2.13.0

COPY pyproject.toml README.md constraints.txt ./
COPY models ./models
COPY api_schemas ./api_schemas
COPY service ./service
COPY worker ./worker
COPY remote ./remote
RUN uv pip install -c constraints.txt . \
    && useradd --system --uid 10001 --home /app unilabel \
    && mkdir -p /artifacts && chown unilabel /artifacts

USER unilabel
# MPLCONFIGDIR: matplotlib's font cache (HOME, /app, is not the user's to write)
ENV ARTIFACT_DIR=/artifacts REDIS_URL=redis://redis:6379/0 DEVICE=auto MPLCONFIGDIR=/tmp/matplotlib
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD celery -A worker.app:celery_app inspect ping -d "worker@$HOSTNAME" -t 5 | grep -q pong
CMD ["celery", "-A", "worker.app:celery_app", "worker", "--pool", "prefork", "--concurrency", "1", \
     "--hostname", "worker@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
