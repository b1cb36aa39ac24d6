"""The daemon's cost before and after the focused reconcile: one PNG of bench_cycle.py's figures.

    .venv/bin/pip install matplotlib    # a bench-only dependency, not in pyproject
    .venv/bin/python bench/plot_cycle.py --measure   # measure both, then plot (~5 min)
    .venv/bin/python bench/plot_cycle.py             # plot bench/results/daemon_cost.json

Two panels against the allocations in ipam.db (1k, 4k, 16k, 65k): the daemon's CPU per
single-container change (median ms of bench/bench_cycle.py's cycles after a change of
one allocation, log scale) and its resident set (VmRSS at the end, and the peak), for
"before" (BEFORE, the commit before the change-following work) and "after" (HEAD).

--measure checks both commits out as git worktrees (under /tmp, removed afterwards) and
runs bench/bench_cycle.py against each, one process per size, writing
bench/results/daemon_cost.json. bench_cycle.py does not exist at BEFORE: today's is
copied into that worktree (it puts its own checkout first on sys.path, so it measures
the code of the worktree it lies in), adapted in one place: at BEFORE,
ReconcileCycle.run(reason, config) takes no focus argument (a TypeError there calls it
without one, i.e. a full reconcile after every change, which is what that daemon did).
HEAD is measured from its own worktree, not from this work tree (uncommitted changes
would be measured otherwise).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BEFORE = "34a144c"
SIZES = (1000, 4000, 16000, 65000)
FOCUS_CALL = 'result = cycle.run("db-changed: IN_MODIFY ipam.db", config, frozenset())'
UNFOCUSED = """try:
                result = cycle.run("db-changed: IN_MODIFY ipam.db", config, frozenset())
            except TypeError:  # plot_cycle.py: before the focused reconcile, no focus
                result = cycle.run("db-changed: IN_MODIFY ipam.db", config)"""
STYLE = {
    "before": {"color": "#c0392b", "marker": "o", "label": "before"},
    "after": {"color": "#1f6fb2", "marker": "s", "label": "after"},
}


def git(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def run_bench(tree: Path, script: Path, out: Path, changes: int) -> list[dict[str, Any]]:
    """bench_cycle.py from `tree`: its ipamguard and its tests/ (the oracle) first."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run(
        [sys.executable, "-c", "import ipamguard; print(ipamguard.__file__)"],
        env=env, cwd=tree, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if not where.startswith(str(tree) + "/"):
        raise SystemExit(f"ipamguard imported from {where}, not from {tree}")
    counts = [arg for size in SIZES for arg in ("--count", str(size))]
    subprocess.run(
        [sys.executable, str(script), *counts, "--changes", str(changes), "--out", str(out)],
        env=env, cwd=tree, check=True,
    )  # fmt: skip
    results: list[dict[str, Any]] = json.loads(out.read_text())
    return results


def measure(changes: int, before: str) -> dict[str, Any]:
    head = git("rev-parse", "HEAD")
    document: dict[str, Any] = {
        "bench": "bench/bench_cycle.py, via bench/plot_cycle.py --measure",
        "changes_per_size": changes,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load1_start": round(os.getloadavg()[0], 2),
    }
    for name, commit in (("before", git("rev-parse", before)), ("after", head)):
        tree = Path(tempfile.gettempdir()) / f"ipg-{name}"
        git("worktree", "add", "--detach", str(tree), commit)
        try:
            script = tree / "bench" / "bench_cycle.py"
            adapted = not script.exists()
            if adapted:  # today's bench, in the old checkout: measures the old code
                text = (REPO / "bench" / "bench_cycle.py").read_text()
                if FOCUS_CALL not in text:
                    raise SystemExit(f"bench_cycle.py changed: no {FOCUS_CALL!r} to adapt")
                script.write_text(text.replace(FOCUS_CALL, UNFOCUSED))
            with tempfile.TemporaryDirectory() as tmp:
                results = run_bench(tree, script, Path(tmp) / "out.json", changes)
            if adapted:
                script.unlink()
        finally:
            git("worktree", "remove", "--force", str(tree))
        document[name] = {
            "commit": commit,
            "subject": git("log", "-1", "--format=%s", commit)[:120],
            "bench_cycle_adapted": adapted,
            "results": sorted(results, key=lambda r: r["allocations"]),
        }
    document["load1_end"] = round(os.getloadavg()[0], 2)
    return document


def label_size(n: int) -> str:
    return f"{round(n / 1000)}k"


