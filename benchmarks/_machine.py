"""What every benchmark result records about where it ran (CPUs, versions, commit and date), how it is written, and how
the timing processes are run."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def machine(**versions: str) -> dict:
    """CPU count and model, Python and torch versions, the git commit and the UTC date, plus ``versions`` (the
    peers' versions, e.g. ``diffusers="0.42.1"``)."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=HERE).stdout.strip() or None
    except OSError:
        commit = None
    return {"nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_count": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "torch": torch.__version__, **versions, "git_commit": commit,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def write_results(res: dict, out: Path, md: str) -> None:
    """Print the Markdown ``md``, write ``res`` as JSON to ``out`` and ``md`` beside it (``.md``), and say where."""
    print(md)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=float) + "\n")
    out.with_suffix(".md").write_text(md + "\n")
    print(f"\n(results: {out} and {out.with_suffix('.md')}; {res['wall_seconds']:.0f} s)")


def run_workers(workers: Iterable[tuple[str, list[str]]]) -> list[dict]:
    """Run worker processes one after another, never side by side (so they do not compete for the CPUs), and
    collect their results.

    Args:
        workers: ``(label, command)`` pairs; ``label`` is printed to stderr before its command runs, and the command
            must print its result as JSON on the last line of its stdout (its stderr passes through).
    Returns:
        the parsed results, in the order of ``workers``.
    Raises:
        subprocess.CalledProcessError: if a worker exits with a non-zero status (the later ones do not run).
    """
    results = []
    for label, cmd in workers:
        print(label, file=sys.stderr, flush=True)
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results
