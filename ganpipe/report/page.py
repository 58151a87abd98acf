"""The report as one HTML page: every figure embedded as a data: URI (so index.html alone shows everything,
also in MLflow's artifact viewer), the same PNGs written beside it for reuse."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from ganpipe import tracking
from ganpipe.objective import describe

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1250px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f2f2f2; }
figure { display: inline-block; margin: .6em 1em .6em 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; max-width: 760px; }
.note { color: #8a5a00; background: #fff8e6; padding: .3em .6em; border-left: 3px solid #e0a800; }
.meta { color: #555; font-size: .9em; }
.samples figure { width: 330px; } .samples img { width: 320px; }
"""

# after load: how many images decoded (naturalWidth > 0), readable in a dumped DOM (tests/browser.py)
CHECK = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    imgs[i].setAttribute('data-natural-width', imgs[i].naturalWidth);
    if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  }
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-rendered', ok);
});
"""


def esc(value) -> str:
    return html.escape(str(value))


def img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}" data-file="{esc(path.name)}">'


def figure(fig) -> str:
    return f"<figure>{img(fig.file, fig.caption)}<figcaption>{esc(fig.caption)}</figcaption></figure>"


def table(rows: list[dict], cls: str = "") -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{esc(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def samples(top: list) -> str:
    cells = []
    for i, t in enumerate(top, start=1):
        shown = img(t.sample, f"samples of {t.trial_id}") if t.sample else "(no sample image logged)"
        cells.append(f"<figure>{shown}<figcaption>#{i} {esc(t.trial_id)}: best objective {t.score:.4g} at step "
                     f"{esc(t.best.get('step'))}; its last sample image</figcaption></figure>")
    return "".join(cells)


def render(data, sections: list[dict], overall: list[str]) -> str:
    """sections: one per sweep, {"sweep", "findings", "rates", "top", "budget", "factors", "importance",
    "importance_note", "curves"} (ganpipe.report.build).
    overall: HTML of what spans the sweeps (the Pareto front)."""
    parts = [f"<h1>Stability report: {esc(data.title)}</h1>",
             f'<p class="meta">experiment {esc(data.experiment)}, parent run <code>{esc(data.run_id)}</code>, '
             f"tracking store <code>{esc(tracking.shareable_uri(data.uri))}</code>. Best everywhere: each trial's evaluation with the "
             f"lowest objective ({esc('; '.join(sorted({describe(s.objectives) for s in data.sweeps})))}).</p>"]
    parts += [note(n) for n in data.notes]
    parts.append('<h2 id="findings">Findings</h2>')
    several = len(sections) > 1
    rows = [{**({"sweep": s["sweep"].name} if several else {}), "finding": line}
            for s in sections for line in s["findings"]]
    parts.append(table(rows, "findings"))
    for s in sections:
        sweep = s["sweep"]
        parts.append(f"<h2>{esc(sweep.name)} <span class='meta'>(parent run {esc(sweep.run_id)})</span></h2>")
        parts += [note(n) for n in sweep.notes]
        parts.append("<h3>Expected best score vs budget</h3>" + "".join(figure(f) for f in s["budget"]))
        parts.append("<h3>Failure and collapse rates per factor</h3>" + table(s["rates"], "rates"))
        parts.append("<h3>Per-factor distributions</h3>" + ("".join(figure(f) for f in s["factors"])
                                                            or "<p>(no searched entries)</p>"))
        parts.append("<h3>Parameter importance</h3>" + (note(s["importance_note"]) if s["importance_note"] else "")
                     + "".join(figure(f) for f in s["importance"]))
        parts.append("<h3>Top trials: learning curves and samples</h3>" + "".join(figure(f) for f in s["curves"])
                     + f"<div class='samples'>{samples(s['top'])}</div>")
    parts.append("<h2>Pareto front: fid x diversity</h2>" + ("".join(overall) or
                                                             "<p>(needs fid and diversity of at least 2 trials)</p>"))
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(data.title)}</title>"
            f"<style>{STYLE}</style><script>{CHECK}</script></head><body>{''.join(parts)}</body></html>\n")
