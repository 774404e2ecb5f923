"""Pictures of benchmark results: time per configuration (model mode), or the node's latency percentiles per
output next to its memory over the run (node mode)."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np


def plot_result(res: Dict[str, Any], path: str) -> None:
    """A picture of a model or node result: time per frame per configuration against the baseline, or the
    node's latency percentiles per output next to its memory over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if res["mode"] == "model":
        rows = {k: v for k, v in res["rows"].items() if "per_frame_ms" in v}
        names = list(rows)[::-1]
        ms = [rows[n]["per_frame_ms"]["p50"] for n in names]
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
        bars = ax.barh(names, ms, color=["#999999" if "baseline" in n else "#3b75af" for n in names])
        for bar, n in zip(bars, names):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f" {bar.get_width():.0f} ms  {rows[n].get('speedup_vs_baseline', 1.0):.2f}x", va="center")
        ax.set_xlabel("depth + pose per frame, p50 (ms)")
        ax.set_xlim(0, max(ms) * 1.35)
        ax.set_title(f"model only, network {res['network_size'][1]}x{res['network_size'][0]}, {res['threads']} threads")
    elif res["mode"] == "node":
        fig, (ax, ax_mem) = plt.subplots(1, 2, figsize=(11, 3.6))
        kinds = [k for k in ("depth", "points", "odom") if res.get(k) and res[k]["latency_ms"]]
        x = np.arange(len(kinds))
        for offset, stat, colour in ((-0.2, "p50", "#3b75af"), (0.2, "p99", "#e08a3c")):
            ax.bar(x + offset, [res[k]["latency_ms"][stat] for k in kinds], 0.4, label=stat, color=colour)
        ax.set_xticks(x, kinds)
        ax.set_ylabel("stamp -> received (ms)")
        rate = res["odom"]["rate_hz"] if res.get("odom") else 0.0
        ax.set_title(f"backend {res['backend']}, precision {res['precision']}: {rate:.2f} Hz, {res['rate_mode']}",
                     fontsize=9)
        ax.legend()
        mem = (res.get("process") or {}).get("rss_mb_every_30s") or []
        ax_mem.plot(np.arange(len(mem)) * 0.5, mem, marker=".")
        ax_mem.set_xlabel("minutes")
        ax_mem.set_ylabel("node RSS (MB)")
        if mem:
            ax_mem.set_ylim(0, max(mem) * 1.15)
        ax_mem.set_title("memory", fontsize=9)
    else:
        return
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
