"""Glue to smartnoise-synth, the maintained DP synthesizers behind ``method=mst | aim | dpctgan |
patectgan`` (:mod:`dpshare.models.peers`, docs/peers.md). Nothing here re-implements them: it
hands the library a table that is already encoded from PUBLIC knowledge, a transformer fitted on
that public domain only (so the library spends no epsilon on preprocessing), the run's
``(epsilon, delta)``, and reads back what the library's OWN accountant reports.

What each synthesizer's own accounting is, and how it is read:

- ``mst``, ``aim`` (McKenna et al. 2021, 2022; private-pgm ``mbi``): zero-concentrated DP. The
  library converts ``(epsilon, delta)`` to ``rho`` with OpenDP (``snsynth.utils.cdp_rho``) and
  spends at most ``rho`` by construction, so its epsilon is the one it was given.
- ``dpctgan`` (DP-SGD on CTGAN's discriminator, Opacus **0.14**, the version smartnoise-synth
  pins): the epsilon of the library's Opacus ``PrivacyEngine`` after the last step, read from the
  engine itself (the engine object is captured when the library attaches it). The library checks
  its budget only at the start of each epoch, so the noise multiplier ``sigma`` is calibrated
  here beforehand, with the same Opacus 0.14 RDP analysis and the library's own step count, so
  that every planned epoch fits the target (:func:`calibrate_dpctgan_sigma`).
- ``patectgan`` (PATE on CTGAN, a data-dependent moments accountant): the sum of the moments the
  library's ``moments_acc`` returned (the calls are counted, the values untouched), turned into
  epsilon with the library's formula. The library stops once its epsilon has PASSED the target,
  after the last iteration it ran, so by its own accounting a run spends a little more than it
  was given: that is what is recorded (and what the release gate then refuses).

This module imports neither ``dpshare.models`` nor Opacus at import time: ``dpctgan`` runs in a
child process (:func:`main`, ``python -m dpshare.smartnoise WORKDIR``) whose ``sys.path`` puts
Opacus 0.14 first, where dpshare's own DP code (written for Opacus 1.x) must not be loaded.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import math
import pickle
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

LIBRARY = "smartnoise-synth"
SYNTHESIZERS = ("mst", "aim", "dpctgan", "patectgan")
# smartnoise-synth's style of transformer per synthesizer: "cube" (every column a category code,
# the marginal methods) or "gan" (one-hot categories, min-max scaled continuous values)
STYLES = {"mst": "cube", "aim": "cube", "dpctgan": "gan", "patectgan": "gan"}
# the RDP orders DPCTGAN gives its Opacus 0.14 PrivacyEngine (snsynth/pytorch/nn/dpctgan.py)
DPCTGAN_ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
# the child's files (dpctgan)
INPUT_FILE = "train.parquet"
SPEC_FILE = "spec.json"
MODEL_FILE = "synthesizer.pickle"
RESULT_FILE = "result.json"


def library_versions() -> dict[str, str]:
    """Installed versions of the library and of what its accounting rests on."""
    out = {}
    for dist in (LIBRARY, "smartnoise-sql", "mbi", "opendp", "opacus"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


# ------------------------------------------------------------------------ the transformer


def build_transformer(columns: Sequence[Mapping[str, Any]], style: str) -> Any:
    """A smartnoise ``TableTransformer`` for the encoded columns, fitted on a table made from
    their PUBLIC description only (category codes, declared bounds), never on the records: its
    category sets and bounds are public and ``fit_complete`` is true, so the synthesizer spends
    no epsilon on preprocessing.

    ``columns``: ``{"name", "kind": "categorical", "n_codes"}`` or ``{"name", "kind":
    "continuous", "lower", "upper"}`` (the ``gan`` style only; ``cube`` is all categorical)."""
    from snsynth.transform import (
        ChainTransformer,
        LabelTransformer,
        MinMaxTransformer,
        OneHotEncoder,
        TableTransformer,
    )

    transformers = []
    domain: dict[str, np.ndarray] = {}
    rows = max([int(c.get("n_codes", 2)) for c in columns] + [2])
    for col in columns:
        if col["kind"] == "categorical":
            codes = np.arange(int(col["n_codes"]))
            domain[col["name"]] = np.resize(codes, rows)
            if style == "cube":
                transformers.append(LabelTransformer(nullable=False))
            else:
                transformers.append(
                    ChainTransformer([LabelTransformer(nullable=False), OneHotEncoder()])
                )
        elif col["kind"] == "continuous" and style == "gan":
            lower, upper = float(col["lower"]), float(col["upper"])
            domain[col["name"]] = np.resize(np.array([lower, upper]), rows)
            transformers.append(MinMaxTransformer(lower=lower, upper=upper, negative=True))
        else:
            raise ValueError(f"column {col['name']!r}: kind {col['kind']!r} in style {style!r}")
    table = TableTransformer(transformers)
    table.fit(pd.DataFrame(domain), epsilon=0.0)
    if not table.fit_complete or table.needs_epsilon:
        raise RuntimeError("the public transformer would need epsilon; this is a dpshare bug")
    return table


# ------------------------------------------------------------------------------ fitting


@contextlib.contextmanager
def _captured_stdout(name: str) -> Iterator[None]:
    """The library prints progress (AIM unconditionally): into the log at debug level."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        text = buffer.getvalue().strip()
        if text:
            log.debug("%s printed: %s", name, text[-2000:])


