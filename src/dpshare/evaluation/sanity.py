"""Entry point: ``python -m dpshare.evaluation.sanity [hydra overrides]``: known-answer checks
of the whole evaluation on a real dataset, with two reference "generators" and no training.

The real train split is cut in half, ``A`` and ``B`` (seeded). Then the configured fidelity
metrics and attacks (``eval.fidelity``, ``eval.attacks``) run twice, with ``A`` as the
"training set" (the members) and the real test split as the non-members:

* ``copy``: the released table is ``A`` itself (a generator that memorised its training data).
  Expected: membership AUC near 1, TPR at 1% FPR near 1, exact-copy share 1, DCR 0.
* ``independent``: the released table is ``B``, real records from the same distribution that
  the "generator" never trained on. Expected: membership AUC near 0.5, exact-copy share about
  0 (up to duplicate records in the data), DCR share closer-to-train about 0.5.

If either row is far from its expectation the attacks (or the data's duplicates) need a look
before any method's numbers are trusted. The record goes to ``<run_dir>/sanity.json``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from dpshare.config import register_configs
from dpshare.errors import UserInputError
from dpshare.evaluation.attacks.runner import evaluate_attacks
from dpshare.evaluation.fidelity import evaluate_fidelity
from dpshare.registry import UnknownNameError
from dpshare.reporting import records
from dpshare.train import load_data

log = logging.getLogger("dpshare.sanity")

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
SANITY_FILE = "sanity.json"
HEADLINE = (
    "attack/mia_dcr/auc",
    "attack/mia_dcr/tpr_at_fpr_1pct",
    "attack/mia_dcr/success_rate",
    "attack/mia_domias/auc",
    "attack/mia_shadow/auc",
    "attack/mia_loss/auc",
    "attack/aia/risk",
    "attack/copies/exact_copy_share",
    "attack/copies/dcr_median",
    "attack/copies/dcr_share_closer_to_train",
    "fidelity/precision",
    "fidelity/recall",
    "fidelity/fd_raw",
)


def run_sanity(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the copy and independent reference generators; return (and write) the record."""
    data, splits = load_data(cfg)
    if len(splits.train) < 4:
        raise UserInputError("the real train split needs at least 4 records for the sanity check")
    half_a = splits.train.sample(frac=0.5, random_state=cfg.eval.seed)
    half_b = splits.train.drop(index=half_a.index)
    reference = splits.reference if len(splits.reference) else splits.validation
    out: dict[str, Any] = {
        "dataset": cfg.dataset.name,
        "n_members_pool": len(half_a),
        "n_independent": len(half_b),
        "n_test": len(splits.test),
        "reference_split": "reference" if len(splits.reference) else "validation",
        "generators": {},
    }
    for name, released in (("copy", half_a), ("independent", half_b)):
        t0 = time.perf_counter()
        metrics: dict[str, Any] = {}
        if cfg.eval.fidelity:
            metrics.update(
                evaluate_fidelity(
                    synthetic=released,
                    real_train=half_a,
                    real_test=splits.test,
                    target=data.target,
                    names=list(cfg.eval.fidelity),
                    max_rows=cfg.eval.fidelity_max_rows,
                    prdc_k=cfg.eval.prdc_k,
                    seed=cfg.eval.seed,
                    feature_net=cfg.eval.feature_net,
                )
            )
        metrics.update(
            evaluate_attacks(
                names=list(cfg.eval.attacks),
                real_train=half_a,
                real_test=splits.test,
                reference=reference,
                target=data.target,
                positive_label=data.positive_label,
                synthetic=released,
                attack_model=cfg.eval.attack_model,
                n_targets=cfg.eval.attack_targets,
                params=cast(
                    "dict[str, dict[str, Any]] | None",
                    OmegaConf.to_container(cfg.eval.attack_params, resolve=True),
                ),
                seed=cfg.eval.seed,
            )
        )
        metrics["runtime/seconds"] = time.perf_counter() - t0
        out["generators"][name] = metrics
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(run_dir / SANITY_FILE, out)
    return out


def summarize(record: dict[str, Any]) -> str:
    lines = [f"{'metric':45s} {'copy':>10s} {'independent':>12s}"]
    gens = record["generators"]
    for key in HEADLINE:
        if key not in gens["copy"]:
            continue

        def fmt(value: Any) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        lines.append(
            f"{key:45s} {fmt(gens['copy'][key]):>10s} {fmt(gens['independent'][key]):>12s}"
        )
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        record = run_sanity(cfg)
    except (UserInputError, UnknownNameError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"sanity record: {Path(cfg.run_dir) / SANITY_FILE}")
    print(summarize(record))


def main() -> None:
    """Console script ``dpshare-sanity``."""
    register_configs()
    _hydra_main()


if __name__ == "__main__":
    main()
