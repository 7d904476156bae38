# The API (CPU only): FastAPI under uvicorn (service/serve.py: API_WORKERS processes), in-process prediction
# with the CPU build of torch.
# Build from the repository root:  docker build -f docker/api.Dockerfile -t unilabel-api .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# CPU torch first, from the CPU index, so nothing below pulls a CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md constraints.txt ./
COPY models ./models
COPY api_schemas ./api_schemas
COPY service ./service
COPY worker ./worker
COPY remote ./remote
RUN pip install -c constraints.txt . \
    && useradd --system --uid 10001 --home /app unilabel \
    && mkdir -p /artifacts && chown unilabel /artifacts

USER unilabel
# MPLCONFIGDIR: the report's matplotlib keeps its font cache there (HOME, /app, is not the user's to write)
ENV ARTIFACT_DIR=/artifacts REDIS_URL=redis://redis:6379/0 DEVICE=cpu API_TORCH_THREADS=1 API_WORKERS=1 \
    MPLCONFIGDIR=/tmp/matplotlib
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["python", "-m", "service.serve", "--host", "0.0.0.0", "--port", "8000"]
