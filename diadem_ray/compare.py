"""``diadem-ray compare``: MLflow runs of one experiment grouped by reward-config hash.

The table has one line per run (grouped by the ``reward_hash`` tag the driver sets): reward
names, steps done, final and best held-out REF / ASR F1. The PNG has three panels sharing the step
axis: mean GRPO reward, and held-out REF F1 and ASR F1, one colour per reward-config hash and one
line style per run, so two reward configurations on the same seed sit side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple


@dataclass
class RunSummary:
    run_id: str
    name: str
    reward_hash: str
    rewards: str
    status: str
    steps: int
    final_ref: Optional[float]
    final_asr: Optional[float]
    best_ref: Optional[float]
    best_asr: Optional[float]
    curves: Dict[str, List[Tuple[int, float]]]


CURVES = ("reward/mean", "eval/ref_f1", "eval/asr_f1")


def collect(tracking_uri: str, experiment: str) -> List[RunSummary]:
    """Every run of ``experiment`` with its curves; raises ``LookupError`` naming what exists."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise LookupError(f"no experiment {experiment!r} in {tracking_uri}; experiments there: {names}")
    out = []
    for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
        rid = run.info.run_id
        curves = {
            k: [(m.step, m.value) for m in sorted(client.get_metric_history(rid, k), key=lambda m: m.step)]
            for k in CURVES
        }
        ref, asr = [v for _, v in curves["eval/ref_f1"]], [v for _, v in curves["eval/asr_f1"]]
        tags = run.data.tags
        out.append(
            RunSummary(
                run_id=rid,
                name=tags.get("mlflow.runName", rid[:8]),
                reward_hash=tags.get("reward_hash", "-"),
                rewards=" / ".join(dict.fromkeys(v for k, v in sorted(tags.items()) if k.startswith("reward.grpo")))
                or "-",
                status=run.info.status,
                steps=int(max((s for c in curves.values() for s, _ in c), default=0)),
                final_ref=ref[-1] if ref else None,
                final_asr=asr[-1] if asr else None,
                best_ref=max(ref) if ref else None,
                best_asr=max(asr) if asr else None,
                curves=curves,
            )
        )
    return out


def _f(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1f}"


def table(runs: List[RunSummary]) -> str:
    head = (
        f"{'reward hash':<13} {'reward configs':<24} {'run':<18} {'status':<9} {'steps':>5}  "
        f"{'final REF/ASR':>13}  {'best REF/ASR':>13}"
    )
    lines = [head, "-" * len(head)]
    for r in sorted(runs, key=lambda r: (r.reward_hash, r.name)):
        lines.append(
            f"{r.reward_hash:<13} {r.rewards[:24]:<24} {r.name[:18]:<18} {r.status[:9]:<9} {r.steps:>5}  "
            f"{_f(r.final_ref) + ' / ' + _f(r.final_asr):>13}  {_f(r.best_ref) + ' / ' + _f(r.best_asr):>13}"
        )
    return "\n".join(lines)


def plot(runs: List[RunSummary], path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hashes = sorted({r.reward_hash for r in runs})
    colors = {h: plt.get_cmap("tab10")(i % 10) for i, h in enumerate(hashes)}
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, r in enumerate(runs):
        for ax, key in zip(axes, CURVES):
            pts = r.curves[key]
            if pts:
                ax.plot(
                    [s for s, _ in pts],
                    [v for _, v in pts],
                    styles[i % len(styles)],
                    marker="o" if key != "reward/mean" else None,
                    color=colors[r.reward_hash],
                    label=f"{r.reward_hash} {r.name}",
                )
    for ax, _key, label in zip(axes, CURVES, ("mean GRPO reward", "held-out REF F1 (x100)", "held-out ASR F1 (x100)")):
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    handles: Dict[str, Any] = {}
    for ax in axes:  # one legend for the figure: a run may lack GRPO steps but has evaluations
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), fontsize=8, title="reward hash, run", loc="upper right")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
