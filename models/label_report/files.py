"""Writing a report into a folder: its PNGs, report.json and report.html, each through a temp file and a
rename; ``write_report`` for a run."""

from __future__ import annotations

from pathlib import Path

from models.label_report.run_data import build_report
from models.report import write_bytes_atomic

__all__ = ["write_files", "write_report"]


def write_files(files: dict[str, bytes], out: Path) -> Path:
    """A report's files (``LabelReport.files()``) into ``out``, made if missing; returns the page's path."""
    try:
        for name, content in files.items():
            write_bytes_atomic(out / name, content)
    except OSError as err:
        raise ValueError(f"out: cannot write the report into {out}: {err.strerror or err}") from None
    return out / "report.html"


def write_report(
    run_dir: str | Path, out_dir: str | Path | None = None, dataset_dir: str | Path | None = None
) -> Path:
    """Write report.html (self-contained), report.json (the plotted data) and the PNGs into ``out_dir``
    (default RUN/report/); returns the page's path."""
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "report"
    return write_files(build_report(run_dir, dataset_dir).files(), out)
