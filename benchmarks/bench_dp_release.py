"""How well the DP transformer release resolves each numeric column's standard deviation.

The DP fit (:meth:`dpshare.data.transformer.TabularTransformer.fit_dp`) standardises a numeric
column with a noisy mean and std read on the column's declared public range. When the column
is narrow for that range (bank_sim's ``cross_bank_count_24h``: mostly 0 on ``[0, 50]``) the
noise of the variance estimate is larger than the variance itself, the std can sit at its
floor, and a generator trained on that encoding learns a constant column (docs/bank_sim.md,
"The dying count column").

For one data set's real TRAIN split (the rows a run's release reads; the dataset's config and
``scale`` decide the size) and the configured ``privacy.release_noise_multiplier``, this
makes ``--releases`` releases with different noise seeds per ``continuous_scale`` and reports,
per numeric column: the exact std on that scale, the median and 5 / 95 % quantiles of the
released std, the share of releases at the floor and the share flagged ``std_resolved=False``.
It reads the real rows to state the truth the releases are compared with: it is an analysis
of the mechanism, never part of a run.

    .venv/bin/python benchmarks/bench_dp_release.py                          # bank_sim, cpu
    .venv/bin/python benchmarks/bench_dp_release.py --overrides dataset=diabetes130 \\
        "dataset.drop_columns=[payer_code,medical_specialty]" --stem dp_release_diabetes130
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from dpshare.config import register_configs
from dpshare.data.transformer import TabularTransformer
from dpshare.train import CONF_DIR, load_data

RESULTS = Path(__file__).resolve().parent / "results"


def measure(overrides: list[str], releases: int, scales: list[str]) -> dict:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    data, splits = load_data(cfg)
    if data.public_domain is None:
        sys.exit(f"error: dataset {data.name!r} declares no public domain; a DP fit needs one")
    features = splits.train[data.feature_columns]
    sigma = float(cfg.privacy.release_noise_multiplier)
    rows = []
    for scale in scales:
        stds: dict[str, list[float]] = {}
        unresolved: dict[str, int] = {}
        at_floor: dict[str, int] = {}
        release = None
        for seed in range(releases):
            tt = TabularTransformer().fit_dp(
                features,
                domain=data.public_domain,
                noise_multiplier=sigma,
                seed=seed,
                continuous_scale=scale,
            )
            release = tt.release
            assert release is not None
            for col, stat in release.statistics.items():
                if stat["kind"] != "continuous":
                    continue
                stds.setdefault(col, []).append(float(stat["std"]))
                unresolved[col] = unresolved.get(col, 0) + (not stat["std_resolved"])
                at_floor[col] = at_floor.get(col, 0) + bool(stat["std_at_floor"])
        assert release is not None
        for col, values in stds.items():
            # the scale and the declared bounds are public and the same in every release
            stat = release.statistics[col]
            low, high = stat["bounds"]
            on_log = stat["scale"] != "linear"
            x = features[col].astype("float64").dropna().clip(low, high).to_numpy()
            exact = float((np.log1p(x - low) if on_log else x).std())
            arr = np.asarray(values)
            rows.append(
                {
                    "continuous_scale": scale,
                    "column": col,
                    "scale": "log1p" if on_log else "linear",
                    "exact_std": exact,
                    "dp_std_median": float(np.median(arr)),
                    "dp_std_p5": float(np.percentile(arr, 5)),
                    "dp_std_p95": float(np.percentile(arr, 95)),
                    "at_floor": at_floor[col] / releases,
                    "not_resolved": unresolved[col] / releases,
                }
            )
    return {
        "overrides": overrides,
        "dataset": data.name,
        "n_train": len(features),
        "release_noise_multiplier": sigma,
        "noise_std": release.noise_std,
        "releases": releases,
        "rows": rows,
    }


def write(report: dict, stem: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# DP transformer release: is each numeric column's std resolved? ({report['dataset']})",
        "",
        f"Made by `benchmarks/bench_dp_release.py` on {report['made_at']}: "
        f"{report['releases']} releases (noise seeds) of the train split "
        f"({report['n_train']:,} rows), release noise multiplier "
        f"{report['release_noise_multiplier']:g} (noise std {report['noise_std']:.1f} per "
        f"coordinate), overrides `{' '.join(report['overrides'])}`. `exact` is the std of the "
        "clipped real values on the column's scale; `at floor`: releases whose std is 1e-3 of "
        "the declared range; `not resolved`: releases flagged `std_resolved=False`.",
        "",
        "| continuous_scale | column | scale | exact std | DP std median | 5 % | 95 % | at floor "
        "| not resolved |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['continuous_scale']} | {r['column']} | {r['scale']} | {r['exact_std']:.3f} "
            f"| {r['dp_std_median']:.3f} | {r['dp_std_p5']:.3f} | {r['dp_std_p95']:.3f} "
            f"| {r['at_floor']:.0%} | {r['not_resolved']:.0%} |"
        )
    path = RESULTS / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--overrides",
        nargs="*",
        default=["dataset=bank_sim", "scale=cpu", "privacy=fixed"],
        help="Hydra overrides of the data set, scale and privacy (default: %(default)s)",
    )
    parser.add_argument("--releases", type=int, default=100, help="noise seeds per scale")
    parser.add_argument("--scales", nargs="+", default=["linear", "auto", "log"])
    parser.add_argument("--stem", default="dp_release_bank_sim")
    args = parser.parse_args(argv)
    if args.releases < 2:
        parser.error("--releases must be at least 2")
    report = measure(args.overrides, args.releases, args.scales)
    report["made_at"] = time.strftime("%Y-%m-%d %H:%M")
    print(write(report, args.stem).read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
