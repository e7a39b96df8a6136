"""``python -m dpshare.reproduce [overrides]`` (what ``make reproduce`` runs).

Runs the main job, the non-private conditional GAN on the embedded cross-bank simulator
(``experiment=bank_sim_standard_gan``), writes its run record under ``outputs/`` and rebuilds the
tables in ``results/`` from that record on disk.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from dpshare.config import register_configs
from dpshare.errors import UserInputError
from dpshare.registry import UnknownNameError
from dpshare.reporting.summary import load_run, write_utility_summary
from dpshare.train import CONF_DIR, summarize, train

REPO_ROOT = CONF_DIR.parent
MAIN_EXPERIMENT = "bank_sim_standard_gan"


def reproduce(
    overrides: list[str], *, results_dir: Path | None = None, output_root: Path | None = None
) -> list[Path]:
    """Run the main experiment and write ``results/<experiment>/<scale>/summary.{md,csv}``."""
    register_configs()
    results_dir = Path(results_dir or REPO_ROOT / "results")
    output_root = Path(output_root or REPO_ROOT / "outputs")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        probe = compose("config", overrides=[f"experiment={MAIN_EXPERIMENT}", *overrides])
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        run_dir = output_root / "runs" / probe.experiment_name / f"{stamp}_{probe.scale.name}"
        cfg = compose(
            "config",
            overrides=[f"experiment={MAIN_EXPERIMENT}", *overrides, f"run_dir={run_dir}"],
        )
    metrics = train(cfg)
    print(summarize(metrics, run_dir))
    written = write_utility_summary(
        [load_run(run_dir)],
        results_dir / cfg.experiment_name / cfg.scale.name,
        title=f"{cfg.experiment_name} ({cfg.scale.name} scale)",
    )
    return written


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    started = time.perf_counter()
    try:
        written = reproduce(sys.argv[1:])
    except (UserInputError, UnknownNameError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"results written ({time.perf_counter() - started:.0f} s):")
    for path in written:
        print(f"  {path}")


if __name__ == "__main__":
    main()
