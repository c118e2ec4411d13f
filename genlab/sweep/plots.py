"""The sweep summary's plot.

Rate–distortion (Alemi et al. 2018, "Fixing a Broken ELBO"): per image, the distortion
D = E_q[−log p(x|z)] (recon_nats) and the rate R = KL(q(z|x) ‖ p(z)) (kl_nats); −ELBO = D + R.
The β-VAE minimises D + β·R, whose optimum touches the achievable R–D frontier where its slope is
dR/dD = −1/β: a larger β buys a lower rate with a higher distortion.
"""

from __future__ import annotations

import io

from genlab.sweep.records import varying_keys

PLOT_NAME = "rate_distortion.png"


def _is_beta(key: str) -> bool:
    return key == "beta" or key.endswith(".beta")


def rate_distortion_png(records: list[dict]) -> bytes | None:
    """The R–D plot of the ok jobs that report recon_nats and kl_nats, as PNG bytes (None when
    there are none). Jobs that differ only in β are joined by a line, ordered by β.
    Needs matplotlib (ImportError otherwise)."""
    points = [r for r in records if r["status"] == "ok"
              and r["metrics"].get("recon_nats") is not None and r["metrics"].get("kl_nats") is not None]
    if not points:
        return None
    from matplotlib.figure import Figure

    others = [k for k in varying_keys(points) if not _is_beta(k)]
    curves: dict[str, list[dict]] = {}
    for r in points:
        curves.setdefault(", ".join(f"{k}={r['overrides'].get(k)}" for k in others), []).append(r)
    figure = Figure(figsize=(6.4, 4.8), dpi=100)
    axes = figure.add_subplot()
    for label, members in curves.items():
        members.sort(key=lambda r: r["config"]["model"].get("beta") or 0)
        distortion = [r["metrics"]["recon_nats"] for r in members]
        rate = [r["metrics"]["kl_nats"] for r in members]
        axes.plot(distortion, rate, marker="o", label=label or None)
        for r, d, k in zip(members, distortion, rate):
            beta = r["config"]["model"].get("beta")
            if beta is not None:
                axes.annotate(f"β={beta:g}", (d, k), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("distortion D = −log p(x|z)  [recon_nats, nats per image]")
    axes.set_ylabel("rate R = KL(q(z|x) ‖ p(z))  [kl_nats, nats per image]")
    axes.set_title("Rate–distortion across the sweep (final training window)", fontsize=10)
    axes.grid(alpha=0.3)
    if any(curves):
        axes.legend(fontsize=8)
    out = io.BytesIO()
    figure.savefig(out, format="png", bbox_inches="tight")
    return out.getvalue()
