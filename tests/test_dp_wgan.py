"""``method=dp_wgan`` (Tao 2020): images, DP wiring, weight clipping, refusals, the CNN
downstream model, and pixel scaling by public bounds. A tiny MNIST (400 train + 100 test images)
is written with ``write_idx``: real digits when ../shared/datasets/mnist is there, else
synthetic strokes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from conftest import SHARED_DATASETS, compose_config
from dpshare.data.base import split_records
from dpshare.data.datamodule import TabularDataModule
from dpshare.data.datasets import DATASETS
from dpshare.data.mnist import FILES, PIXEL_COLUMNS, read_mnist, write_idx
from dpshare.errors import UserInputError
from dpshare.evaluation.cnn import CNNClassifier
from dpshare.models.dp_wgan import DPWGAN, DPWGANModule, ImageCritic, ImageMLPCritic
from dpshare.privacy import PrivacyLedger
from dpshare.privacy.plan import plan_privacy
from dpshare.train import train, train_method

N_TRAIN, N_TEST = 400, 100


def _fake_digits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % 10
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, d in enumerate(labels):  # one bar per digit, position by class, plus noise
        images[i, 4 + 2 * d : 6 + 2 * d, 6:22] = 255
        images[i] = np.maximum(images[i], rng.integers(0, 40, (28, 28)).astype(np.uint8))
    return images, labels.astype(np.uint8)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small convolutions on a busy 2-core machine run ~30x faster on one thread than on two
    (measured: 0.04 s vs 1.3 s per critic + generator step); restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    shared = SHARED_DATASETS / "mnist"
    if shared.is_dir():
        a = read_mnist(shared, verify=False)
        arrays = {
            "train_images": a.train_images[:N_TRAIN],
            "train_labels": a.train_labels[:N_TRAIN],
            "test_images": a.test_images[:N_TEST],
            "test_labels": a.test_labels[:N_TEST],
        }
    else:
        rng = np.random.default_rng(0)
        tr, trl = _fake_digits(N_TRAIN, rng)
        te, tel = _fake_digits(N_TEST, rng)
        arrays = {"train_images": tr, "train_labels": trl, "test_images": te, "test_labels": tel}
    for role, name in FILES.items():
        write_idx(root / name, arrays[role])
    return root


def _tiny(root: Path) -> list[str]:
    return [
        "dataset=mnist",
        f"dataset.root={root}",
        "dataset.verify_checksums=false",
        "method=dp_wgan",
        "eval=mnist",
        "scale=smoke",
        "scale.max_epochs=1",
        "method.batch_size=50",
        "method.latent_dim=16",
        "method.generator_channels=8",
        "method.critic_channels=8",
        "method.n_critic=2",
        "trainer.log_every_n_steps=1",
    ]


DP = [
    "privacy=fixed",
    "privacy.target_epsilon=8.0",
    "privacy.target_delta=1e-4",
    "privacy.max_grad_norm=5",
    "privacy.noise_seed=0",
]


def _method(root: Path, overrides: list[str]) -> tuple[DPWGAN, PrivacyLedger, object]:
    cfg = compose_config([*_tiny(root), *overrides])
    data = DATASETS.get(cfg.dataset.name)(cfg.dataset, max_records=cfg.scale.max_records)
    splits = split_records(data, val_fraction=0.1, test_fraction=0.2, split_seed=0, stratify=True)
    dp = cfg.privacy.name != "none"
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
    return DPWGAN(cfg.method, dm, plan=plan), ledger, cfg


def _fit(method: DPWGAN, cfg) -> None:
    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=False,
        enable_checkpointing=False,
    )
    method.fit(trainer)


# ------------------------------------------------------------------------------ end to end


def test_pipeline_makes_28x28_images_and_scores_a_cnn(tmp_path: Path, mnist_root: Path) -> None:
    cfg = compose_config([*_tiny(mnist_root), "privacy=none"], tmp_path / "run")
    metrics, method = train_method(cfg)
    run = tmp_path / "run"
    for key in ("utility/tstr_accuracy", "utility/trtr_accuracy", "utility/cnn/tstr_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert "utility/logreg/trtr_accuracy" in metrics
    synthetic = pd.read_parquet(run / "synthetic.parquet")
    assert list(synthetic.columns) == [*PIXEL_COLUMNS, "label"]
    assert all(synthetic[c].dtype == np.uint8 for c in PIXEL_COLUMNS)
    assert len(synthetic) == metrics["data/n_synthetic"]
    images, labels = method.sample_images(20, seed=1, class_mix={3: 1.0})
    assert images.shape == (20, 1, 28, 28) and images.dtype == np.uint8
    assert (labels == 3).all()
    preview = np.load(run / "synthetic_images_preview.npy")
    assert preview.shape == (100, 1, 28, 28)
    ledger = json.loads((run / "privacy_ledger.json").read_text())
    critic = next(e for e in ledger["entries"] if e["module"] == "critic")
    assert critic["mechanism"] == "non_private"
    assert critic["parameters"]["critic_steps"] == metrics["train/discriminator_steps"]


def test_wgan_feedback_run_spends_at_most_the_target(tmp_path: Path, mnist_root: Path) -> None:
    cfg = compose_config(
        [
            *_tiny(mnist_root),
            "privacy=wgan_feedback",
            "privacy.target_epsilon=4.0",
            "privacy.target_delta=1e-4",
            "privacy.max_grad_norm=5",
            "privacy.wgan_feedback.clip_min=5",
            "privacy.wgan_feedback.clip_max=5",
            "privacy.monitor_every=2",
            "privacy.wgan_feedback.n_probe=32",
            "scale.max_epochs=2",
            "eval.models=[logistic_regression]",
            "eval.primary_model=logistic_regression",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["privacy/is_dp"] == 1
    assert 0 < metrics["privacy/epsilon_spent"] <= 4.0
    ledger = json.loads((tmp_path / "run" / "privacy_ledger.json").read_text())
    critic = next(e for e in ledger["entries"] if e["module"] == "critic")
    assert critic["mechanism"] == "dp_sgd"
    assert critic["steps"] == metrics["train/discriminator_steps"] == metrics["privacy/noisy_steps"]
    assert critic["parameters"]["max_grad_norm"] == 5.0
    assert ledger["controller_history"], "the feedback controller was never consulted"
    assert all(h["max_grad_norm"] == 5.0 for h in ledger["controller_history"])
    # pixels were scaled by their public bounds: no statistic released, nothing charged
    transformer = next(e for e in ledger["entries"] if e["module"] == "transformer")
    assert transformer["records"] == 0 and transformer["mechanism"] == "declared_public"
    assert "transformer" not in ledger["epsilon_by_mechanism"]
    assert "label_distribution" in ledger["epsilon_by_mechanism"]


# ------------------------------------------------------------------------------ DP wiring


@pytest.mark.parametrize("mode", ["bk", "ghost", "hooks", "functorch"])
def test_critic_lives_in_the_dp_optimizer_and_weights_stay_clipped(
    mnist_root: Path, mode: str
) -> None:
    method, ledger, cfg = _method(mnist_root, [*DP, f"privacy.grad_sample_mode={mode}"])
    module = method.module
    _fit(method, cfg)
    opt_g, opt_c = module.trainer.optimizers
    assert type(opt_c).__name__.startswith("DPOptimizer")
    assert opt_c.max_grad_norm == 5.0
    dp_ids = {id(p) for g in opt_c.param_groups for p in g["params"]}
    assert dp_ids == {id(p) for p in module.discriminator.parameters()}
    assert not dp_ids & {id(p) for p in module.generator.parameters()}
    steps = module.discriminator_updates
    assert steps > 0 and module.generator_updates == steps // 2
    entry = next(e for e in ledger.entries if e.module == "critic")
    assert entry.steps == steps == entry.parameters["noisy_steps"]
    assert ledger.epsilon_spent() <= cfg.privacy.target_epsilon + 1e-9
    assert all(p.abs().max() <= 0.01 + 1e-8 for p in module.discriminator.parameters())


def test_per_sample_gradients_are_clipped_to_c(mnist_root: Path) -> None:
    """Opacus's clip-and-accumulate (hooks mode) sums per-sample gradients each clipped to C:
    the sum's norm is at most (batch size) * C, although every raw per-sample norm exceeds C."""
    method, _, cfg = _method(
        mnist_root,
        [*DP, "privacy.grad_sample_mode=hooks", "privacy.max_grad_norm=1e-4"],
    )
    module = method.module
    _, opt_c = module.configure_optimizers()
    x, y = method.datamodule.x_train[:20], method.datamodule.y_train[:20]
    n = len(x) + 50
    labels = torch.cat([y, module.sample_labels(50)])
    with torch.no_grad():
        fake = module.generate(labels[20:])
    opt_c.zero_grad()
    scores = module.discriminator(torch.cat([x, fake]), labels)
    sign = torch.cat([-torch.ones(20), torch.ones(50)])
    (sign * scores).mean().backward()
    per_sample = torch.cat(
        [p.grad_sample.reshape(n, -1) for p in module.discriminator.parameters()], dim=1
    )
    assert per_sample.norm(dim=1).min() > 1e-4  # so C = 1e-4 really clips
    opt_c.clip_and_accumulate()  # Opacus's DP step without the noise and the ledger charge
    total = torch.cat([p.summed_grad.flatten() for p in module.discriminator.parameters()])
    assert float(total.norm()) <= n * 1e-4 * (1 + 1e-4)