def plot(document: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig, (cpu, rss) = plt.subplots(1, 2, figsize=(12, 5.2), dpi=120)
    for name in ("before", "after"):
        side, style = document[name], STYLE[name]
        rows = side["results"]
        x = [r["allocations"] for r in rows]
        median = [r["change_cycle_cpu_ms"]["median"] for r in rows]
        high = [r["change_cycle_cpu_ms"]["max"] for r in rows]
        label = f"{style['label']} ({side['commit'][:7]})"
        cpu.plot(x, median, color=style["color"], marker=style["marker"], lw=2, label=label)
        cpu.fill_between(x, median, high, color=style["color"], alpha=0.12, lw=0)
        resident = [r["rss_mib"] for r in rows]
        peak = [r["max_rss_mib"] for r in rows]
        rss.plot(
            x, resident, color=style["color"], marker=style["marker"], lw=2,
            label=f"{label}: VmRSS at the end",
        )  # fmt: skip
        rss.plot(
            x, peak, color=style["color"], marker=style["marker"], lw=1, ls="--",
            mfc="none", label=f"{label}: peak",
        )  # fmt: skip
        text = f"{median[-1]:,.0f} ms" if median[-1] >= 10 else f"{median[-1]:.1f} ms"
        if name == "after":
            before = document["before"]["results"][-1]["change_cycle_cpu_ms"]["median"]
            text += f"\n({before / median[-1]:.0f}x less)"
        cpu.annotate(
            text, (x[-1], median[-1]), textcoords="offset points", xytext=(10, 0),
            ha="left", va="center", color=style["color"], fontweight="bold",
        )  # fmt: skip
        rss.annotate(
            f"{resident[-1]:.0f} MiB\n(peak {peak[-1]:.0f})", (x[-1], resident[-1]),
            textcoords="offset points", xytext=(10, 0), ha="left", va="center",
            color=style["color"], fontweight="bold",
        )  # fmt: skip
    sizes = [r["allocations"] for r in document["after"]["results"]]
    for axis in (cpu, rss):
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(FixedLocator(sizes))
        axis.xaxis.set_minor_locator(NullLocator())
        axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: label_size(int(v))))
        axis.set_xlabel("allocations in ipam.db (one network, one subnet)")
        axis.grid(True, which="both", alpha=0.3)
        axis.set_xlim(sizes[0] / 1.4, sizes[-1] * 3.2)  # room for the labels at the right
    cpu.set_yscale("log")
    low, high = cpu.get_ylim()
    cpu.set_ylim(low, high * 1.8)
    cpu.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    cpu.set_ylabel("CPU per reconcile after the change (ms, log scale)")
    cpu.set_title("CPU per single-container change\n(median of the changes; band: up to the max)")
    cpu.legend(loc="upper left")
    top = max(r["max_rss_mib"] for side in ("before", "after") for r in document[side]["results"])
    rss.set_ylim(0, top * 1.15)
    rss.set_ylabel("resident set of the process (MiB)")
    rss.set_title("Memory against allocations\n(VmRSS after the changes; dashed: peak, ru_maxrss)")
    rss.legend(loc="upper left", fontsize="small")
    changes = document["changes_per_size"]
    fig.suptitle(
        f"ipamguard daemon: before ({document['before']['commit'][:7]}) and after "
        f"({document['after']['commit'][:7]}) reconciles that follow the change\n"
        f"bench/bench_cycle.py: one reconcile after each of {changes} single-allocation "
        "changes per size, repair on, stand-in podman API",
        fontsize=12,
    )
    fig.text(
        0.5, 0.005,
        f"before = {document['before']['commit'][:7]}, after = "
        f"{document['after']['commit'][:7]}; 2-core VM, load average "
        f"{document['load1_start']} .. {document['load1_end']}; {document['date'][:10]}",
        ha="center", fontsize=8, color="#555555",
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def table(document: dict[str, Any]) -> str:
    lines = [
        "| allocations | CPU per change, median (max): before / after | "
        "VmRSS (peak): before / after |",
        "|---|---|---|",
    ]
    pairs = zip(document["before"]["results"], document["after"]["results"], strict=True)
    for b, a in pairs:
        bc, ac = b["change_cycle_cpu_ms"], a["change_cycle_cpu_ms"]
        lines.append(
            f"| {b['allocations']:,} | {bc['median']:g} ({bc['max']:g}) ms / "
            f"{ac['median']:g} ({ac['max']:g}) ms | {b['rss_mib']:g} ({b['max_rss_mib']:g}) "
            f"/ {a['rss_mib']:g} ({a['max_rss_mib']:g}) MiB |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="run bench_cycle.py first")
    parser.add_argument("--before", default=BEFORE, help=f"the 'before' commit ({BEFORE})")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--json", default=str(RESULTS / "daemon_cost.json"))
    parser.add_argument("--out", default=str(RESULTS / "daemon_cost.png"))
    args = parser.parse_args()
    if shutil.which("git") is None:
        parser.error("git is needed")
    path = Path(args.json)
    if args.measure:
        document = measure(args.changes, args.before)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n")
    else:
        document = json.loads(path.read_text())
    plot(document, Path(args.out))
    print(table(document))
    print(f"PNG: {args.out}; JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
