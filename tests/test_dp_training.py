"""DP invariants of GAN training: what is wrapped, what is clipped, what is counted, when it stops.

These run the real LightningModule on a tiny simulated table (seconds on a CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from conftest import TINY, compose_config
from dpshare.data.base import split_records
from dpshare.data.datamodule import TabularDataModule
from dpshare.data.datasets import DATASETS
from dpshare.errors import UserInputError
from dpshare.models.registry import METHODS
from dpshare.models.standard_gan import StandardGAN
from dpshare.privacy import PrivacyLedger, compose_epsilon
from dpshare.privacy.controllers import make_controller
from dpshare.privacy.plan import plan_privacy
from dpshare.train import train
from numerics import assert_close_f64, assert_float32_sum

DP_TINY = [*TINY, "privacy=fixed", "privacy.target_delta=1e-4"]


def _method(overrides: list[str]) -> tuple[StandardGAN, PrivacyLedger, object]:
    cfg = compose_config([*DP_TINY, *overrides])
    data = DATASETS.get("bank_sim")(cfg.dataset, max_records=cfg.scale.max_records)
    splits = split_records(data, val_fraction=0.1, test_fraction=0.2, split_seed=0, stratify=True)
    plan = plan_privacy(
        cfg.privacy,
        n_train=len(splits.train),
        batch_size=cfg.method.batch_size,
        max_epochs=cfg.trainer.max_epochs,
    )
    ledger = PrivacyLedger(
        target_epsilon=cfg.privacy.target_epsilon,
        target_delta=cfg.privacy.target_delta,
        n_records=len(splits.train),
    )
    dm = TabularDataModule(
        data,
        splits.train,
        batch_size=cfg.method.batch_size,
        ledger=ledger,
        plan=plan,
        public_validation=splits.validation,
    )
    # the method the overrides name (standard_gan unless they say method=...)
    return METHODS.get(cfg.method.name)(cfg.method, dm, plan=plan), ledger, cfg


def _trainer(cfg) -> pl.Trainer:
    return pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=False,
        enable_checkpointing=False,
    )


def test_generator_parameters_are_never_in_a_dp_optimizer() -> None:
    method, _, _ = _method(["privacy.noise_multiplier=1.0"])
    opt_g, opt_d = method.module.configure_optimizers()
    gen_ids = {id(p) for p in method.module.generator.parameters()}
    disc_ids = {id(p) for p in method.module.discriminator.parameters()}
    dp_ids = {id(p) for group in opt_d.param_groups for p in group["params"]}
    assert type(opt_d).__name__.startswith("DPOptimizer")
    assert not type(opt_g).__name__.startswith("DP")
    assert dp_ids == disc_ids and not (dp_ids & gen_ids)


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_every_real_and_generated_row_is_clipped_in_one_step(mode: str) -> None:
    method, _, _ = _method(
        [
            "privacy.noise_multiplier=1.0",
            "privacy.max_grad_norm=0.05",
            f"privacy.grad_sample_mode={mode}",
        ]
    )
    module = method.module
    _, opt_d = module.configure_optimizers()
    x_real = method.datamodule.x_train[:37]
    y_real = method.datamodule.y_train[:37]
    n_fake = 50
    captured = {}

    def capture(optimizer) -> None:  # runs inside pre_step, after clipping and noise
        captured["summed"] = [p.summed_grad.clone() for p in optimizer.params]
        captured["samples"] = [p.grad_sample.clone() for p in optimizer.params]

    opt_d.attach_step_hook(capture)
    module.log_dict = lambda *a, **k: None  # no trainer attached
    module.manual_backward = lambda loss: loss.backward()
    module._discriminator_step(opt_d, x_real, y_real, n_fake)
    samples = captured["samples"]
    assert all(g.shape[0] == 37 + n_fake for g in samples)  # one clipped step for both halves
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in samples]).norm(dim=0)
    assert norms.max() > 0.05  # clipping is active
    factor = (0.05 / (norms + 1e-6)).clamp(max=1.0)
    clipped_norms = norms * factor
    assert clipped_norms.max() <= 0.05 * (1 + 1e-5)
    # the factor is Opacus's own formula in float32 (same norms, same order), so only the float32
    # summation may differ: bounded by its worst-case rounding (numerics.py)
    for g, summed in zip(samples, captured["summed"], strict=True):
        assert_float32_sum(summed, factor.view(-1, *([1] * (g.dim() - 1))) * g)


def test_accounted_steps_equal_noisy_steps_taken() -> None:
    method, ledger, cfg = _method(["privacy.noise_multiplier=1.0", "privacy.target_epsilon=null"])
    taken = {"n": 0}
    original = method.module.configure_optimizers

    def counting():
        opt_g, opt_d = original()
        inner = opt_d.original_optimizer.step

        def step(*args, **kwargs):
            taken["n"] += 1
            return inner(*args, **kwargs)

        opt_d.original_optimizer.step = step
        return [opt_g, opt_d]

    method.module.configure_optimizers = counting
    method.fit(_trainer(cfg))
    entry = next(e for e in ledger.entries if e.module == "discriminator")
    assert taken["n"] == entry.steps == method.module.discriminator_updates
    assert entry.steps == method.plan.planned_steps
    assert ledger.epsilon_spent() == pytest.approx(compose_epsilon(ledger.history(), delta=1e-4))


def test_training_stops_before_the_budget_would_be_exceeded() -> None:
    method, ledger, cfg = _method(
        ["privacy.noise_multiplier=1.2", "privacy.target_epsilon=4.0", "scale.max_epochs=20"]
    )
    method.fit(_trainer(cfg))
    entry = next(e for e in ledger.entries if e.module == "discriminator")
    assert entry.parameters["stopped_by_budget"]
    assert 0 < entry.steps < method.plan.planned_steps
    assert ledger.epsilon_spent() <= 4.0
    assert compose_epsilon([*ledger.history(), (1.2, method.plan.sample_rate, 1)], delta=1e-4) > 4.0


def test_fixed_run_record(tmp_path) -> None:
    cfg = compose_config(
        [*DP_TINY, "privacy.target_epsilon=1.0", "method.continuous_scale=auto"], tmp_path / "run"
    )
    metrics = train(cfg)
    assert metrics["privacy/is_dp"] == 1
    assert 0.9 < metrics["privacy/epsilon_spent"] <= 1.0
    assert metrics["privacy/noisy_steps"] == metrics["privacy/planned_steps"] > 0
    assert metrics["privacy/noise_calibrated"] == 1
    assert metrics["privacy/accountant"] == "rdp" and metrics["privacy/approximate"] == 0
    ledger = json.loads((tmp_path / "run" / "privacy_ledger.json").read_text())
    modules = [e["module"] for e in ledger["entries"]]
    assert modules == ["transformer", "label_distribution", "discriminator"]
    assert all(e["differentially_private"] for e in ledger["entries"])
    assert ledger["entries"][2]["steps"] == metrics["privacy/noisy_steps"]
    # method.continuous_scale=auto reaches the DP fit: the columns declared
    # [0, >= 1000] are on the log scale in the saved transformer, the 24-hour counts are not
    saved = json.loads((tmp_path / "run" / "generator.json").read_text())["transformer"]
    log_scale = {e["name"]: e["log_scale"] for e in saved["encoders"] if e["kind"] == "continuous"}
    assert log_scale == {
        "account_age_days": True,
        "amount": True,
        "balance_before": True,
        "hours_since_prev": True,
        "txn_count_24h": False,
        "cross_bank_count_24h": False,
    }
    # the record names the numeric columns whose DP std does not stand out of its noise
    stats = saved["release"]["statistics"]
    unresolved = [c for c, s in stats.items() if s.get("std_resolved") is False]
    assert all(stats[c]["kind"] in ("continuous", "datetime") for c in unresolved)
    assert sorted(metrics["data/unresolved_std_columns"].split(",")) == sorted(unresolved)
    assert unresolved  # the 24-hour counts of a tiny train split are not resolved


def test_pid_run_moves_sigma_and_charges_its_signals(tmp_path) -> None:
    cfg = compose_config(
        [
            *TINY,
            "privacy=pid",
            "privacy.target_delta=1e-4",
            "privacy.monitor_every=5",
            "privacy.pid.setpoint=0.1",  # quality sits above it: sigma must come down
            "scale.max_epochs=3",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["privacy/epsilon_spent"] <= 1.0
    assert metrics["privacy/noise_multiplier_min"] < metrics["privacy/noise_multiplier_max"]
    assert metrics["privacy/signal_steps"] > 0
    ledger = json.loads((tmp_path / "run" / "privacy_ledger.json").read_text())
    by_module = {e["module"]: e for e in ledger["entries"]}
    assert {"controller_signal", "controller_moments"} <= set(by_module)
    assert len(by_module["discriminator"]["history"]) > 1  # a sigma schedule, not a constant
    assert ledger["controller_history"]


def test_wgan_feedback_run_is_within_budget(tmp_path) -> None:
    cfg = compose_config(
        [
            *TINY,
            "privacy=wgan_feedback",
            "privacy.target_delta=1e-4",
            "privacy.monitor_every=3",
            "privacy.wgan_feedback.similarity_threshold=0.0",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["privacy/epsilon_spent"] <= 1.0
    assert metrics["privacy/signal_steps"] == 0  # synthetic-only signal: free
    assert metrics["privacy/noise_multiplier_min"] < metrics["privacy/noise_multiplier_max"]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("privacy.target_epsilon=-1", "target_epsilon"),
        ("privacy.grad_sample_mode=magic", "grad_sample_mode"),
        ("privacy.transformer_fit=sometimes", "transformer_fit"),
        ("privacy.target_delta=2", "target_delta"),
    ],
)
def test_impossible_privacy_parameters_fail_clearly(override: str, match: str) -> None:
    with pytest.raises(UserInputError, match=match):
        _method([override])


@settings(max_examples=20, deadline=None)
@given(
    trace=st.lists(
        st.fixed_dictionaries(
            {"disc_accuracy": st.floats(0, 1), "frechet_distance": st.floats(0, 50)}
        ),
        min_size=5,
        max_size=40,
    )
)
def test_pid_never_overspends_for_random_signal_traces(trace: list[dict]) -> None:
    sample_rate, steps_per_update = 0.05, 20
    ledger = PrivacyLedger(target_epsilon=1.0, target_delta=1e-5)
    entry = ledger.open_dp_sgd(
        module="d", purpose="x", records=1000, sample_rate=sample_rate, poisson_sampling=True
    )
    controller = make_controller(
        "pid",
        noise_multiplier=4.0,
        max_grad_norm=1.0,
        sigma_min=0.6,
        sigma_max=4.0,
        kp=5.0,
        ki=1.0,
        kd=0.5,
        window=3,
        setpoint=0.2,
        max_step_change=2.0,
        integral_limit=5.0,
        fd_scale=10.0,
        signal_weights={"disc_accuracy": 1.0, "frechet_distance": 1.0},
    )
    stopped = False
    for step, signals in enumerate(trace * 5):
        for _ in range(steps_per_update):
            sigma = controller.noise_multiplier
            if not ledger.allows([(entry, sigma)]):
                stopped = True
                break
            ledger.step(entry, sigma)
        if stopped:
            break
        controller.observe(step, signals)
        assert 0.6 <= controller.noise_multiplier <= 4.0
    assert ledger.epsilon_spent() <= 1.0 + 1e-9
    assert math.isfinite(ledger.epsilon_spent()) and np.isfinite(entry.steps)


def test_ghost_and_bookkeeping_give_the_same_clipped_sum_as_per_sample_hooks() -> None:
    from dpshare.models.dp import DPSettings, DPStepper, make_optimizer, wrap_module
    from dpshare.models.networks import MLPDiscriminator

    torch.manual_seed(0)
    f64 = torch.float64  # compared in double: only a real difference exceeds 1e-9 relative
    base = MLPDiscriminator(input_dim=6, condition_dim=2, hidden_dims=[16, 8], dropout=0.0)
    base = base.double()
    x = torch.randn(40, 6, dtype=f64) * 3
    c = torch.nn.functional.one_hot(torch.arange(40) % 2).to(f64)
    targets = (torch.arange(40) < 15).to(f64)
    grads = {}
    for mode in ("hooks", "ghost", "bk"):
        settings = DPSettings(
            noise_multiplier=0.0,
            max_grad_norm=0.1,
            sample_rate=0.5,
            expected_batch_size=20,
            grad_sample_mode=mode,
        )
        fresh = MLPDiscriminator(input_dim=6, condition_dim=2, hidden_dims=[16, 8], dropout=0.0)
        module = wrap_module(fresh.double(), settings)
        module._module.load_state_dict(base.state_dict())
        opt = make_optimizer(torch.optim.SGD(module.parameters(), lr=0.0), settings)
        ledger = PrivacyLedger()
        entry = ledger.open_dp_sgd(
            module="d", purpose="t", records=80, sample_rate=0.5, poisson_sampling=True
        )
        stepper = DPStepper(optimizer=opt, module=module, ledger=ledger, entry=entry)
        opt.zero_grad()
        loss = stepper.loss(module(x, c), targets)
        loss.backward()
        opt.step()
        grads[mode] = [p.grad.clone() for p in module.parameters()]
        assert entry.steps == 1
    for mode in ("ghost", "bk"):
        for g_hooks, g_fast in zip(grads["hooks"], grads[mode], strict=True):
            assert_close_f64(g_hooks, g_fast)


def test_fixed_size_batches_are_flagged_approximate(tmp_path) -> None:
    cfg = compose_config(
        [*DP_TINY, "privacy.target_epsilon=2.0", "privacy.poisson_sampling=false"],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["privacy/approximate"] == 1
    assert metrics["privacy/epsilon_spent"] <= 2.0


def test_pid_on_a_declared_public_validation_split(tmp_path) -> None:
    cfg = compose_config(
        [
            *TINY,
            "privacy=pid",
            "privacy.target_delta=1e-4",
            "privacy.monitor_every=5",
            "privacy.signal_source=public_validation",
            "+privacy.pid.signal_weights.val_utility=1.0",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["privacy/declared_public_reads"] == 1
    assert metrics["privacy/signal_steps"] == 0  # nothing charged: the split is declared public
    ledger = json.loads((tmp_path / "run" / "privacy_ledger.json").read_text())
    assert "controller_signals" in ledger["declared_public_reads"]
    assert any("signal/val_utility" in h for h in ledger["controller_history"])


def test_val_utility_without_a_public_split_is_refused() -> None:
    cfg = compose_config([*TINY, "privacy=pid", "+privacy.pid.signal_weights.val_utility=1.0"])
    with pytest.raises(UserInputError, match="public_validation"):
        plan_privacy(cfg.privacy, n_train=1000, batch_size=100, max_epochs=1)


@pytest.mark.parametrize("name", ["standard_gan", "multidisc_gan"])
def test_generator_ema_is_what_a_dp_run_samples_and_releases(name: str) -> None:
    """``method.generator_ema``: training moves the average; the released weights and every
    sampled row come from it, not from the live generator; it costs no privacy."""
    method, ledger, cfg = _method([f"method={name}", "method.generator_ema=0.9"])
    module = method.module
    initial = [p.detach().clone() for p in module.generator_ema.parameters()]
    method.fit(_trainer(cfg))
    assert module.generator_updates > 0
    averaged = list(module.generator_ema.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(initial, averaged, strict=True))
    released = method.state_dict()["generator"]
    ema, live = module.generator_ema.state_dict(), module.generator.state_dict()
    assert all(torch.equal(released[k], ema[k]) for k in released)
    assert any(not torch.equal(released[k], live[k]) for k in released if "weight" in k)
    spent = ledger.epsilon_spent()
    rows = method.sample(300, seed=3)
    with torch.no_grad():  # wreck the live generator: the samples must not change
        for p in module.generator.parameters():
            p.add_(5.0)
    pd.testing.assert_frame_equal(method.sample(300, seed=3), rows)
    assert ledger.epsilon_spent() == spent
    # without an average the live generator is sampled (the check above can fail)
    plain, _, plain_cfg = _method(
        [f"method={name}", "scale.max_epochs=1", "method.generator_ema=null"]
    )
    plain.fit(_trainer(plain_cfg))
    before = plain.sample(300, seed=3)
    with torch.no_grad():
        for p in plain.module.generator.parameters():
            p.add_(5.0)
    assert not plain.sample(300, seed=3).equals(before)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5])
def test_generator_ema_outside_zero_one_is_a_clear_error(bad: float) -> None:
    for name in ("standard_gan", "multidisc_gan"):
        with pytest.raises(UserInputError, match="method.generator_ema"):
            _method(
                [f"method={name}", "privacy.noise_multiplier=1.0", f"method.generator_ema={bad}"]
            )