def test_generator_step_reads_no_real_record_and_moves_no_critic(mnist_root: Path) -> None:
    method, ledger, cfg = _method(mnist_root, [*DP, "privacy.grad_sample_mode=hooks"])
    module = method.module
    _fit(method, cfg)
    opt_g, _ = module.trainer.optimizers
    before = [p.detach().clone() for p in module.discriminator.parameters()]
    spent = ledger.epsilon_spent()
    module.log = lambda *a, **k: None  # outside a Lightning loop
    module._generator_step(opt_g, 16, torch.device("cpu"))
    after = list(module.discriminator.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert ledger.epsilon_spent() == spent


# ------------------------------------------------------------------------------ refusals


def test_gradient_penalty_is_refused_under_dp(mnist_root: Path, tmp_path: Path) -> None:
    cfg = compose_config([*_tiny(mnist_root), *DP, "method.gradient_penalty=10"], tmp_path / "r")
    with pytest.raises(UserInputError, match="gradient_penalty.*outside per-sample clipping"):
        train(cfg)


def test_gradient_penalty_without_dp_is_a_finite_scalar() -> None:
    module = DPWGANModule(
        class_prior=[0.5, 0.5],
        latent_dim=4,
        embedding_dim=2,
        generator_channels=4,
        critic_channels=4,
        critic_norm="layer",
        optimizer="adam",
        generator_lr=1e-4,
        critic_lr=1e-4,
        betas=[0.5, 0.9],
        n_critic=1,
        weight_clip=None,
        gradient_penalty=10.0,
    )
    y = torch.tensor([0, 1, 1])
    gp = module._gradient_penalty(torch.rand(3, 784) * 2 - 1, y, module.generate(y), y)
    assert gp.ndim == 0 and torch.isfinite(gp) and gp >= 0


def test_bad_configs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="BatchNorm"):
        ImageCritic(n_classes=10, channels=4, norm="batch")
    cfg = compose_config(
        ["dataset=bank_sim", "method=dp_wgan", "scale=smoke", "scale.max_records=600"],
        tmp_path / "r",
    )
    with pytest.raises(UserInputError, match="dataset=mnist"):
        train(cfg)
    with pytest.raises(UserInputError, match="Lipschitz"):
        DPWGANModule(
            class_prior=[1.0],
            latent_dim=4,
            embedding_dim=2,
            generator_channels=4,
            critic_channels=4,
            critic_norm="none",
            optimizer="rmsprop",
            generator_lr=1e-4,
            critic_lr=1e-4,
            betas=[0.5, 0.9],
            n_critic=1,
            weight_clip=None,
            gradient_penalty=0.0,
        )


