"""Run the API: ``python -m service.serve --host 0.0.0.0 --port 8000`` (or the ``unilabel-api`` command).

Uvicorn with ``API_WORKERS`` processes (default 1) sharing one listening socket. Each process loads the models
it serves and keeps its own memos; Redis (job store, prediction cache) is shared. With more than one process,
Prometheus multiprocess mode is switched on before any process imports prometheus-client: the processes write
their counters to ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory unless given, removed when the
server exits; a given one is emptied of stale files first and left in place) and every scrape of /metrics sums
them (service/metrics.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from models.cli_args import add_version_option
from worker.settings import Settings

APP = "service.app:app"


def prepare_multiprocess_metrics() -> Path:
    """The directory of prometheus-client's multiprocess mode, exported to the processes' environment."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="unilabel-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # counts of an earlier server would be added to ours
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unilabel-api", description=__doc__.split("\n\n")[0])
    add_version_option(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, help="API processes (default: API_WORKERS, 1)")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            print(f"configuration error: {field}: {err['msg']}", file=sys.stderr)
        return 2
    workers = args.workers if args.workers is not None else settings.api_workers
    if workers < 1:
        parser.error("--workers: must be at least 1")
    made = None  # the directory this process made, to remove on the way out (never one it was given)
    if workers > 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # a given directory is always emptied
        given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        path = prepare_multiprocess_metrics()
        made = None if given else path

    import uvicorn

    from service.http_protocol import DeadlineHttpProtocol

    try:
        uvicorn.run(
            APP,
            host=args.host,
            port=args.port,
            workers=workers,
            http=DeadlineHttpProtocol,  # deadlines on a request's headers and body (service/http_protocol.py)
            access_log=settings.access_log,  # ACCESS_LOG=1: one line per request (off: it costs the hot path)
            timeout_graceful_shutdown=10,
        )
    finally:
        if made is not None:  # a temporary directory nobody else knows of
            shutil.rmtree(made, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
