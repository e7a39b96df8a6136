"""``method.mean_embedding_weight``: the released mean embedding (DP-MERF) as a generator target:
its sensitivity and noise, its place in the plan and the ledger, and its pull on the generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, compose_config
from dpshare.api import load
from dpshare.errors import UserInputError
from dpshare.models.mean_embedding import RowEmbedding, release_mean_embedding
from dpshare.models.standard_gan import ConditionalGAN
from dpshare.privacy.plan import plan_privacy
from dpshare.train import train
from test_multidisc import SPANS

# the release and the loss are what these tests check: no fidelity or attack evaluation
QUICK_EVAL = [
    "eval.fidelity=[]",
    "eval.attacks=[]",
    "eval.models=[logistic_regression]",
    "eval.primary_model=logistic_regression",
]


def _embed(dim: int = 5, features: int = 32) -> RowEmbedding:
    return RowEmbedding(input_dim=dim, n_features=features, bandwidth=1.0, seed=3)


def test_a_row_embeds_with_norm_at_most_one_whatever_its_values() -> None:
    embed = _embed()
    x = torch.cat([torch.rand(200, 5) * 2 - 1, torch.randn(200, 5) * 50])
    norms = embed(x).double().norm(dim=1)
    assert float(norms.max()) <= 1.0 + 1e-6
    # inside [-1, 1] no clip is needed: the blocks' norms add up to at most 1
    inside = embed(x[:200]).double().norm(dim=1)
    assert float(inside.min()) > 0.5
    # the random features come from the seed, never from data
    assert torch.equal(_embed().W, embed.W)
    other = RowEmbedding(input_dim=5, n_features=32, bandwidth=1.0, seed=4)
    assert not torch.equal(other.W, embed.W)


def test_the_release_moves_by_at_most_one_per_record_and_adds_the_planned_noise() -> None:
    embed = _embed()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(500, 5, generator=g) * 2 - 1
    y = torch.randint(0, 3, (500,), generator=g)
    rng = np.random.default_rng(0)
    exact = release_mean_embedding(embed, x, y, 3, noise_multiplier=None, rng=rng).double() * 500
    # add one record far outside the data (any values): the sum moves by at most 1 (L2)
    x2 = torch.cat([x, torch.full((1, 5), 40.0)])
    y2 = torch.cat([y, torch.tensor([2])])
    neighbour = release_mean_embedding(embed, x2, y2, 3, noise_multiplier=None, rng=rng)
    moved = float((neighbour.double() * 501 - exact).norm())
    assert 0.1 < moved <= 1.0 + 1e-4
    # the noise: std sigma * sensitivity per coordinate of the SUM, from the given generator
    # (12,030 coordinates: the sample std is within 3 % of sigma but for 1 in 10^6 draws)
    embed = _embed(features=2000)
    exact = release_mean_embedding(embed, x, y, 3, noise_multiplier=None, rng=rng).double() * 500
    noisy = release_mean_embedding(
        embed, x, y, 3, noise_multiplier=2.0, rng=np.random.default_rng(7)
    ).double()
    noise = (noisy * 500 - exact).flatten().numpy()
    assert noise.size == 3 * embed.dim
    assert np.std(noise) == pytest.approx(2.0, rel=0.03)
    again = release_mean_embedding(
        embed, x, y, 3, noise_multiplier=2.0, rng=np.random.default_rng(7)
    )
    assert torch.equal(again, noisy.float())  # the same stream: the same release (resume)


def test_the_plan_composes_the_release_before_it_calibrates_sigma() -> None:
    cfg = compose_config([*TINY, "privacy=fixed", "privacy.target_epsilon=1.0"])
    kw = dict(n_train=2000, batch_size=200, max_epochs=5)
    without = plan_privacy(cfg.privacy, **kw)
    with_release = plan_privacy(cfg.privacy, **kw, method_releases=1)
    sigma = float(cfg.privacy.release_noise_multiplier)
    assert len(with_release.planned_history) == len(without.planned_history) + 1
    assert with_release.planned_history[-1] == (sigma, 1.0, 1)
    assert with_release.noise_multiplier > without.noise_multiplier


@pytest.mark.parametrize("method", ["standard_gan", "multidisc_gan"])
def test_a_dp_run_charges_the_release_once_within_the_budget(tmp_path: Path, method: str) -> None:
    run = tmp_path / "run"
    cfg = compose_config(
        [
            *TINY,
            f"method={method}",
            "privacy=fixed",
            "privacy.target_epsilon=1.0",
            "method.mean_embedding_weight=10.0",
            "method.mean_embedding_features=16",
            "scale.max_epochs=1",
            *QUICK_EVAL,
        ],
        run,
    )
    metrics = train(cfg)
    ledger = json.loads((run / "privacy_ledger.json").read_text())
    releases = [e for e in ledger["entries"] if e["module"] == "mean_embedding"]
    assert len(releases) == 1
    (entry,) = releases
    assert entry["mechanism"] == "gaussian" and entry["differentially_private"]
    assert entry["history"] == [[float(cfg.privacy.release_noise_multiplier), 1.0, 1]]
    assert entry["parameters"]["l2_sensitivity"] == 1.0
    assert entry["records"] == metrics["data/n_train"]
    # the plan counted it: sigma was calibrated with it, and the run stays within the target
    planned = ledger["plan"]["planned_history"]
    assert planned.count([float(cfg.privacy.release_noise_multiplier), 1.0, 1]) == 3
    assert 0.9 < metrics["privacy/epsilon_spent"] <= 1.0
    log = pd.read_csv(run / "csv" / "metrics.csv")
    assert log["train/mean_embedding_loss_step"].notna().any()
    # the released run loads for sampling without the train split (no new release)
    rows = load(run).sample(50, seed=1)
    assert len(rows) == 50
    # the release gate accepts the run and its card names the release
    from dpshare import release

    assert release.main([str(run), "--out", str(tmp_path / "shared")]) == 0
    card = (tmp_path / "shared" / "report_card.md").read_text(encoding="utf-8")
    assert "mean_embedding" in card


def test_a_non_private_run_lists_the_embedding_as_a_raw_read(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = compose_config(
        [
            *TINY,
            "method=standard_gan",
            "privacy=none",
            "method.mean_embedding_weight=1.0",
            "method.mean_embedding_features=8",
            "scale.max_epochs=1",
            *QUICK_EVAL,
        ],
        run,
    )
    train(cfg)
    ledger = json.loads((run / "privacy_ledger.json").read_text())
    (entry,) = [e for e in ledger["entries"] if e["module"] == "mean_embedding"]
    assert entry["mechanism"] == "non_private" and not entry["differentially_private"]


def _gan(weight: float) -> ConditionalGAN:
    return ConditionalGAN(
        spans=SPANS,
        class_prior=[0.7, 0.3],
        latent_dim=8,
        generator_dims=[32],
        discriminator_dims=[16],
        dropout=0.0,
        generator_lr=1e-2,
        discriminator_lr=1e-3,
        betas=[0.5, 0.9],
        weight_decay=0.0,
        discriminator_steps=1,
        gumbel_tau=0.2,
        condition_on_label=True,
        mean_embedding_weight=weight,
        mean_embedding_features=32,
    )


def test_the_generator_loss_pulls_the_rows_to_the_released_embedding() -> None:
    gan = _gan(1.0)
    assert gan.mean_embedding is not None
    # a target: class 0 has a = -0.8, class 1 has a = +0.8 (and the rest fixed)
    g = torch.Generator().manual_seed(1)
    y = (torch.rand(4000, generator=g) < 0.3).long()
    x = torch.zeros(4000, 5)
    x[:, 0] = torch.where(y == 1, 0.8, -0.8)
    x[:, 1] = 0.2
    x[torch.arange(4000), 2 + y] = 1.0
    target = release_mean_embedding(
        gan.mean_embedding, x, y, 2, noise_multiplier=None, rng=np.random.default_rng(0)
    )
    gan.mean_embedding_target.copy_(target)
    opt = torch.optim.Adam(gan.generator.parameters(), lr=1e-2)

    def step() -> float:
        labels = gan.sample_labels(512)
        loss = gan.mean_embedding_loss(gan.generate(labels, hard=False), labels)
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss)

    first = step()
    for _ in range(300):
        last = step()
    assert last < 0.2 * first
    with torch.no_grad():
        labels = gan.sample_labels(2000)
        rows = gan.generate(labels, hard=True)
    a = rows[:, 0].double()
    # the class-conditional means of column a moved to the target's (0.8 apart)
    assert float(a[labels == 1].mean() - a[labels == 0].mean()) > 0.8
    assert _gan(0.0).mean_embedding_loss(rows, labels) is None


@pytest.mark.parametrize("weight", ["-1.0", "nan"])
def test_a_bad_weight_is_one_clear_error(tmp_path: Path, weight: str) -> None:
    cfg = compose_config(
        [*TINY, "method=multidisc_gan", f"method.mean_embedding_weight={weight}"], tmp_path
    )
    with pytest.raises(UserInputError, match="method.mean_embedding_weight"):
        train(cfg)


def test_a_resumed_run_makes_the_same_release_and_charges_it_once(tmp_path: Path) -> None:
    from dpshare import checkpoint
    from dpshare.api import fit
    from test_checkpoint import RUN, _crash

    overrides = [*RUN, "method.mean_embedding_weight=10.0", "method.mean_embedding_features=8"]
    crashed = _crash(tmp_path / "crashed", overrides)
    saved = torch.load(crashed / checkpoint.CHECKPOINT_FILE, weights_only=True)
    before = saved["state_dict"]["mean_embedding_target"]
    resumed = fit(*overrides, f"resume={crashed}", run_dir=tmp_path / "resumed")
    # the secret release seed reproduces the release exactly: not a second, different draw
    assert torch.equal(resumed.method.module.mean_embedding_target, before)
    ledger = json.loads((tmp_path / "resumed" / "privacy_ledger.json").read_text())
    assert [e["module"] for e in ledger["entries"]].count("mean_embedding") == 1
    assert resumed.metrics["privacy/epsilon_spent"] <= 3.0 + 1e-9