# ------------------------------------------------------- the cpu recipe (Bie et al. 2023)

RECIPE = [
    "method.critic=mlp",
    "method.critic_hidden=[32,16]",
    "method.loss=logistic",
    "method.weight_clip=null",
    "method.optimizer=adam",
    "method.generator_ema=0.9",
]


def _module(**kwargs) -> DPWGANModule:  # type: ignore[no-untyped-def]
    base = dict(
        class_prior=[0.5, 0.5],
        latent_dim=4,
        embedding_dim=2,
        generator_channels=4,
        critic_channels=4,
        critic_norm="none",
        optimizer="adam",
        generator_lr=1e-4,
        critic_lr=1e-4,
        betas=[0.5, 0.9],
        n_critic=1,
        weight_clip=None,
        gradient_penalty=0.0,
        loss="logistic",
    )
    return DPWGANModule(**{**base, **kwargs})


def test_mlp_critic_logistic_loss_and_ema_generator_under_dp(mnist_root: Path) -> None:
    method, ledger, cfg = _method(mnist_root, [*DP, *RECIPE])
    module = method.module
    assert isinstance(module.discriminator._module, ImageMLPCritic)
    assert module.loss_name == "logistic" and module.generator_ema is not None
    _fit(method, cfg)
    steps = module.discriminator_updates
    entry = next(e for e in ledger.entries if e.module == "critic")
    assert steps > 0 and entry.steps == steps
    assert ledger.epsilon_spent() <= cfg.privacy.target_epsilon + 1e-9
    # the released generator is the average, a different set of weights from the trained one
    released = method.state_dict()["generator"]
    live = module.generator.state_dict()
    ema = module.generator_ema.state_dict()
    assert all(torch.equal(released[k], ema[k]) for k in released)
    assert any(not torch.equal(released[k], live[k]) for k in released if "weight" in k)
    # sampling (eval mode) draws from the average; training (train mode) from the live one
    labels = torch.zeros(4, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    module.eval()
    averaged = module.generate(labels, generator=gen)
    expected = module.generator_ema(
        torch.randn(4, module.latent_dim, generator=gen.manual_seed(0)), labels
    )
    assert torch.equal(averaged, expected.flatten(1))
    module.train()


def test_ema_is_the_running_average_of_the_generator() -> None:
    module = _module(generator_ema=0.5)
    before = [p.detach().clone() for p in module.generator_ema.parameters()]
    with torch.no_grad():
        for p in module.generator.parameters():
            p.add_(1.0)
    module.update_ema()
    for old, ema, live in zip(
        before, module.generator_ema.parameters(), module.generator.parameters(), strict=True
    ):
        torch.testing.assert_close(ema, 0.5 * old + 0.5 * live)


def test_logistic_loss_is_the_non_saturating_gan_loss() -> None:
    """Per record, softplus(-D) for a real image and softplus(D) for a generated one: the
    binary cross-entropy with real = 1, so the critic's loss on its own scores is checked
    against torch's implementation."""
    scores = torch.tensor([2.0, -1.0, 0.5, -3.0], dtype=torch.float64)
    sign = torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64)
    ours = torch.nn.functional.softplus(sign * scores)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        scores, (sign < 0).to(torch.float64), reduction="none"
    )
    torch.testing.assert_close(ours, bce, rtol=1e-12, atol=0)


