"""The plots a sweep's summary draws: each model family may declare one in its YAML, as data
(`summary_plot`, e.g. configs/model/vae.yaml), which every job's record holds in its config; this
module draws any such declaration without knowing the family (and without torch):

    summary_plot:
      name: rate_distortion     <name>.png in the sweep directory, TensorBoard tag sweep/<name>
      label: rate–distortion    the plot's name in the summary's messages
      x: recon_nats             the metric on the x axis (a key of the record's metrics)
      y: kl_nats                the metric on the y axis
      x_label, y_label, title   the axes' and the figure's text (default: the metrics, the name)
      sort_by: model.<key>      optional: a config key; jobs that differ only in it (swept as that key,
                                or as any key with its last name, e.g. a top-level shorthand) are
                                joined by a line in its order, each point annotated `<sort_label>=<value>`
      sort_label: <symbol>      (default: the key's last name)

A plot holds the ok jobs that declare it and report both of its metrics. A record written before
records held the declaration gets the one its family's YAML makes today (`shipped_declaration`).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

from genlab.sweep.records import varying_keys

DECLARATION = "summary_plot"  # the config key of a family's declaration


def _declaration(record: dict) -> dict | None:
    """The plot a job's config declares, if any (its family's YAML's where the config predates it)."""
    config = record.get("config") or {}
    plot = config[DECLARATION] if DECLARATION in config else shipped_declaration(_config_value(config, "model.name"))
    return plot if isinstance(plot, dict) and plot.get("name") else None


@functools.cache
def shipped_declaration(family: str | None) -> dict | None:
    """The plot declared by the configs/model/ YAML whose model.name is `family` (None: none declares one)."""
    from omegaconf import OmegaConf

    from genlab.config.compose import config_dir

    for path in sorted(Path(config_dir(), "model").glob("*.yaml")):
        node = OmegaConf.load(path)
        if family is not None and OmegaConf.select(node, "model.name") == family and DECLARATION in node:
            return OmegaConf.to_container(node[DECLARATION])
    return None


def declared_plots(records: list[dict]) -> dict[str, dict]:
    """name → declaration, of every plot the jobs' configs declare (the first job's, per name)."""
    plots: dict[str, dict] = {}
    for plot in filter(None, map(_declaration, records)):
        plots.setdefault(plot["name"], plot)
    return plots


def _config_value(config: dict, key: str):
    """The value at a dotted key of a plain config (None where it is absent)."""
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def plot_png(plot: dict, records: list[dict]) -> bytes | None:
    """The declared plot of the ok jobs that declare it and report its x and y metrics, as PNG bytes
    (None when there are none). Needs matplotlib (ImportError otherwise)."""
    x, y, sort_by = plot["x"], plot["y"], plot.get("sort_by")
    points = [r for r in records if r["status"] == "ok" and (_declaration(r) or {}).get("name") == plot["name"]
              and r["metrics"].get(x) is not None and r["metrics"].get(y) is not None]
    if not points:
        return None
    from matplotlib.figure import Figure

    leaf = sort_by.rsplit(".", 1)[-1] if sort_by else None
    others = [k for k in varying_keys(points) if not (leaf and (k == leaf or k.endswith("." + leaf)))]
    curves: dict[str, list[dict]] = {}
    for r in points:
        curves.setdefault(", ".join(f"{k}={r['overrides'].get(k)}" for k in others), []).append(r)
    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    axes = figure.add_subplot()
    for label, members in curves.items():
        if sort_by:
            members.sort(key=lambda r: _config_value(r["config"], sort_by) or 0)
        xs = [r["metrics"][x] for r in members]
        ys = [r["metrics"][y] for r in members]
        axes.plot(xs, ys, marker="o", label=label or None)
        for r, px, py in zip(members, xs, ys):
            value = _config_value(r["config"], sort_by) if sort_by else None
            if value is not None:
                axes.annotate(f"{plot.get('sort_label', leaf)}={value:g}", (px, py), textcoords="offset points",
                              xytext=(5, 5), fontsize=8)
    axes.set_xlabel(plot.get("x_label", x))
    axes.set_ylabel(plot.get("y_label", y))
    axes.set_title(plot.get("title", plot["name"]), fontsize=10)
    axes.grid(alpha=0.3)
    if any(curves):
        axes.legend(fontsize=8)
    out = io.BytesIO()
    figure.savefig(out, format="png", bbox_inches="tight")
    return out.getvalue()
