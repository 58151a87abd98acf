"""The stability report of a sweep or a pipeline (`ganpipe report`, and at the end of every sweep and
pipeline): which settings train stably, as one HTML page with its PNGs.

data.py reads MLflow (and the sweep's Optuna study), estimators.py computes (numpy), figures.py draws
(matplotlib, Optuna), findings.py words and counts, page.py writes the HTML.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ganpipe import tracking

REPORT_DIR = "report"  # artifact folder of the parent run: report/index.html and the PNGs
TOP_K = 3


def method_factor(sweep) -> str | None:
    """The searched choice the expected-best curves are split by: the loss if searched, else the first
    choice (Lucic et al. compare methods, i.e. losses); None if no choice is searched."""
    choices = [e["path"] for e in sweep.space if e["kind"] == "choice"]
    return next((p for p in choices if p.startswith("loss.")), choices[0] if choices else None)


def build(uri: str, parent, out: Path) -> Path:
    """Write out/index.html and its PNGs for the parent run `parent`; returns the page's path."""
    from ganpipe.report import figures, findings, page
    from ganpipe.report.data import gather, ranked

    def drawn(*figs) -> list:  # the figures that were drawn (a figure function returns None for nothing to draw)
        return [f for f in figs if f]

    out.mkdir(parents=True, exist_ok=True)
    data = gather(uri, parent, out, TOP_K)
    sections = []
    for i, sweep in enumerate(data.sweeps):
        slug = str(i + 1)
        top = ranked(sweep.trials)[:TOP_K]
        imp, imp_note = figures.importance(sweep, out, slug)
        sections.append({
            "sweep": sweep, "findings": findings.findings(sweep, data.coverage_key),
            "rates": findings.rate_rows(sweep, data.coverage_key), "top": top,
            "budget": drawn(figures.budget(sweep, method_factor(sweep), out, slug)),
            "factors": drawn(*(figures.factor(sweep, e, data.coverage_key, out, slug) for e in sweep.space)),
            "importance": drawn(imp), "importance_note": imp_note,
            "curves": drawn(figures.curves(sweep, top, out, slug)),
        })
    front = figures.pareto(data.sweeps, out)
    index = out / "index.html"
    index.write_text(page.render(data, sections, [page.figure(f) for f in drawn(front)]))
    return index


def log_report(uri: str, parent_run_id: str) -> str:
    """Build the report of a sweep's or pipeline's parent run and log it to that run under report/; returns
    a line that says where. Never raises: a report that cannot be built must not fail the sweep."""
    try:
        c = tracking.client(uri)
        parent = tracking.get_run(c, parent_run_id)
        with tempfile.TemporaryDirectory() as tmp:
            build(uri, parent, Path(tmp))
            tracking.log_folder(c, parent_run_id, Path(tmp), REPORT_DIR)
        return f"stability report: artifact {REPORT_DIR}/index.html of run {parent_run_id}"
    except Exception as err:  # noqa: BLE001 - a note, never the sweep's failure
        why = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        print(f"note: the stability report was not made ({why}); try `ganpipe report {parent_run_id}`",
              file=sys.stderr)
        return ""