def test_recipe_options_are_validated() -> None:
    with pytest.raises(UserInputError, match="method.loss"):
        _module(loss="hinge")
    with pytest.raises(UserInputError, match="method.critic="):
        _module(critic="resnet")
    with pytest.raises(UserInputError, match="critic_hidden"):
        _module(critic="mlp", critic_hidden=[])
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(UserInputError, match="generator_ema"):
            _module(generator_ema=bad)
    # the logistic loss needs no Lipschitz constraint, the Wasserstein one does
    assert _module(loss="logistic").weight_clip is None
    with pytest.raises(UserInputError, match="Lipschitz"):
        _module(loss="wasserstein")


# ------------------------------------------------------------------------- public scaling


def test_pixels_scaled_by_public_bounds_with_no_release(mnist_root: Path) -> None:
    method, ledger, _ = _method(mnist_root, DP)
    dm = method.datamodule
    t = dm.transformer
    assert t.release is None and t.accesses == [] and t.differentially_private
    assert {d["fit"] for d in t.describe()} == {"public_bounds"}
    pixels = dm.train_frame[list(PIXEL_COLUMNS)].to_numpy(dtype=np.float32)
    np.testing.assert_allclose(dm.x_train.numpy(), pixels / 127.5 - 1.0, atol=1e-6)
    decoded = dm.decode(dm.x_train.numpy(), dm.y_train.numpy())
    pd.testing.assert_frame_equal(
        decoded.reset_index(drop=True), dm.train_frame.reset_index(drop=True)
    )
    modules = {e.module: e for e in ledger.entries}
    assert modules["transformer"].records == 0
    assert modules["label_distribution"].mechanism == "gaussian"
    assert "transformer" not in ledger.epsilon_breakdown()


