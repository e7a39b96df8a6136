"""``method=multidisc_gan``: heads, fusion, DP wiring, controllable generation, ablations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from conftest import SHARED_DATASETS, TINY, compose_config
from dpshare.data.base import split_records
from dpshare.data.datamodule import TabularDataModule
from dpshare.data.datasets import DATASETS
from dpshare.data.transformer import OutputSpan
from dpshare.errors import UserInputError
from dpshare.models.multidisc import MultiDiscGAN, MultiDiscGANModule, resolve_heads
from dpshare.privacy import PrivacyLedger
from dpshare.privacy.plan import plan_privacy
from dpshare.train import train

MD_TINY = [*TINY, "method=multidisc_gan", "method.batch_size=200", "method.head_hidden=32"]
SPANS = [
    OutputSpan("a", "continuous", 0, 1),
    OutputSpan("b", "continuous", 1, 2),
    OutputSpan("c", "categorical", 2, 5),
]


def _module(heads: list[str], **kw) -> MultiDiscGANModule:
    args = dict(
        spans=SPANS,
        class_prior=[0.7, 0.3],
        condition_spans=[],
        condition_priors=[],
        heads=heads,
        fusion="fixed",
        fusion_weights={},
        fusion_ema=0.9,
        shared_trunk=True,
        latent_dim=8,
        generator_dims=[16],
        discriminator_dims=[16],
        head_hidden=8,
        dropout=0.0,
        generator_lr=1e-3,
        discriminator_lr=1e-3,
        head_lr={},
        betas=[0.5, 0.9],
        weight_decay=0.0,
        discriminator_steps=1,
        gumbel_tau=0.2,
        condition_on_label=True,
        condition_loss_weight=1.0,
        rff_features=16,
        rff_bandwidth=1.0,
        sequence_shape=(6, 3) if "temporal" in heads else None,
        temporal_kernel=3,
        temporal_channels=4,
        sequence_hidden=8,
        sequence_noise_dim=2,
        log_epsilon_every=0,
        seed=0,
    )
    args.update(kw)
    return MultiDiscGANModule(**args)


def _generator_grad(module: MultiDiscGANModule, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    module.zero_grad()
    labels, picks = module.sample_conditions(64)
    x, s, c, _ = module.generate(labels, picks, hard=False)
    logits = module.discriminator(x, c, s)
    per_head = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.ones_like(logits), reduction="none"
    ).mean(0)
    module._fused(per_head).backward()
    return torch.cat(
        [p.grad.flatten() for p in module.generator.parameters() if p.grad is not None]
    )


@pytest.mark.parametrize("head", ["plain", "statistical", "semantic", "temporal"])
def test_each_head_alone_sends_gradient_to_the_generator(head: str) -> None:
    module = _module([head])
    grad = _generator_grad(module)
    assert grad.abs().sum() > 0
    if head == "temporal":  # the window head of the generator is trained through it
        assert module.generator.gru.weight_ih_l0.grad.abs().sum() > 0


def test_zero_fusion_weight_removes_a_head() -> None:
    module = _module(["statistical", "semantic"], fusion_weights={"semantic": 0.0})
    before = _generator_grad(module)
    with torch.no_grad():  # scramble the zero-weight head: the generator must not notice
        for p in module.discriminator.heads["semantic"].parameters():
            p.add_(torch.randn_like(p) * 5)
    # bit for bit: a head weighted 0 adds exact zeros, whatever the rounding elsewhere
    assert torch.equal(before, _generator_grad(module))
    # ... while scrambling the weighted head changes the generator's gradient (by far more
    # than any rounding: a relative change above 1 %)
    with torch.no_grad():
        for p in module.discriminator.heads["statistical"].parameters():
            p.add_(torch.randn_like(p) * 5)
    change = float((before - _generator_grad(module)).abs().max())
    assert change > 0.01 * float(before.abs().max())


def test_fusion_weights_normalised_and_validated() -> None:
    module = _module(["statistical", "semantic"], fusion_weights={"statistical": 3.0})
    assert module.fusion_weights().tolist() == pytest.approx([0.75, 0.25])
    scaled = _module(["statistical", "semantic"], fusion="loss_scale")
    scaled.loss_ema.copy_(torch.tensor([2.0, 0.5]))  # a head with a larger loss weighs less
    assert scaled.fusion_weights().tolist() == pytest.approx([0.2, 0.8])
    with pytest.raises(UserInputError, match="not active"):
        _module(["statistical"], fusion_weights={"temporal": 1.0})
    with pytest.raises(UserInputError, match="not all 0"):
        _module(["statistical"], fusion_weights={"statistical": 0.0})
    with pytest.raises(UserInputError, match="fusion"):
        _module(["statistical"], fusion="mean")


def test_unshared_trunks_are_separate_parameters() -> None:
    shared = _module(["statistical", "semantic"]).discriminator
    split = _module(["statistical", "semantic"], shared_trunk=False).discriminator
    assert set(shared.head_parameter_groups()) == {"trunk", "statistical", "semantic"}
    assert set(split.head_parameter_groups()) == {"statistical", "semantic"}
    assert sum(p.numel() for p in split.parameters()) > sum(p.numel() for p in shared.parameters())


def test_heads_resolution_and_errors() -> None:
    assert resolve_heads(None, has_sequences=False) == ["statistical", "semantic"]
    assert resolve_heads(None, has_sequences=True) == ["statistical", "semantic", "temporal"]
    with pytest.raises(UserInputError, match="no per-record windows"):
        resolve_heads(["temporal"], has_sequences=False)
    with pytest.raises(UserInputError, match="at most once"):
        resolve_heads(["plain", "bogus"], has_sequences=False)
    with pytest.raises(UserInputError, match="no conditions|none"):
        _module(["semantic"], condition_on_label=False)


# -------------------------------------------------------------------- on a tiny bank_sim table


def _method(overrides: list[str], dp: bool = False) -> tuple[MultiDiscGAN, PrivacyLedger, object]:
    extra = ["privacy=fixed", "privacy.target_delta=1e-4"] if dp else []
    cfg = compose_config([*MD_TINY, *extra, *overrides])
    data = DATASETS.get(cfg.dataset.name)(cfg.dataset, max_records=cfg.scale.max_records)
    splits = split_records(data, val_fraction=0.1, test_fraction=0.2, split_seed=0, stratify=True)
    plan = None
    if dp:
        plan = plan_privacy(
            cfg.privacy,
            n_train=len(splits.train),
            batch_size=cfg.method.batch_size,
            max_epochs=cfg.trainer.max_epochs,
        )
    ledger = PrivacyLedger(
        target_epsilon=cfg.privacy.get("target_epsilon"),
        target_delta=cfg.privacy.get("target_delta", 1e-5),
        n_records=len(splits.train),
    )
    dm = TabularDataModule(
        data, splits.train, batch_size=cfg.method.batch_size, ledger=ledger, plan=plan
    )
    return MultiDiscGAN(cfg.method, dm, plan=plan), ledger, cfg


def _fit(method: MultiDiscGAN, cfg) -> None:
    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=False,
        enable_checkpointing=False,
    )
    method.fit(trainer)


def test_dp_cluster_trunk_and_heads_live_in_the_dp_optimizer_and_steps_are_counted() -> None:
    method, ledger, cfg = _method([], dp=True)
    module = method.module
    _fit(method, cfg)
    opt_g, opt_d = module.trainer.optimizers
    assert type(opt_d).__name__.startswith("DPOptimizer")
    dp_ids = {id(p) for g in opt_d.param_groups for p in g["params"]}
    cluster_ids = {id(p) for p in module.discriminator.parameters()}
    gen_ids = {id(p) for p in module.generator.parameters()}
    assert dp_ids == cluster_ids and not (dp_ids & gen_ids)
    trunk_ids = {id(p) for p in module.discriminator._module.trunk.parameters()}
    assert trunk_ids and trunk_ids <= dp_ids
    assert [g["name"] for g in opt_d.param_groups] == ["trunk", "statistical", "semantic"]
    entry = next(e for e in ledger.entries if e.module == "discriminator_cluster")
    steps = module.discriminator_updates
    assert steps > 0
    assert entry.parameters["noisy_steps"] == steps
    assert entry.parameters["head_steps"] == {"statistical": steps, "semantic": steps}
    assert ledger.epsilon_spent() <= cfg.privacy.target_epsilon + 1e-9
    # the generator step reads no real record and never moves the trunk or a head
    before = [p.detach().clone() for p in module.discriminator.parameters()]
    charged = ledger.epsilon_spent()
    module.log_dict = lambda *args, **kwargs: None  # outside a Lightning loop
    module._generator_step(opt_g, 64, torch.device("cpu"))
    after = list(module.discriminator.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(getattr(p, "grad_sample", None) is None for p in after)
    assert ledger.epsilon_spent() == charged


def test_class_mix_and_conditions_are_respected() -> None:
    method, _, cfg = _method(["method.condition_columns=[bank]", "scale.max_epochs=1"])
    _fit(method, cfg)
    frame = method.sample(4000, seed=1, class_mix={1: 0.3, 0: 0.7})
    assert (frame["is_high_risk"] == 1).mean() == pytest.approx(0.3, abs=0.03)
    bank = str(method.datamodule.train_frame["bank"].iloc[0])
    fixed = method.sample(300, seed=2, conditions={"bank": bank})
    assert len(fixed) == 300 and (fixed["bank"].astype(str) == bank).all()
    with pytest.raises(UserInputError, match="not conditioned on"):
        method.sample(10, seed=0, conditions={"channel": "x"})
    with pytest.raises(UserInputError, match="not a category"):
        method.sample(10, seed=0, conditions={"bank": "no_such_bank"})


def test_match_marginals_moves_towards_the_released_frequencies() -> None:
    method, _, cfg = _method(["scale.max_epochs=1"])
    _fit(method, cfg)
    train = method.datamodule.train_frame
    cols = [c for c in ("bank", "channel", "merchant_category") if c in train.columns]
    assert cols

    def distance(frame) -> float:
        total = 0.0
        for col in cols:
            p = train[col].astype(str).value_counts(normalize=True)
            q = frame[col].astype(str).value_counts(normalize=True)
            total += float(p.subtract(q, fill_value=0).abs().sum())
        return total

    plain = method.sample(1000, seed=3, refine={"match_marginals": False})
    raked = method.sample(1000, seed=3, refine={"match_marginals": True, "oversample": 4.0})
    assert distance(raked) < distance(plain)


@pytest.mark.parametrize(
    "overrides",
    [
        ["method.heads=[plain]"],
        ["method.shared_trunk=false"],
        ["method.fusion=loss_scale"],
        ["method.heads=[statistical]", "method.condition_on_label=false"],
        ["method.fusion_weights={statistical: 0.0, semantic: 1.0}"],
        ["method.condition_columns=[bank]", "method.conditions={bank: bank_A}"],
    ],
    ids=["single", "no_shared_trunk", "loss_scale", "statistical_only", "zero_weight", "cond"],
)
def test_ablation_configs_compose_and_run(tmp_path: Path, overrides: list[str]) -> None:
    cfg = compose_config([*MD_TINY, "scale.max_epochs=1", *overrides], tmp_path / "run")
    metrics = train(cfg)
    assert 0.0 <= metrics["utility/tstr_auc"] <= 1.0
    ledger = json.loads((tmp_path / "run" / "privacy_ledger.json").read_text())
    cluster = next(e for e in ledger["entries"] if e["module"] == "discriminator_cluster")
    assert cluster["parameters"]["heads"]


@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason="shared datasets absent")
def test_temporal_head_on_mimic_demo_releases_windows(tmp_path: Path) -> None:
    root = SHARED_DATASETS / "mimic3-demo"
    cfg = compose_config(
        [
            *MD_TINY,
            "dataset=mimic3",
            f"dataset.root={root}",
            f"dataset.cache_dir={tmp_path / 'cache'}",
            "method.batch_size=16",
            "privacy=fixed",
            "privacy.target_epsilon=3.0",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    windows = np.load(tmp_path / "run" / "synthetic_sequences.npy")
    assert windows.shape == (metrics["data/n_synthetic"], 48, 36)
    assert np.isfinite(windows).all()
    ledger = json.loads((tmp_path / "run" / "privacy_ledger.json").read_text())
    cluster = next(e for e in ledger["entries"] if e["module"] == "discriminator_cluster")
    assert cluster["parameters"]["heads"] == ["statistical", "semantic", "temporal"]
    assert metrics["privacy/epsilon_spent"] <= 3.0


def test_temporal_head_without_sequences_is_a_clear_error(tmp_path: Path) -> None:
    cfg = compose_config([*MD_TINY, "method.heads=[temporal]"], tmp_path / "run")
    with pytest.raises(UserInputError, match="no per-record windows"):
        train(cfg)


def test_python_api_fits_records_and_samples_with_controls(tmp_path: Path) -> None:
    from dpshare.api import fit

    run = fit(
        *MD_TINY, "scale.max_epochs=1", "method.condition_columns=[bank]", run_dir=tmp_path / "api"
    )
    assert (run.run_dir / "metrics.json").exists()
    assert run.metrics["data/n_synthetic"] > 0
    mixed = run.sample(2000, seed=4, class_mix={1: 0.5, 0: 0.5})
    assert (mixed["is_high_risk"] == 1).mean() == pytest.approx(0.5, abs=0.04)
    fixed = run.sample(100, seed=5, conditions={"bank": "bank_C"})
    assert (fixed["bank"].astype(str) == "bank_C").all()
