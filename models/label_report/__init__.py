"""The label report: what a run learned, as plots and tables in one self-contained HTML page.

``build_report(run_dir, dataset_dir)`` reads a run directory (models/run_dir.py) and returns a
``LabelReport``: ``data``, every plotted number and table as plain JSON-able dicts and lists (no NaN: a
missing number is None; no server path: a dataset is named by its folder's name), and ``figures``, the PNGs by
file name; ``report.html()`` is the page, the PNGs embedded as data: URIs (no network, no JavaScript).
``write_report`` writes report.html, report.json and the PNGs into a folder (default RUN/report/).
``write_compare_report`` does the same for a ``unilabel compare`` folder (its results.json): metrics by
strategy with error bars and the paired differences by seed.

The modules, one job each: run_data.py reads a run and computes the report's data; figures.py draws the PNGs
(matplotlib's Agg renderer, under a lock: matplotlib is not thread-safe and a server may build reports from
several threads); page.py builds the HTML (strategy_page.py its MUCN and strategy diagnostics sections);
files.py writes the files; compare.py is the comparison report (its data, figures and page); content.py holds
the ``LabelReport`` they share.
"""

from models.label_report.compare import build_compare_report, write_compare_report
from models.label_report.content import LabelReport
from models.label_report.files import write_report
from models.label_report.run_data import build_report

__all__ = ["LabelReport", "build_compare_report", "build_report", "write_compare_report", "write_report"]
