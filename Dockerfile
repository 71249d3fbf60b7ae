# noble API, CPU image: torch 2.13.0 from the PyTorch CPU index, the package, `noble serve` with the
# shipped default surrogate. The same image runs the Dask scheduler and workers (docker/compose.yaml).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# g++: Brian2 compiles its generated code (cython target); make: the fit's cpp_standalone builds
# (noble/fit/standalone.py; without it the fit runs on the runtime); curl-free health check uses python.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ make \
    && rm -rf /var/lib/apt/lists/*

# CPU build of torch first, so the package's torch requirement is already met (no CUDA wheels).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY noble ./noble
# setuptools builds in-tree: its build/ and egg-info hold another copy of the package (the surrogates' 55 MB of
# weights), removed in the same layer so they never reach the image
RUN pip install ".[postgres]" && rm -rf build noble.egg-info

RUN useradd --create-home --uid 1000 noble && mkdir -p /data && chown noble:noble /data
USER noble
ENV NOBLE_DATA_DIR=/data \
    NOBLE_HOST=0.0.0.0 \
    NOBLE_PORT=8000
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]

CMD ["noble", "serve", "--host", "0.0.0.0", "--port", "8000"]
