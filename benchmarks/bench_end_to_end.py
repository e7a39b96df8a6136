"""Wall time, peak memory and generation throughput of one smoke-scale run per method.

Each run is the real entry point in a child process::

    python -m dpshare.train <overrides> run_dir=<dir> hydra.run.dir=<dir>

* ``standard_gan``, ``multidisc_gan``, ``dp_lr``, ``fedavg``: ``dataset=bank_sim scale=smoke
  privacy=fixed privacy.target_epsilon=1``;
* ``dp_wgan``: ``dataset=mnist eval=mnist scale=smoke scale.max_records=3000 privacy=fixed
  privacy.target_epsilon=1``, with the smoke evaluation of the tao2020 experiments (CNN only,
  one attack: ``eval.models=[cnn] eval.attacks=[mia_dcr]``).

Measured per run:

* ``wall_seconds``: the child process from start to exit (``time.perf_counter`` in the parent:
  interpreter start-up, imports, Hydra composition included);
* ``runtime/*`` from the run's own ``metrics.json`` (data, fit, sample, eval, fidelity,
  attack, total seconds, timed inside ``dpshare.train``);
* ``peak_rss_mib``: ``ru_maxrss`` of the child (KiB on Linux) from ``os.wait4``, i.e. the peak
  resident set of that process (and of any descendants it waited for), not of this parent;
* generation throughput: ``data/n_synthetic / runtime/sample_seconds`` rows per second
  (``method.sample(n)`` plus decoding to the released table, as timed by ``dpshare.train``);
  none for ``dp_lr`` and ``fedavg``, which release a model, not rows.

Torch threads are left as a user's run would have them (torch's default, recorded).

Run: ``make bench`` or ``python benchmarks/bench_end_to_end.py [--methods dp_lr fedavg]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench_dp_step import RESULTS_DIR, machine_info

REPO_ROOT = Path(__file__).resolve().parents[1]

BANK_SIM_DP = ["dataset=bank_sim", "scale=smoke", "privacy=fixed", "privacy.target_epsilon=1"]
RUNS: dict[str, list[str]] = {  # fastest first
    "dp_lr": ["method=dp_lr", *BANK_SIM_DP],
    "fedavg": ["method=fedavg", *BANK_SIM_DP],
    "standard_gan": ["method=standard_gan", *BANK_SIM_DP],
    "multidisc_gan": ["method=multidisc_gan", *BANK_SIM_DP],
    "dp_wgan": [
        "method=dp_wgan",
        "dataset=mnist",
        "eval=mnist",
        "scale=smoke",
        "scale.max_records=3000",
        "privacy=fixed",
        "privacy.target_epsilon=1",
        "eval.models=[cnn]",
        "eval.attacks=[mia_dcr]",
    ],
}
RUNTIME_KEYS = (
    "runtime/data_seconds",
    "runtime/fit_seconds",
    "runtime/sample_seconds",
    "runtime/eval_seconds",
    "runtime/fidelity_seconds",
    "runtime/attack_seconds",
    "runtime/total_seconds",
)


def run_one(
    name: str, overrides: Sequence[str], run_dir: Path, *, timeout: float
) -> dict[str, Any]:
    """One ``dpshare.train`` child process: its wall time, peak RSS and run record figures."""
    cmd = [
        sys.executable,
        "-m",
        "dpshare.train",
        *overrides,
        f"run_dir={run_dir}",
        f"hydra.run.dir={run_dir}",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="offline")
    log_path = run_dir.parent / f"{name}.log"
    load_before = list(os.getloadavg())
    t0 = time.perf_counter()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=log_file)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    result: dict[str, Any] = {
        "method": name,
        "command": " ".join(["python", "-m", "dpshare.train", *overrides]),
        "returncode": proc.returncode,
        "wall_seconds": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024.0,  # Linux: KiB
        "cpu_user_seconds": usage.ru_utime,
        "cpu_system_seconds": usage.ru_stime,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }
    metrics_path = run_dir / "metrics.json"
    if proc.returncode != 0 or not metrics_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        result.update(status="failed", log_tail=tail)
        return result
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    result["status"] = "ok"
    for key in RUNTIME_KEYS:
        if key in metrics:
            result[key] = metrics[key]
    n = metrics.get("data/n_synthetic", 0) or 0
    sample_s = metrics.get("runtime/sample_seconds") or 0.0
    result["data/n_synthetic"] = n
    result["samples_per_second"] = (n / sample_s) if n and sample_s > 0 else None
    for key in ("privacy/epsilon_spent", "privacy/noisy_steps", "data/n_train"):
        if key in metrics:
            result[key] = metrics[key]
    steps = metrics.get("privacy/noisy_steps") or 0
    fit_s = metrics.get("runtime/fit_seconds")
    # fit time per noisy (discriminator / critic / client) step: generator steps, data loading
    # and Lightning overhead included
    result["fit_ms_per_noisy_step"] = 1e3 * fit_s / steps if steps and fit_s else None
    return result


def run(
    *,
    methods: Sequence[str] = tuple(RUNS),
    runs_dir: Path | None = None,
    timeout: float = 1800.0,
    extra: Mapping[str, Sequence[str]] | None = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Run ``methods`` one after the other; with ``out_dir``, the report is rewritten after
    every run, so an interrupted benchmark still leaves the runs it finished."""
    unknown = sorted(set(methods) - set(RUNS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(RUNS)}")
    import torch

    report: dict[str, Any] = {
        "benchmark": "end_to_end",
        "machine": machine_info(torch.get_num_threads()),
        "peak_memory_source": "os.wait4 ru_maxrss of the child process (KiB -> MiB)",
        "throughput_source": "data/n_synthetic / runtime/sample_seconds from metrics.json",
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="dpshare-bench-") as tmp:
        base = Path(runs_dir) if runs_dir is not None else Path(tmp)
        for name in methods:
            run_dir = base / name
            run_dir.mkdir(parents=True, exist_ok=True)
            overrides = [*RUNS[name], *(extra or {}).get(name, ())]
            print(f"[bench_end_to_end] {name}: {' '.join(overrides)}", flush=True)
            result = run_one(name, overrides, run_dir, timeout=timeout)
            print(
                f"[bench_end_to_end] {name}: {result['status']}, "
                f"{result['wall_seconds']:.1f} s, {result['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            report["runs"][name] = result
            report["machine"]["load_average_after"] = list(os.getloadavg())
            report["complete"] = len(report["runs"]) == len(methods)
            if out_dir is not None:
                write_reports(report, out_dir)
    return report


def _num(x: Any, fmt: str = "{:.1f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def markdown(report: Mapping[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# End-to-end smoke runs",
        "",
        f"Machine: {m['cpu_model']}, {m['logical_cores']} logical cores; torch {m['torch']}, "
        f"opacus {m['opacus']}; torch threads (default) {m['torch_threads']}; "
        f"{m['timestamp']}.",
        f"Peak memory: {report['peak_memory_source']}. Throughput: {report['throughput_source']}.",
        "",
        *(
            []
            if report.get("complete", True)
            else ["**Incomplete**: only the runs below had finished when this was written.", ""]
        ),
        "| method | status | wall s | fit s | fit ms / noisy step | sample s | eval s | "
        "fidelity s | attack s | total s (metrics.json) | peak RSS MiB | rows/s generated | "
        "load avg (1 min) before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["runs"].items():
        cells = [
            name,
            r["status"],
            f"{r['wall_seconds']:.1f}",
            _num(r.get("runtime/fit_seconds")),
            _num(r.get("fit_ms_per_noisy_step")),
            _num(r.get("runtime/sample_seconds"), "{:.2f}"),
            _num(r.get("runtime/eval_seconds")),
            _num(r.get("runtime/fidelity_seconds")),
            _num(r.get("runtime/attack_seconds")),
            _num(r.get("runtime/total_seconds")),
            f"{r['peak_rss_mib']:.0f}",
            _num(r.get("samples_per_second"), "{:,.0f}"),
            f"{r['load_average_before'][0]:.2f}/{r['load_average_after'][0]:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Commands: `python -m dpshare.train <overrides> run_dir=<tmp> hydra.run.dir=<tmp>`:",
        "",
    ]
    lines += [f"- {name}: `{r['command']}`" for name, r in report["runs"].items()]
    lines.append("")
    return "\n".join(lines)


def write_reports(report: Mapping[str, Any], out_dir: Path, stem: str = "end_to_end") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / f"{stem}.md").write_text(markdown(report), encoding="utf-8")
    print(f"wrote {out_dir / (stem + '.json')} and {out_dir / (stem + '.md')}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--runs-dir", type=Path, default=None, help="keep run records here")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    report = run(
        methods=args.methods, runs_dir=args.runs_dir, timeout=args.timeout, out_dir=args.out
    )
    print(markdown(report))
    if any(r["status"] != "ok" for r in report["runs"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
