"""Cost of one DP discriminator step against the same step without DP, per Opacus mode.

For each model, in ONE process and on ONE fixed batch (real rows + generated rows, the
concatenated batch the project steps on), this times:

* ``non_private``: forward of the real + generated rows, the loss, ``backward()``, the
  optimizer step(s), exactly as the model's non-private training step does them;
* one DP step per ``grad_sample_mode``: ``bk`` (book-keeping, the project's default,
  :mod:`dpshare.models.bookkeeping`) and Opacus's ``hooks``, ``functorch``, ``ew`` (expanded
  weights) and ``ghost`` (fast gradient clipping), i.e. the same step with per-sample gradients
  (or norms), clipping, Gaussian noise and the privacy ledger's per-step charge (the
  optimizer's step hook).

Models (sizes from the project's own configs, ``conf/method/*.yaml``):

* ``multidisc_gan``: the Deng 2026 discriminator cluster (shared trunk + statistical and
  semantic heads, fused) on bank_sim's encoded width; ``method.batch_size`` = 500 real rows
  + 500 generated rows = 1,000 rows per step.
* ``dp_wgan``: the Tao 2020 MNIST critic (1x28x28 images + labels); ``method.batch_size`` =
  64 real + 64 generated = 128 rows per step (weight clipping after the step, as in training).

How each variant is built: by the project's own code. The Hydra config is composed from
``conf/``; the ledger and plan come from :func:`dpshare.train._privacy_setup`, the DataModule is
:class:`~dpshare.data.datamodule.TabularDataModule` and the model is the method class itself
(:class:`~dpshare.models.multidisc.MultiDiscGAN`, :class:`~dpshare.models.dp_wgan.DPWGAN`), so
``wrap_module``, ``make_optimizer`` and ``PrivateTraining`` / ``DPStepper`` (ledger charge per
noisy step) are exactly those of a training run; ``privacy.grad_sample_mode`` selects the mode.
``ew`` is the one exception: :class:`~dpshare.models.dp.DPSettings` does not accept it, so the
benchmark wraps the non-private model's discriminator in Opacus's
``GradSampleModuleExpandedWeights`` itself and uses the project's ``private_training``,
``make_optimizer`` (a plain ``DPOptimizer``, as for hooks/functorch) and ``attach``.

What is replicated rather than called: the body of the discriminator step (``zero_grad``,
forward, per-sample loss, ``backward``, ``step``), because the LightningModule's step also
generates the fake half and logs through a Trainer. Generation is done once, before timing, so
every variant sees the same tensors; its cost is identical with and without DP.

Timing: ``warmup`` untimed steps per variant, then ``repeats`` rounds; in each round every
variant takes one step (round-robin), so a change of machine load hits all variants alike.
Each step is split into forward / backward / optimizer phases (``time.perf_counter``). The
privacy ledger's "may I step?" check (``PrivateTraining.may_step``), which the training step
runs before every DP step, is timed on its own.

Run: ``make bench`` or ``python benchmarks/bench_dp_step.py [--repeats 30] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch.nn import functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

NON_PRIVATE = "non_private"
DP_MODES = ("bk", "hooks", "functorch", "ew", "ghost")
VARIANTS = (NON_PRIVATE, *DP_MODES)
MODELS = ("multidisc_gan", "dp_wgan")
TARGET_RATIO = 2.0  # issue "Performance": DP step <= 2.0x the non-private step, both models

log = logging.getLogger("bench_dp_step")


def _project_default_mode() -> str:
    # the suite's default privacy.grad_sample_mode (conf/privacy/fixed.yaml)
    from omegaconf import OmegaConf

    return str(OmegaConf.load(CONF_DIR / "privacy" / "fixed.yaml").grad_sample_mode)


PROJECT_DEFAULT_MODE = _project_default_mode()


# ------------------------------------------------------------------------------- environment


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict[str, Any]:
    """The machine and library versions a timing belongs to."""
    import opacus

    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opacus": opacus.__version__,
        "torch_threads": threads,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "load_average_1_5_15": load,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def set_threads(threads: int) -> int:
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def quiet() -> None:
    for name in ("pytorch_lightning", "lightning_fabric", "lightning", "dpshare"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")
    warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
    warnings.filterwarnings("ignore", message=".*target_delta.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="opacus")


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """The project's Hydra config, as ``python -m dpshare.train`` would compose it."""
    from dpshare.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[*overrides, "run_dir=unused"])


# ------------------------------------------------------------------------------------ timing


