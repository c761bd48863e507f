"""``diadem-ray compare``: MLflow runs of one experiment, one line per run and, with
``--group-by``, aggregated over seeds per configuration.

The run table has one line per run (ordered by the ``reward_hash`` tag the driver sets): reward
names, steps done, final and best held-out REF / ASR F1. The PNG has three panels sharing the step
axis: mean GRPO reward, and held-out REF F1 and ASR F1, one colour per reward-config hash and one
line style per run, so two reward configurations on the same seed sit side by side.

Groups: runs whose ``--group-by`` keys (logged config params such as ``grpo.kl_coef``, or the tag
``reward_hash``) have the same values form a configuration; by default the keys are the reward hash
and every config param that differs between the runs, except the run's name, seed and paths. The
group table gives per group the seeds, mean ± sd and n of the final held-out REF and ASR F1 and, for
every group but ``--baseline``, the difference against it with a 95% interval
(:mod:`diadem_ray.compare_stats`: paired by seed where the groups share seeds). The group PNG draws
each group's mean curve with a ± sd band.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from diadem_ray.compare_stats import Difference, Summary, difference, summarize


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
    params: Dict[str, str] = field(default_factory=dict)  # the run's logged config, flattened
    tags: Dict[str, str] = field(default_factory=dict)
    # held-out bucket -> (final REF, final ASR) when the run profiled its held-out clips
    buckets: Dict[str, Tuple[Optional[float], Optional[float]]] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.params.get("run.seed", -1))


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
                params=dict(run.data.params),
                tags=dict(tags),
                buckets=_bucket_finals(dict(run.data.params), dict(run.data.metrics)),
            )
        )
    return out


def _bucket_finals(
    params: Mapping[str, str], metrics: Mapping[str, float]
) -> Dict[str, Tuple[Optional[float], Optional[float]]]:
    """Final held-out REF/ASR per difficulty bucket (``eval/<bucket>/ref_f1``, the latest value)."""
    import ast

    try:
        names = ast.literal_eval(params.get("stages.profile.bucket_names", "[]"))
    except (ValueError, SyntaxError):
        return {}
    return {
        str(b): (metrics.get(f"eval/{b}/ref_f1"), metrics.get(f"eval/{b}/asr_f1"))
        for b in names
        if f"eval/{b}/ref_f1" in metrics
    }


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
    return _save(fig, axes, path, title, legend_title="reward hash, run", right=0.86)


def _save(fig: Any, axes: Any, path: str | Path, title: str, *, legend_title: str, right: float) -> Path:
    """Title the three panels, draw one legend for the figure (a run may lack GRPO steps but has
    evaluations), and write the PNG to ``path``."""
    import matplotlib.pyplot as plt

    for ax, label in zip(axes, ("mean GRPO reward", "held-out REF F1 (x100)", "held-out ASR F1 (x100)")):
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    handles: Dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), fontsize=8, title=legend_title, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, right, 1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ---- groups over seeds ---------------------------------------------------------------------------

# params that differ between runs of one configuration: never a grouping key by default
PER_RUN = ("run.name", "run.seed", "run.output_dir", "tracking.", "data.root", "data.cache_dir", "model.path")


def default_keys(runs: Sequence[RunSummary]) -> List[str]:
    """The reward hash and every logged param whose value differs between ``runs`` (names, seeds
    and paths excepted; the hash only when it differs too), sorted."""
    keys = {k for r in runs for k in r.params if not k.startswith(PER_RUN)}
    varying = sorted(k for k in keys if len({r.params.get(k) for r in runs}) > 1)
    return (["reward_hash"] if len({r.reward_hash for r in runs}) > 1 else []) + varying


def _value(run: RunSummary, key: str) -> str:
    if key in run.params:
        return run.params[key]
    if key in run.tags:
        return run.tags[key]
    return run.reward_hash if key == "reward_hash" else "-"


def group_runs(runs: Sequence[RunSummary], keys: Sequence[str]) -> Dict[str, List[RunSummary]]:
    """Runs by configuration label ``key=value, …`` (``all`` without keys), in label order."""
    groups: Dict[str, List[RunSummary]] = {}
    for r in runs:
        label = ", ".join(f"{k}={_value(r, k)}" for k in keys) or "all"
        groups.setdefault(label, []).append(r)
    return dict(sorted(groups.items()))


def pick_baseline(labels: Sequence[str], wanted: Optional[str]) -> str:
    """The baseline group: the label equal to ``wanted``, else the one label containing it; the
    first label when ``wanted`` is empty. ``LookupError`` names the labels otherwise."""
    if not wanted:
        return labels[0]
    if wanted in labels:
        return wanted
    hits = [label for label in labels if wanted in label]
    if len(hits) == 1:
        return hits[0]
    why = "matches no group" if not hits else f"matches {len(hits)} groups"
    raise LookupError(f"--baseline {wanted!r} {why}; groups: {list(labels)}")


def _by_seed(runs: Sequence[RunSummary], metric: str, bucket: str = "") -> Dict[int, float]:
    """Per seed, the final REF (``metric="ref"``) or ASR, overall or of one held-out ``bucket``."""
    out: Dict[int, float] = {}
    for r in runs:
        if bucket:
            ref, asr = r.buckets.get(bucket, (None, None))
        else:
            ref, asr = r.final_ref, r.final_asr
        v = ref if metric == "ref" else asr
        if v is not None:
            out[r.seed] = v
    return out


def _ms(s: Summary) -> str:
    return "-" if s.n == 0 else f"{s.mean:.1f} ± {s.sd:.1f}" if s.n > 1 else f"{s.mean:.1f}"


def _diff(d: Difference) -> str:
    if d.low != d.low:  # NaN: no interval
        return f"{d.mean:+.1f} (no interval)"
    return f"{d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}]"


def group_table(runs: Sequence[RunSummary], keys: Sequence[str], baseline: Optional[str] = None) -> str:
    """Per configuration: seeds, final held-out REF / ASR F1 as mean ± sd (n), and the difference
    against the baseline group with a 95% interval (``paired`` by seed or ``welch``)."""
    groups = group_runs(runs, keys)
    base = pick_baseline(list(groups), baseline)
    base_ref, base_asr = _by_seed(groups[base], "ref"), _by_seed(groups[base], "asr")
    w = max(5, *(len(label) for label in groups))
    lines = [
        f"groups by {', '.join(keys) or 'nothing'}; baseline: {base}; final held-out F1 x100, mean ± sd over seeds",
        f"{'group':<{w}} {'n':>2} {'seeds':<12} {'REF':>12} {'ASR':>12}  "
        f"{'ΔREF [95%]':>22} {'ΔASR [95%]':>22}  pairing",
    ]
    for label, members in groups.items():
        ref, asr = _by_seed(members, "ref"), _by_seed(members, "asr")
        seeds = ",".join(str(s) for s in sorted({r.seed for r in members}))
        row = f"{label:<{w}} {len(members):>2} {seeds[:12]:<12} {_ms(summarize(list(ref.values()))):>12} "
        row += f"{_ms(summarize(list(asr.values()))):>12}  "
        if label == base:
            row += f"{'(baseline)':>22} {'':>22}"
        else:
            dr, da = difference(ref, base_ref), difference(asr, base_asr)
            row += f"{_diff(dr):>22} {_diff(da):>22}  {'paired' if dr.paired else 'welch'} n={dr.n}"
        lines.append(row)
    buckets = list(dict.fromkeys(b for r in runs for b in r.buckets))
    for b in buckets:
        b_ref, b_asr = _by_seed(groups[base], "ref", b), _by_seed(groups[base], "asr", b)
        lines += ["", f"held-out bucket {b!r} (clips by their profiled pass rate under the SFT policy):"]
        for label, members in groups.items():
            ref, asr = _by_seed(members, "ref", b), _by_seed(members, "asr", b)
            row = f"{label:<{w}} {len(ref):>2} {'':<12} {_ms(summarize(list(ref.values()))):>12} "
            row += f"{_ms(summarize(list(asr.values()))):>12}  "
            if label == base:
                row += f"{'(baseline)':>22}"
            elif ref and b_ref:
                row += f"{_diff(difference(ref, b_ref)):>22} {_diff(difference(asr, b_asr)):>22}"
            lines.append(row)
    return "\n".join(lines)


def plot_groups(runs: Sequence[RunSummary], keys: Sequence[str], path: str | Path, title: str) -> Path:
    """Each group's mean curve per panel with a ± sd band over its runs (steps a run lacks are left
    out of that step's mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_runs(runs, keys)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, (label, members) in enumerate(groups.items()):
        color = plt.get_cmap("tab10")(i % 10)
        for ax, key in zip(axes, CURVES):
            at: Dict[int, List[float]] = {}
            for r in members:
                for step, v in r.curves[key]:
                    at.setdefault(step, []).append(v)
            if not at:
                continue
            steps = sorted(at)
            stats = [summarize(at[s]) for s in steps]
            mean = [s.mean for s in stats]
            sd = [s.sd if s.n > 1 else 0.0 for s in stats]
            ax.plot(
                steps,
                mean,
                color=color,
                marker="o" if key != "reward/mean" else None,
                label=f"{label} (n={len(members)})",
            )
            ax.fill_between(
                steps, [m - d for m, d in zip(mean, sd)], [m + d for m, d in zip(mean, sd)], color=color, alpha=0.2
            )
    return _save(fig, axes, path, title, legend_title="group (runs), mean ± sd", right=0.8)