# ----------------------------------------------------------------------------- CNN model


def test_cnn_selects_epochs_on_its_own_training_table_and_is_deterministic(
    mnist_root: Path,
) -> None:
    a = read_mnist(mnist_root, verify=False)
    X = pd.DataFrame(a.train_images.reshape(len(a.train_images), -1), columns=PIXEL_COLUMNS)
    y = a.train_labels
    # fit sees (X, y) and nothing else: there is no argument through which a test set could come
    one = CNNClassifier(random_state=3, max_epochs=4, patience=1).fit(X, y)
    two = CNNClassifier(random_state=3, max_epochs=4, patience=1).fit(X, y)
    test = a.test_images.reshape(len(a.test_images), -1)
    np.testing.assert_array_equal(one.predict_proba(test), two.predict_proba(test))
    assert 1 <= one.best_epoch_ <= one.n_epochs_ <= 4
    assert list(one.classes_) == sorted(set(y.tolist()))
    assert one.predict_proba(test).shape == (len(test), len(one.classes_))
    with pytest.raises(UserInputError, match="square images"):
        CNNClassifier().fit(np.zeros((20, 10)), np.arange(20) % 2)


@pytest.mark.skipif(not (SHARED_DATASETS / "mnist").is_dir(), reason="shared MNIST absent")
@pytest.mark.slow
def test_smoke_scale_dp_wgan_feedback_end_to_end(tmp_path: Path) -> None:
    cfg = compose_config(
        [
            "dataset=mnist",
            f"dataset.root={SHARED_DATASETS / 'mnist'}",
            "method=dp_wgan",
            "eval=mnist",
            "scale=smoke",
            "scale.max_records=3000",
            "scale.max_epochs=2",
            "privacy=wgan_feedback",
            "privacy.target_epsilon=2.0",
            "privacy.wgan_feedback.clip_min=5",
            "privacy.wgan_feedback.clip_max=5",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    assert metrics["privacy/epsilon_spent"] <= 2.0
    assert 0.0 <= metrics["utility/tstr_accuracy"] <= 1.0