@dataclass
class StepSetup:
    """One variant ready to step: ``step()`` returns (forward, backward, optimizer) seconds."""

    step: Callable[[], tuple[float, float, float]]
    built_by: str
    may_step: Callable[[], bool] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min, max and mean of a list of durations, in milliseconds."""
    ms = sorted(1e3 * s for s in seconds)
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q1 = q3 = ms[0]
    return {
        "median_ms": statistics.median(ms),
        "q1_ms": q1,
        "q3_ms": q3,
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "mean_ms": statistics.fmean(ms),
    }


def time_variants(
    setups: Mapping[str, StepSetup], *, warmup: int, repeats: int
) -> dict[str, dict[str, Any]]:
    """Warm every variant up, then ``repeats`` round-robin rounds of one step per variant."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for setup in setups.values():
        for _ in range(warmup):
            setup.step()
    totals: dict[str, list[float]] = {name: [] for name in setups}
    phases: dict[str, list[tuple[float, float, float]]] = {name: [] for name in setups}
    for _ in range(repeats):
        for name, setup in setups.items():
            t0 = time.perf_counter()
            parts = setup.step()
            totals[name].append(time.perf_counter() - t0)
            phases[name].append(parts)
    out: dict[str, dict[str, Any]] = {}
    for name, setup in setups.items():
        fwd, bwd, opt = zip(*phases[name], strict=True)
        entry: dict[str, Any] = {
            "status": "ok",
            "built_by": setup.built_by,
            **summarize(totals[name]),
            "phases_median_ms": {
                "forward": 1e3 * statistics.median(fwd),
                "backward": 1e3 * statistics.median(bwd),
                "optimizer": 1e3 * statistics.median(opt),
            },
            "times_ms": [1e3 * s for s in totals[name]],
            **setup.info,
        }
        if setup.may_step is not None:
            checks = []
            for _ in range(max(repeats, 5)):
                t0 = time.perf_counter()
                setup.may_step()
                checks.append(time.perf_counter() - t0)
            entry["ledger_check_median_ms"] = 1e3 * statistics.median(checks)
        out[name] = entry
    return out