def calibrate_dpctgan_sigma(
    *, epsilon: float, delta: float, sample_rate: float, steps: int
) -> float:
    """The smallest noise multiplier (to 0.1 %) at which ``steps`` optimizer steps of DPCTGAN's
    Opacus 0.14 engine at ``sample_rate`` stay within ``epsilon`` at ``delta``, by that engine's
    own RDP analysis and orders. Needs Opacus 0.14 (the dpctgan child process)."""
    from opacus import privacy_analysis

    def spent(sigma: float) -> float:
        rdp = privacy_analysis.compute_rdp(sample_rate, sigma, steps, DPCTGAN_ALPHAS)
        eps, _ = privacy_analysis.get_privacy_spent(DPCTGAN_ALPHAS, rdp, delta)
        return float(eps)

    low, high = 0.05, 1.0
    while spent(high) > epsilon:
        high *= 2.0
        if high > 1e6:
            raise ValueError(
                f"no noise multiplier keeps {steps} DPCTGAN steps at sample rate "
                f"{sample_rate:.4g} within epsilon {epsilon} at delta {delta:g}"
            )
    while (high - low) > 1e-3 * high:
        mid = 0.5 * (low + high)
        if spent(mid) > epsilon:
            low = mid
        else:
            high = mid
    return high


def dpctgan_planned_steps(n_rows: int, options: Mapping[str, Any]) -> int:
    """Optimizer steps DPCTGAN's engine counts for ``epochs`` epochs: ``max(n // batch, 1)``
    iterations per epoch, each with two discriminator steps for the cross-entropy loss (one on
    generated, one on real rows) and one for the Wasserstein loss (snsynth 1.0.8,
    ``DPCTGAN.train``). Checked against the engine after the fit."""
    per_epoch = max(n_rows // int(options["batch_size"]), 1)
    per_iteration = 2 if options.get("loss", "cross_entropy") == "cross_entropy" else 1
    return int(options["epochs"]) * per_epoch * per_iteration


def fit(
    synthesizer: str,
    frame: pd.DataFrame,
    columns: Sequence[Mapping[str, Any]],
    *,
    epsilon: float,
    delta: float,
    options: Mapping[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """Fit smartnoise-synth's ``synthesizer`` on the encoded ``frame`` at ``(epsilon, delta)``
    with the library's own hyper-parameters ``options``. Returns the fitted synthesizer and its
    accounting: ``epsilon`` and ``delta`` as the library's own accountant reports them after the
    fit, with the figures it rests on."""
    from snsynth import Synthesizer

    if synthesizer not in SYNTHESIZERS:
        raise ValueError(f"unknown synthesizer {synthesizer!r}; choose one of {SYNTHESIZERS}")
    style = STYLES[synthesizer]
    transformer = build_transformer(columns, style)
    kwargs = dict(options)
    accounting: dict[str, Any] = {"synthesizer": synthesizer, "preprocessor_epsilon": 0.0}
    if synthesizer == "dpctgan":
        return _fit_dpctgan(frame, transformer, epsilon=epsilon, delta=delta, options=kwargs)
    if synthesizer == "patectgan":
        return _fit_patectgan(frame, transformer, epsilon=epsilon, delta=delta, options=kwargs)
    from snsynth.utils import cdp_rho

    synth = Synthesizer.create(synthesizer, epsilon=float(epsilon), delta=float(delta), **kwargs)
    with _captured_stdout(synthesizer):
        synth.fit(frame, transformer=transformer, preprocessor_eps=0.0)
    accounting.update(
        epsilon=float(synth.epsilon),  # unchanged: no budget went to preprocessing
        delta=float(synth.delta),
        rho=float(cdp_rho(float(synth.epsilon), float(synth.delta))),
        accounting="zero-concentrated DP: (epsilon, delta) converted to rho by OpenDP "
        "(snsynth.utils.cdp_rho); every measurement and selection spends a share of rho",
    )
    return synth, accounting


def _fit_dpctgan(
    frame: pd.DataFrame,
    transformer: Any,
    *,
    epsilon: float,
    delta: float,
    options: dict[str, Any],
) -> tuple[Any, dict[str, Any]]:
    import opacus
    from snsynth import Synthesizer

    if not str(opacus.__version__).startswith("0.14"):
        raise RuntimeError(
            f"dpctgan needs Opacus 0.14 (smartnoise-synth's pin), found {opacus.__version__}; "
            "it runs in a child process with Opacus 0.14 first on sys.path (docs/peers.md)"
        )
    steps = dpctgan_planned_steps(len(frame), options)
    sample_rate = int(options["batch_size"]) / len(frame)
    calibrated = options.get("sigma") is None
    if calibrated:
        options["sigma"] = calibrate_dpctgan_sigma(
            epsilon=epsilon, delta=delta, sample_rate=sample_rate, steps=steps
        )
    engines: list[Any] = []
    attach = opacus.PrivacyEngine.attach

    def capturing_attach(engine: Any, optimizer: Any) -> Any:
        engines.append(engine)  # read its accountant after the fit; nothing else changes
        return attach(engine, optimizer)

    opacus.PrivacyEngine.attach = capturing_attach
    try:
        synth = Synthesizer.create(
            "dpctgan", epsilon=float(epsilon), delta=float(delta), verbose=False, **options
        )
        with _captured_stdout("dpctgan"):
            synth.fit(frame, transformer=transformer, preprocessor_eps=0.0)
    finally:
        opacus.PrivacyEngine.attach = attach
    if len(engines) != 1:
        raise RuntimeError(f"expected one Opacus PrivacyEngine in DPCTGAN, saw {len(engines)}")
    engine = engines[0]
    spent, best_alpha = engine.get_privacy_spent(float(delta))
    if int(engine.steps) != steps:
        log.warning("dpctgan took %d optimizer steps, %d were planned", engine.steps, steps)
    return synth, {
        "synthesizer": "dpctgan",
        "preprocessor_epsilon": 0.0,
        "epsilon": float(spent),
        "delta": float(delta),
        "accounting": "DP-SGD on the discriminator, Opacus 0.14 PrivacyEngine (RDP of the "
        "sampled Gaussian, per-layer clipping); epsilon read from the engine after the last step",
        "noise_multiplier": float(options["sigma"]),
        "noise_multiplier_calibrated": calibrated,
        "sample_rate": float(engine.sample_rate),
        "optimizer_steps": int(engine.steps),
        "planned_optimizer_steps": steps,
        "epochs_started": len(synth.epsilon_list),
        "best_alpha": float(best_alpha),
    }


def _fit_patectgan(
    frame: pd.DataFrame,
    transformer: Any,
    *,
    epsilon: float,
    delta: float,
    options: dict[str, Any],
) -> tuple[Any, dict[str, Any]]:
    import snsynth.pytorch.nn.patectgan as patectgan
    import torch
    from snsynth import Synthesizer

    moments: list[Any] = []
    accountant = patectgan.moments_acc

    def counting_accountant(*args: Any, **kwargs: Any) -> Any:
        out = accountant(*args, **kwargs)
        moments.append(out.detach().clone())  # the library's own moments, values untouched
        return out

    patectgan.moments_acc = counting_accountant
    try:
        synth = Synthesizer.create(
            "patectgan", epsilon=float(epsilon), delta=float(delta), verbose=False, **options
        )
        with _captured_stdout("patectgan"):
            synth.fit(frame, transformer=transformer, preprocessor_eps=0.0)
    finally:
        patectgan.moments_acc = accountant
    order = int(synth.moments_order)
    alphas = torch.zeros(order, dtype=torch.float64)
    for m in moments:
        alphas = alphas + m.to(torch.float64).cpu()
    l_list = 1 + torch.tensor(range(order), dtype=torch.float64)
    # the library's own conversion (PATECTGAN.train): min over orders of (alpha - log delta) / l
    spent = float(torch.min((alphas - math.log(float(synth.delta))) / l_list))
    return synth, {
        "synthesizer": "patectgan",
        "preprocessor_epsilon": 0.0,
        "epsilon": spent,
        "delta": float(synth.delta),
        "accounting": "PATE with Laplace noise on the teachers' votes; the library's "
        "data-dependent moments accountant (snsynth privacy_utils.moments_acc), summed over "
        "every student query, epsilon by the library's own formula after the last iteration",
        "student_queries": len(moments),
        "num_teachers": int(synth.num_teachers),
        "noise_multiplier": float(synth.noise_multiplier),
    }


# ----------------------------------------------------------------------------- sampling


def sample(synth: Any, n: int, *, seed: int, names: Sequence[str]) -> pd.DataFrame:
    """``n`` rows in the encoded columns ``names``. The libraries draw from numpy's and torch's
    global generators: both are seeded with ``seed`` for the call and restored after it."""
    import torch

    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    try:
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        with _captured_stdout("sample"):
            out = synth.sample(int(n))
    finally:
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)
    if not isinstance(out, pd.DataFrame):
        out = pd.DataFrame(list(out), columns=list(names))
    return out.reset_index(drop=True)


# ----------------------------------------------- the dpctgan child process (Opacus 0.14)


def fit_in_child(
    workdir: Path,
    frame: pd.DataFrame,
    columns: Sequence[Mapping[str, Any]],
    *,
    synthesizer: str,
    epsilon: float,
    delta: float,
    options: Mapping[str, Any],
    seed: int,
) -> None:
    """Write the child's inputs into ``workdir`` (:func:`main` reads them)."""
    frame.to_parquet(workdir / INPUT_FILE)
    spec = {
        "synthesizer": synthesizer,
        "columns": list(columns),
        "epsilon": float(epsilon),
        "delta": float(delta),
        "options": dict(options),
        "seed": int(seed),
    }
    (workdir / SPEC_FILE).write_text(json.dumps(spec), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dpshare.smartnoise WORKDIR``: fit the synthesizer of ``WORKDIR/spec.json`` on
    ``WORKDIR/train.parquet``; write the fitted synthesizer (a pickle read back by the parent
    process that started this one, never a user's file) and ``result.json`` (the accounting and
    the library's versions as seen here)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m dpshare.smartnoise WORKDIR", file=sys.stderr)
        return 2
    workdir = Path(args[0])
    spec = json.loads((workdir / SPEC_FILE).read_text(encoding="utf-8"))
    import random

    import torch

    seed = int(spec["seed"])
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    frame = pd.read_parquet(workdir / INPUT_FILE)
    synth, accounting = fit(
        spec["synthesizer"],
        frame,
        spec["columns"],
        epsilon=spec["epsilon"],
        delta=spec["delta"],
        options=spec["options"],
    )
    with (workdir / MODEL_FILE).open("wb") as handle:
        pickle.dump(synth, handle, protocol=pickle.HIGHEST_PROTOCOL)
    import resource

    # this process's lifetime peak = the fit's (it exists for the fit only); KiB on Linux
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    result = {"accounting": accounting, "versions": library_versions(), "peak_memory_mb": peak_mb}
    (workdir / RESULT_FILE).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main())