def bench_model(
    model: str,
    builders: Mapping[str, Callable[[], StepSetup]],
    *,
    warmup: int,
    repeats: int,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build every variant (a variant whose build or first step fails is listed as
    unsupported, with the reason), time them, and add each DP mode's ratio to the
    non-private step (by median; also by minimum, the figure least disturbed by load)."""
    if NON_PRIVATE not in builders:
        raise ValueError(f"builders must include {NON_PRIVATE!r}")
    setups: dict[str, StepSetup] = {}
    unsupported: dict[str, str] = {}
    for name, build in builders.items():
        try:
            setup = build()
            setup.step()  # a mode that builds but cannot step is unsupported too
        except Exception as exc:  # the reason is the result
            if name == NON_PRIVATE:
                raise
            first_line = (str(exc).splitlines() or [""])[0]
            unsupported[name] = f"{type(exc).__name__}: {first_line.split(', tensor(')[0][:200]}"
            log.warning("%s / %s unsupported: %s", model, name, unsupported[name])
            continue
        setups[name] = setup
    timed = time_variants(setups, warmup=warmup, repeats=repeats)
    base = timed[NON_PRIVATE]
    variants: dict[str, Any] = {}
    for name in builders:
        if name in unsupported:
            variants[name] = {"status": "unsupported", "reason": unsupported[name]}
            continue
        entry = timed[name]
        if name != NON_PRIVATE:
            entry["ratio_median"] = entry["median_ms"] / base["median_ms"]
            entry["ratio_min"] = entry["min_ms"] / base["min_ms"]
            entry["meets_target"] = entry["ratio_median"] <= TARGET_RATIO
        variants[name] = entry
    dp_ok = {k: v for k, v in variants.items() if k != NON_PRIVATE and v["status"] == "ok"}
    best = min(dp_ok, key=lambda k: dp_ok[k]["ratio_median"]) if dp_ok else None
    return {
        "model": model,
        **dict(meta or {}),
        "warmup": warmup,
        "repeats": repeats,
        "variants": variants,
        "fastest_dp_mode": best,
        "target_ratio": TARGET_RATIO,
        "project_default_mode": PROJECT_DEFAULT_MODE,
        "target_met_by_project_default": bool(
            variants.get(PROJECT_DEFAULT_MODE, {}).get("meets_target", False)
        ),
        "target_met_by_any_mode": any(v["meets_target"] for v in dp_ok.values()),
    }


# ------------------------------------------------------------------------ model construction


@dataclass
class _Built:
    method: Any  # the project's method object (MultiDiscGAN / DPWGAN)
    datamodule: Any


def _build_method(
    cfg: DictConfig, data: Any, train_split: Any, *, private: bool, method_cls: type
) -> _Built:
    """The method object exactly as ``dpshare.train`` builds it (ledger, plan, DataModule);
    the DataModule always gets the DP plan, so the encoded width (DP transformer fit) is the
    same with and without DP, and only the discriminator's training differs."""
    from dpshare.data.datamodule import TabularDataModule
    from dpshare.train import _privacy_setup

    ledger, plan = _privacy_setup(cfg, n_train=len(train_split))
    datamodule = TabularDataModule(
        data,
        train_split,
        batch_size=cfg.method.batch_size,
        continuous_mode=cfg.method.continuous_mode,
        ledger=ledger,
        seed=cfg.seed,
        plan=plan,
    )
    torch.manual_seed(cfg.seed)  # identical initial weights in every variant
    method = method_cls(cfg.method, datamodule, plan=plan if private else None)
    return _Built(method, datamodule)


def _load(cfg: DictConfig) -> tuple[Any, Any]:
    from dpshare.train import load_data

    data, splits = load_data(cfg)
    return data, splits.train


def _ew_private(built: _Built, module_name: str) -> tuple[Any, Any]:
    """``ew``: the project's PrivateTraining for a hooks-mode plan (so ``make_optimizer``
    picks a plain DPOptimizer) and Opacus's expanded-weights wrapper around the
    discriminator of a non-private build."""
    from opacus.grad_sample.gsm_exp_weights import GradSampleModuleExpandedWeights

    from dpshare.models.standard_gan import private_training

    hooks_plan = dataclasses.replace(built.datamodule.plan, grad_sample_mode="hooks")
    private = private_training(
        hooks_plan, built.datamodule, module=module_name, purpose="benchmark (ew mode)"
    )
    wrapped = GradSampleModuleExpandedWeights(
        built.method.module.discriminator, batch_first=True, loss_reduction="mean"
    )
    return private, wrapped


def _backward(loss: Any) -> None:
    loss.backward()  # a tensor, or Opacus's two-pass DPTensorFastGradientClipping


def multidisc_builders(
    *, batch_size: int | None = None, max_records: int = 3000, overrides: Sequence[str] = ()
) -> tuple[dict[str, Callable[[], StepSetup]], dict[str, Any]]:
    """Builders for the discriminator cluster of ``method=multidisc_gan`` on bank_sim."""
    from dpshare.models.dp import make_optimizer
    from dpshare.models.multidisc import MultiDiscGAN

    def cfg_for(mode: str) -> DictConfig:
        return compose_config(
            [
                "dataset=bank_sim",
                "method=multidisc_gan",
                "privacy=fixed",
                "scale=smoke",
                f"scale.max_records={max_records}",
                "scale.max_epochs=200",  # a budget that lasts every timed step
                f"privacy.grad_sample_mode={mode}",
                # every variant is built on the SAME DP release of the transformer statistics:
                # with fresh OS-entropy noise per build, the encoded width (a released
                # missing-value slot) could differ between variants and the timed batch would
                # not fit one of them (seen in a shuffled test run); timings do not depend on it
                "privacy.noise_seed=0",
                *([f"method.batch_size={batch_size}"] if batch_size else []),
                *overrides,
            ]
        )

    base_cfg = cfg_for(PROJECT_DEFAULT_MODE)
    data, train_split = _load(base_cfg)
    reference = _build_method(base_cfg, data, train_split, private=False, method_cls=MultiDiscGAN)
    module = reference.method.module
    dm = reference.datamodule
    n_real = int(base_cfg.method.batch_size)
    gen = torch.Generator().manual_seed(1)
    x_real, y_real = dm.x_train[:n_real].clone(), dm.y_train[:n_real].clone()
    with torch.no_grad():
        y_fake, picks = module.sample_conditions(n_real, generator=gen)
        x_fake, _, c_fake, _ = module.generate(y_fake, picks, hard=False, generator=gen)
        c_real = module.real_condition_vector(x_real, y_real)
    x = torch.cat([x_real, x_fake])
    c = None if c_real is None else torch.cat([c_real, c_fake])
    targets = torch.cat([torch.ones(n_real), torch.zeros(n_real)])

    def make_step(module: Any, disc: Any, opts: Sequence[Any], loss_fn: Callable[..., Any]):
        def step() -> tuple[float, float, float]:
            t0 = time.perf_counter()
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            logits = disc(x, c, None)
            per_head = F.binary_cross_entropy_with_logits(
                logits, targets[:, None].expand_as(logits), reduction="none"
            )
            loss = loss_fn(module._fused(per_head))
            t1 = time.perf_counter()
            _backward(loss)
            t2 = time.perf_counter()
            for opt in opts:
                opt.step()
            return t1 - t0, t2 - t1, time.perf_counter() - t2

        return step

    def non_private() -> StepSetup:
        built = _build_method(base_cfg, data, train_split, private=False, method_cls=MultiDiscGAN)
        mod = built.method.module
        _, *opts = mod.configure_optimizers()  # one Adam per head + trunk, as in training
        return StepSetup(
            make_step(mod, mod.discriminator, opts, lambda s: s.mean()),
            built_by="project: MultiDiscGAN(plan=None).configure_optimizers()",
        )

    def dp(mode: str) -> Callable[[], StepSetup]:
        def build() -> StepSetup:
            if mode == "ew":
                built = _build_method(
                    base_cfg, data, train_split, private=False, method_cls=MultiDiscGAN
                )
                mod = built.method.module
                private, disc = _ew_private(built, "discriminator_cluster")
                groups = [
                    {"params": p, "lr": float(mod.head_lr.get(n, mod.discriminator_lr))}
                    for n, p in mod.param_groups.items()
                ]
                adam = torch.optim.Adam(groups, betas=mod.betas, weight_decay=mod.weight_decay)
                opt = make_optimizer(
                    adam, private.settings, noise_generator=private.noise_generator
                )
                private.attach(optimizer=opt, module=disc)
                return StepSetup(
                    make_step(mod, disc, [opt], private.mean_loss),
                    built_by=(
                        "benchmark: GradSampleModuleExpandedWeights around the cluster + "
                        "project private_training / make_optimizer / attach"
                    ),
                    may_step=private.may_step,
                )
            cfg = cfg_for(mode)
            built = _build_method(cfg, data, train_split, private=True, method_cls=MultiDiscGAN)
            mod = built.method.module
            _, opt = mod.configure_optimizers()
            private = mod.private
            return StepSetup(
                make_step(mod, mod.discriminator, [opt], private.mean_loss),
                built_by=f"project: MultiDiscGAN(privacy.grad_sample_mode={mode})",
                may_step=private.may_step,
            )

        return build

    builders: dict[str, Callable[[], StepSetup]] = {NON_PRIVATE: non_private}
    builders.update({mode: dp(mode) for mode in DP_MODES})
    cluster = module.discriminator
    meta = {
        "dataset": "bank_sim",
        "encoded_width": int(dm.transformer.output_dim),
        "condition_width": 0 if c is None else int(c.shape[1]),
        "heads": list(module.heads),
        "discriminator_dims": list(base_cfg.method.discriminator_dims),
        "discriminator_parameters": int(sum(p.numel() for p in cluster.parameters())),
        "real_rows": n_real,
        "generated_rows": n_real,
        "rows_per_step": int(x.shape[0]),
        "batch_source": (
            "--batch-size" if batch_size else "method.batch_size (conf/method/multidisc_gan.yaml)"
        ),
        "max_records": max_records,
    }
    return builders, meta


def dp_wgan_builders(
    *,
    batch_size: int | None = None,
    max_records: int = 3000,
    overrides: Sequence[str] = (),
) -> tuple[dict[str, Callable[[], StepSetup]], dict[str, Any]]:
    """Builders for the critic of ``method=dp_wgan`` on MNIST (``dataset.root`` may be given in
    ``overrides``)."""
    from dpshare.models.dp import make_optimizer
    from dpshare.models.dp_wgan import DPWGAN

    def cfg_for(mode: str) -> DictConfig:
        return compose_config(
            [
                "dataset=mnist",
                "method=dp_wgan",
                "privacy=fixed",
                "eval=mnist",
                "scale=smoke",
                f"scale.max_records={max_records}",
                "scale.max_epochs=200",
                f"privacy.grad_sample_mode={mode}",
                # every variant is built on the SAME DP release of the transformer statistics:
                # with fresh OS-entropy noise per build, the encoded width (a released
                # missing-value slot) could differ between variants and the timed batch would
                # not fit one of them (seen in a shuffled test run); timings do not depend on it
                "privacy.noise_seed=0",
                *([f"method.batch_size={batch_size}"] if batch_size else []),
                *overrides,
            ]
        )

    base_cfg = cfg_for(PROJECT_DEFAULT_MODE)
    data, train_split = _load(base_cfg)
    reference = _build_method(base_cfg, data, train_split, private=False, method_cls=DPWGAN)
    module = reference.method.module
    dm = reference.datamodule
    n_real = int(base_cfg.method.batch_size)
    gen = torch.Generator().manual_seed(1)
    x_real, y_real = dm.x_train[:n_real].clone(), dm.y_train[:n_real].clone()
    with torch.no_grad():
        y_fake = module.sample_labels(n_real, generator=gen)
        x_fake = module.generate(y_fake, generator=gen)
    x = torch.cat([x_real, x_fake])
    labels = torch.cat([y_real, y_fake])
    sign = torch.cat([-torch.ones(n_real), torch.ones(n_real)])

    def make_step(module: Any, disc: Any, opt: Any, loss_fn: Callable[..., Any]):
        def step() -> tuple[float, float, float]:
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(sign * disc(x, labels))
            t1 = time.perf_counter()
            _backward(loss)
            t2 = time.perf_counter()
            opt.step()
            module.clip_weights()  # weight clipping follows every critic step in training
            return t1 - t0, t2 - t1, time.perf_counter() - t2

        return step

    def non_private() -> StepSetup:
        built = _build_method(base_cfg, data, train_split, private=False, method_cls=DPWGAN)
        mod = built.method.module
        _, opt = mod.configure_optimizers()
        return StepSetup(
            make_step(mod, mod.discriminator, opt, lambda s: s.mean()),
            built_by="project: DPWGAN(plan=None).configure_optimizers()",
        )

    def dp(mode: str) -> Callable[[], StepSetup]:
        def build() -> StepSetup:
            if mode == "ew":
                built = _build_method(base_cfg, data, train_split, private=False, method_cls=DPWGAN)
                mod = built.method.module
                private, disc = _ew_private(built, "critic")
                opt = make_optimizer(
                    mod._make(mod.discriminator.parameters(), mod.critic_lr),
                    private.settings,
                    noise_generator=private.noise_generator,
                )
                private.attach(optimizer=opt, module=disc)
                return StepSetup(
                    make_step(mod, disc, opt, private.mean_loss),
                    built_by=(
                        "benchmark: GradSampleModuleExpandedWeights around the critic + "
                        "project private_training / make_optimizer / attach"
                    ),
                    may_step=private.may_step,
                )
            cfg = cfg_for(mode)
            built = _build_method(cfg, data, train_split, private=True, method_cls=DPWGAN)
            mod = built.method.module
            _, opt = mod.configure_optimizers()
            private = mod.private
            return StepSetup(
                make_step(mod, mod.discriminator, opt, private.mean_loss),
                built_by=f"project: DPWGAN(privacy.grad_sample_mode={mode})",
                may_step=private.may_step,
            )

        return build

    builders: dict[str, Callable[[], StepSetup]] = {NON_PRIVATE: non_private}
    builders.update({mode: dp(mode) for mode in DP_MODES})
    critic = module.discriminator
    meta = {
        "dataset": "mnist",
        "input_shape": [1, 28, 28],
        "critic_channels": int(base_cfg.method.critic_channels),
        "critic_norm": str(base_cfg.method.critic_norm),
        "optimizer": str(base_cfg.method.optimizer),
        "discriminator_parameters": int(sum(p.numel() for p in critic.parameters())),
        "real_rows": n_real,
        "generated_rows": n_real,
        "rows_per_step": int(x.shape[0]),
        "batch_source": (
            "--batch-size" if batch_size else "method.batch_size (conf/method/dp_wgan.yaml)"
        ),
        "max_records": max_records,
    }
    return builders, meta


BUILDERS: dict[str, Callable[..., tuple[dict[str, Callable[[], StepSetup]], dict[str, Any]]]] = {
    "multidisc_gan": multidisc_builders,
    "dp_wgan": dp_wgan_builders,
}


# ----------------------------------------------------------------------------------- reports


def run(
    *,
    models: Sequence[str] = MODELS,
    warmup: int = 5,
    repeats: int = 30,
    threads: int = 1,
    batch_size: int | None = None,
    max_records: int = 3000,
    overrides: Mapping[str, Sequence[str]] | None = None,
    modes: Sequence[str] = DP_MODES,
) -> dict[str, Any]:
    """Benchmark ``models`` and return the report (see :func:`write_reports`)."""
    quiet()
    unknown = sorted(set(models) - set(BUILDERS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {sorted(BUILDERS)}")
    bad_modes = sorted(set(modes) - set(DP_MODES))
    if bad_modes:
        raise ValueError(f"unknown mode(s) {bad_modes}; choose from {list(DP_MODES)}")
    used = set_threads(threads)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "dp_step",
        "machine": machine_info(used),
        "target": f"DP step <= {TARGET_RATIO}x the non-private step (median), both models",
        "models": {},
    }
    for model in models:
        builders, meta = BUILDERS[model](
            batch_size=batch_size,
            max_records=max_records,
            overrides=list((overrides or {}).get(model, ())),
        )
        chosen = {k: v for k, v in builders.items() if k == NON_PRIVATE or k in modes}
        report["models"][model] = bench_model(
            model, chosen, warmup=warmup, repeats=repeats, meta=meta
        )
    report["machine"]["load_average_after"] = list(os.getloadavg())
    report["wall_seconds"] = time.perf_counter() - started
    return report


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def markdown(report: Mapping[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# DP discriminator step vs non-private step",
        "",
        f"Machine: {m['cpu_model']}, {m['logical_cores']} logical cores; torch {m['torch']}, "
        f"opacus {m['opacus']}; torch threads {m['torch_threads']}; load average (1/5/15 min) "
        f"before {', '.join(f'{x:.2f}' for x in m['load_average_1_5_15'])}, after "
        f"{', '.join(f'{x:.2f}' for x in m.get('load_average_after', []))}; {m['timestamp']}.",
        "",
        f"Target: {report['target']}.",
        "",
    ]
    for model, res in report["models"].items():
        lines += [
            f"## {model}",
            "",
            f"{res['rows_per_step']} rows per step ({res['real_rows']} real + "
            f"{res['generated_rows']} generated; batch from {res['batch_source']}); "
            f"{res['discriminator_parameters']:,} discriminator parameters; "
            f"{res['warmup']} warm-up steps, {res['repeats']} timed round-robin repeats.",
            "",
            "| variant | median ms | IQR ms | min-max ms | forward / backward / optimizer ms "
            "| ledger check ms | DP / non-private (median) | (min) | <= 2.0x |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, v in res["variants"].items():
            if v["status"] != "ok":
                lines.append(f"| {name} | unsupported: {v['reason']} | | | | | | | |")
                continue
            ph = v["phases_median_ms"]
            ratio = "1 (baseline)" if name == NON_PRIVATE else f"{v['ratio_median']:.2f}x"
            rmin = "" if name == NON_PRIVATE else f"{v['ratio_min']:.2f}x"
            met = "" if name == NON_PRIVATE else ("yes" if v["meets_target"] else "no")
            check = _fmt(v["ledger_check_median_ms"]) if "ledger_check_median_ms" in v else ""
            lines.append(
                f"| {name} | {_fmt(v['median_ms'])} | {_fmt(v['q1_ms'])}-{_fmt(v['q3_ms'])} "
                f"| {_fmt(v['min_ms'])}-{_fmt(v['max_ms'])} | {_fmt(ph['forward'])} / "
                f"{_fmt(ph['backward'])} / {_fmt(ph['optimizer'])} | {check} | {ratio} | "
                f"{rmin} | {met} |"
            )
        lines += [
            "",
            f"Fastest DP mode: {res['fastest_dp_mode']}. Target met by the project default "
            f"({res['project_default_mode']}): "
            f"{'yes' if res['target_met_by_project_default'] else 'no'}; by any mode: "
            f"{'yes' if res['target_met_by_any_mode'] else 'no'}.",
            "",
        ]
    lines += [
        "The ledger check (PrivateTraining.may_step, run before every DP step) is not part of "
        "the step times; the ledger charge (DPStepper's optimizer step hook) is, in the "
        "optimizer phase.",
        "",
    ]
    return "\n".join(lines)


def write_reports(report: Mapping[str, Any], out_dir: Path, stem: str = "dp_step") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    md_path = out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return [json_path, md_path]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--modes", nargs="+", default=list(DP_MODES), choices=DP_MODES)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="real rows per step (default: config)"
    )
    parser.add_argument("--max-records", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stem", default="dp_step", help="output file name without suffix")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    report = run(
        models=args.models,
        modes=args.modes,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        batch_size=args.batch_size,
        max_records=args.max_records,
    )
    for path in write_reports(report, args.out, args.stem):
        print(f"wrote {path}")
    print(markdown(report))


if __name__ == "__main__":
    main()
