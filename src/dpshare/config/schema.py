"""Dataclass schemas for the Hydra config groups.

Each YAML option in ``conf/<group>/`` starts its defaults list with
``/schema/<group>/<name>@_here_``,
so OmegaConf validates it against the dataclass below: a misspelt key or a value of the wrong type
fails at composition time with a message naming the key, not mid-run.

Schemas are stored under ``schema/<group>`` (not ``<group>``) so that they never show up as
selectable options of the group itself. Registration happens in :func:`register_configs`, called by
the entry points before Hydra composes, never at import time.

Config keys equal the constructor/function arguments they feed (STYLE.md, rule 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

# --------------------------------------------------------------------------------------- dataset


@dataclass
class DatasetConfig:
    """Fields every dataset shares: its registry name and how the real records are split.

    The test split is held out for evaluation only; no generator, controller or model-selection
    step ever sees it.
    """

    name: str = MISSING
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    stratify: bool = True
    reference_fraction: float = 0.0  # population split for attacks; never seen by generators


@dataclass
class BankSimConfig(DatasetConfig):
    """The embedded cross-bank transaction simulator (docs/bank_sim.md)."""

    name: str = "bank_sim"
    n_transactions: int = 120_000
    n_banks: int = 5
    high_risk_rate: float = 0.03
    label_noise: float = 0.02
    days: int = 180
    start: str = "2025-01-01"
    seed: int = 0


# ---------------------------------------------------------------------------------------- method


@dataclass
class StandardGANConfig:
    """A label-conditioned GAN with one discriminator (Goodfellow et al. 2014; Mirza & Osindero
    2014), mixed-type outputs as in CTGAN (Xu et al. 2019): the Deng 2026 "standard GAN"
    baseline."""

    name: str = "standard_gan"
    latent_dim: int = 64
    generator_dims: list[int] = field(default_factory=lambda: [256, 256])
    discriminator_dims: list[int] = field(default_factory=lambda: [256, 256])
    dropout: float = 0.25
    batch_size: int = 500
    generator_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    weight_decay: float = 1e-6
    discriminator_steps: int = 1
    gumbel_tau: float = 0.2
    condition_on_label: bool = True
    continuous_mode: str = "standard"
    # public scale of bounded columns in the DP transformer fit: linear | log | auto (log1p for
    # columns declared [0, upper >= 1000]); a rule on dataset.public_domain, no privacy cost.
    # Chosen per method on bank_sim's validation split (docs/bank_sim.md): linear here
    continuous_scale: str = "linear"
    # decay of an exponential moving average of the generator's weights, sampled from and
    # released (Bie et al. 2023; post-processing, no privacy cost); None: the trained weights.
    # Chosen per method on bank_sim's validation split (docs/bank_sim.md): 0.99 here
    generator_ema: float | None = 0.99
    # > 0: the generator also matches ONE Gaussian release of the real rows' label-conditional
    # mean embedding (DP-MERF, Harder et al. 2021; charged to the ledger, planned before sigma
    # is calibrated; dpshare.models.mean_embedding). 0: off
    mean_embedding_weight: float = 0.0
    mean_embedding_features: int = 256  # random Fourier features of that embedding
    mean_embedding_bandwidth: float = 1.0  # Gaussian kernel bandwidth on the encoded rows
    sample_size: int | None = None  # synthetic rows; None = size of the real train split
    class_mix: Any = None  # class value -> share of the released rows; None = released prior
    # more tables released from the SAME trained generator, each with its own record under
    # <run_dir>/variants/: e.g. [{class_mix: {1: 0.3, 0: 0.7}}] (post-processing: no privacy
    # cost; docs/multidisc_gan.md "Release variants")
    release_variants: list[Any] = field(default_factory=list)


@dataclass
class DPLRConfig:
    """A classifier trained with DP-SGD whose released artifact is the model: the Deng 2026
    "DP logistic regression" baseline (``hidden_dims: []``; a list gives an MLP)."""

    name: str = "dp_lr"
    hidden_dims: list[int] = field(default_factory=list)
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 500
    continuous_mode: str = "standard"
    continuous_scale: str = "auto"  # as in StandardGANConfig (the classifier's features)
    sample_size: int | None = None  # unused: the artifact is a model


@dataclass
class FedAvgConfig(DPLRConfig):
    """Federated averaging (McMahan et al. 2017) of the ``dp_lr`` classifier across the
    dataset's institutions; optional DP-SGD at the clients (sample-level)."""

    name: str = "fedavg"
    rounds: int = 20
    local_epochs: int = 1
    client_fraction: float = 1.0
    weighting: str = "size"  # size | uniform
    institution_column: str | None = None  # None: the dataset's institution column
    # data without institutions (e.g. diabetes130): K clients of a seeded random partition
    simulated_clients: int | None = None


@dataclass
class DPWGANConfig:
    """Tao 2020's DP-WGAN on MNIST (docs/dp_wgan.md): one class-conditional convolutional
    generator, a convolutional WGAN critic (no BatchNorm) trained with DP-SGD, weight clipping.
    Tao's clipping bound C = 5 is ``privacy.max_grad_norm=5`` (a privacy key, not set here)."""

    name: str = "dp_wgan"
    latent_dim: int = 100
    embedding_dim: int = 10  # generator's label embedding
    generator_channels: int = 32  # c: dense -> 2c x 7 x 7 -> c x 14 x 14 -> 1 x 28 x 28
    critic: str = "conv"  # conv | mlp (a cheaper critic: docs/dp_wgan.md)
    critic_channels: int = 32  # conv: c: conv -> c x 14 x 14 -> 2c x 7 x 7
    critic_hidden: list[int] = field(default_factory=lambda: [512, 256])  # mlp: hidden widths
    critic_norm: str = "group"  # conv: group | layer | none (never BatchNorm)
    loss: str = "wasserstein"  # wasserstein (Tao 2020) | logistic (non-saturating, Bie 2023)
    optimizer: str = "rmsprop"  # rmsprop | adam | sgd (both networks)
    generator_lr: float = 5e-5
    critic_lr: float = 5e-5
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])  # adam only
    batch_size: int = 64  # expected real images per critic step (Poisson under DP)
    n_critic: int = 5  # critic steps per generator step
    weight_clip: float | None = 0.01  # critic parameters clamped to +-weight_clip
    generator_ema: float | None = None  # decay of an EMA of the generator weights, sampled from
    gradient_penalty: float = 0.0  # WGAN-GP weight; non-private runs only
    continuous_mode: str = "standard"  # unused: pixels are scaled by their public bounds
    sample_size: int | None = None  # synthetic images; None = size of the real train split
    class_mix: Any = None  # digit -> share of the released images; None = released prior


@dataclass
class MultiDiscGANConfig(StandardGANConfig):
    """The Deng 2026 framework (docs/multidisc_gan.md): conditional generator, discriminator
    cluster with a shared trunk (``discriminator_dims``) and weighted fusion, controllable
    generation."""

    name: str = "multidisc_gan"
    continuous_scale: str = "log"  # chosen on bank_sim's validation split (docs/bank_sim.md)
    generator_ema: float | None = 0.999  # chosen on bank_sim's validation split, as above
    mean_embedding_weight: float = 100.0  # chosen on bank_sim's validation split, as above
    heads: Any = None  # list of plain|statistical|semantic|temporal; None = automatic
    shared_trunk: bool = True
    fusion: str = "fixed"  # fixed | loss_scale
    fusion_weights: Any = None  # head -> weight (default 1 each); checked by the module
    fusion_ema: float = 0.9
    head_hidden: int = 128
    head_lr: Any = None  # trunk|head -> lr; checked by the module
    rff_features: int = 128
    rff_bandwidth: float = 1.0
    temporal_kernel: int = 5
    temporal_channels: int = 32
    sequence_hidden: int = 64
    sequence_noise_dim: int = 8
    condition_columns: list[str] = field(default_factory=list)
    condition_loss_weight: float = 1.0
    conditions: Any = None  # column -> value fixed in every released row
    refine: dict[str, Any] = field(
        default_factory=lambda: {
            "filter_conditions": True,
            "match_marginals": False,
            "oversample": 3.0,
        }
    )
    log_epsilon_every: int = 50


@dataclass
class PeerConfig:
    """A DP synthesizer of smartnoise-synth run under ITS OWN accounting on the run's
    ``privacy.target_epsilon`` / ``target_delta`` (docs/peers.md; the ``peers`` extra). Keys
    other than these shared ones are the library's own arguments, passed as they are."""

    name: str = MISSING
    # public scale of a bounded column before binning / min-max scaling: auto (log1p for columns
    # declared [0, upper >= 1000]) | linear | log; bounds come from dataset.public_domain
    continuous_scale: str = "auto"
    batch_size: int = 500  # CTGAN types: the library's batch; MST/AIM: unused (DataModule only)
    continuous_mode: str = "standard"  # unused: the library encodes the table itself
    sample_size: int | None = None  # synthetic rows; None = size of the real train split


@dataclass
class MSTConfig(PeerConfig):
    """smartnoise-synth's MST (McKenna et al. 2021) on private-pgm."""

    name: str = "mst"
    bins: int = 16  # equal-width bins of each bounded column on its public (scaled) range
    batch_size: int = 1  # unused: MST reads the table at once (the DataModule's batch only)


@dataclass
class AIMConfig(PeerConfig):
    """smartnoise-synth's AIM (McKenna et al. 2022) on private-pgm."""

    name: str = "aim"
    bins: int = 32
    batch_size: int = 1  # unused: AIM reads the table at once (the DataModule's batch only)
    degree: int = 2  # marginals of this many columns in the workload
    max_model_size: float = 80.0  # MB of the graphical model
    max_cells: int = 10000  # largest marginal in the workload
    rounds: int | None = None  # None: rounds_per_column x columns, else the library's 16 x
    rounds_per_column: float | None = None  # used when rounds is None; None: the library's 16


@dataclass
class CTGANPeerConfig(PeerConfig):
    """Arguments the two CTGAN-type synthesizers of smartnoise-synth share (library names)."""

    embedding_dim: int = 128
    generator_dim: list[int] = field(default_factory=lambda: [256, 256])
    discriminator_dim: list[int] = field(default_factory=lambda: [256, 256])
    generator_lr: float = 2e-4
    generator_decay: float = 1e-6
    discriminator_lr: float = 2e-4
    discriminator_decay: float = 1e-6
    discriminator_steps: int = 1
    pac: int = 1
    loss: str = "cross_entropy"
    cuda: bool = False


@dataclass
class DPCTGANConfig(CTGANPeerConfig):
    """smartnoise-synth's DP-CTGAN: DP-SGD on the discriminator (Opacus 0.14)."""

    name: str = "dpctgan"
    epochs: int = 300
    sigma: float | None = None  # None: calibrated so that every epoch fits the target
    max_per_sample_grad_norm: float = 1.0


@dataclass
class PATECTGANConfig(CTGANPeerConfig):
    """smartnoise-synth's PATE-CTGAN: a student discriminator taught by PATE teachers."""

    name: str = "patectgan"
    teacher_iters: int = 5
    student_iters: int = 5
    sample_per_teacher: int = 1000
    noise_multiplier: float = 1e-3  # the library's Laplace parameter (noise scale 1 / this)
    moments_order: int = 100
    regularization: str | None = None


# --------------------------------------------------------------------------------------- privacy


@dataclass
class PrivacyConfig:
    """``none``: no differential privacy; every access to real records is still listed in the
    run's privacy ledger, and the run is marked non-private (epsilon = infinity)."""

    name: str = "none"


@dataclass
class DPConfig(PrivacyConfig):
    """DP-SGD on every module that reads real records (docs/privacy.md).

    Budget: ``target_epsilon`` at ``target_delta`` over the WHOLE ledger (transformer release,
    DP-SGD steps, feedback signals). ``noise_multiplier`` given: that sigma is used and training
    stops before the budget would be exceeded; ``null``: sigma is calibrated from the target and
    the actual number of planned noisy steps. Neighbouring datasets differ by one record
    (add/remove); a transaction, not an account, is the protected unit.
    """

    name: str = "fixed"
    target_epsilon: float | None = None  # None: no budget enforced (needs noise_multiplier)
    target_delta: float = 1e-5
    noise_multiplier: float | None = None  # sigma; None = calibrate from target_epsilon
    max_grad_norm: float = 1.0  # per-sample clipping bound C
    accountant: str = "rdp"  # rdp | prv
    poisson_sampling: bool = True  # False: fixed-size shuffled batches; epsilon is approximate
    # bk (book-keeping: one backward, the fastest) | ghost (Opacus, two backwards) | hooks |
    # functorch (Opacus per-sample gradients); benchmarks/README.md has the timings
    grad_sample_mode: str = "bk"
    # The transformer's statistics and the class frequencies: one Gaussian release (`dp`), or a
    # raw fit that makes the run non-private (`non_private`, for ablations only).
    transformer_fit: str = "dp"
    release_noise_multiplier: float = 20.0
    # None: every Gaussian release (transformer statistics, class counts, mean embedding,
    # controller moments) runs at release_noise_multiplier whatever the budget. A share s in
    # (0, 1): their noise multiplier is calibrated so that these releases alone would spend
    # s * target_epsilon at target_delta (docs/privacy.md "Release noise"); DP-SGD gets the rest.
    release_budget_share: float | None = None
    # Monitored signals on real data: `dp` (noisy, charged to the ledger) or
    # `public_validation` (computed on the validation split, which the config then declares
    # public: its records get no protection; the run record says so).
    signal_source: str = "dp"
    signal_noise_multiplier: float = 5.0
    signal_sample_rate: float = 0.05
    monitor_every: int = 50  # optimizer steps between controller updates
    # How long DP-SGD trains: `epochs` (trainer.max_epochs) or `budget` (privacy=fixed with
    # noise_multiplier AND target_epsilon given: as many noisy steps as the accountant allows,
    # Tao 2020's setting), optionally capped at `budget_max_epochs` (the record says when the cap
    # stopped training before the budget was spent).
    training_length: str = "epochs"
    budget_max_epochs: int | None = None
    # training_length=budget only: more (target_epsilon, target_delta) points released from the
    # SAME noisy trajectory, each the model after the steps its own budget allows, with its own
    # run record and ledger (docs/privacy.md "Budget snapshots"); e.g. [{target_epsilon: 0.5},
    # {target_epsilon: 2, target_delta: 1.0e-4}] (a missing delta is the run's target_delta)
    snapshots: list[Any] = field(default_factory=list)
    # Seed of every DP noise draw (DP-SGD, releases, signals). None (default): fresh OS entropy,
    # so the noise cannot be regenerated from the saved config; set it only for tests.
    noise_seed: int | None = None


@dataclass
class PIDSettings:
    """Deng 2026 Sec. 3.3/3.5: sigma follows a PID controller on a window of quality signals."""

    sigma_min: float | None = None  # None = calibrated so that every planned step fits the budget
    sigma_max: float | None = None  # None = 2 * sigma_min
    kp: float = 1.0
    ki: float = 0.1
    kd: float = 0.05
    window: int = 5
    setpoint: float = 0.5
    max_step_change: float = 0.25
    integral_limit: float = 5.0
    fd_scale: float = 100.0  # squared encoded units; quality = exp(-fd / fd_scale)
    signal_weights: dict[str, float] = field(
        default_factory=lambda: {"disc_accuracy": 1.0, "frechet_distance": 1.0}
    )


@dataclass
class PIDConfig(DPConfig):
    name: str = "pid"
    pid: PIDSettings = field(default_factory=PIDSettings)


@dataclass
class FeedbackSettings:
    """Tao 2020 Sec. 2.4: compare successive generated results G1, G2 and retune sigma and C."""

    sigma_min: float | None = None  # None = calibrated so that every planned step fits the budget
    sigma_max: float | None = None  # None = 2 * sigma_min
    clip_min: float = 0.5
    clip_max: float = 1.0
    similarity_threshold: float = 0.9
    sigma_factor: float = 0.9
    clip_factor: float = 0.95
    accuracy_weight: float = 0.0
    patience: int = 2
    n_probe: int = 256  # fixed latent vectors used to compare successive generated results


@dataclass
class WGANFeedbackConfig(DPConfig):
    name: str = "wgan_feedback"
    wgan_feedback: FeedbackSettings = field(default_factory=FeedbackSettings)


# ------------------------------------------------------------------------------------------ eval


@dataclass
class EvalConfig:
    """Train-on-synthetic / train-on-real utility on the held-out real test split."""

    name: str = "default"
    models: list[str] = field(
        default_factory=lambda: ["logistic_regression", "hist_gradient_boosting"]
    )
    primary_model: str = "hist_gradient_boosting"
    trtr: bool = True
    max_train_rows: int | None = None  # subsample TSTR/TRTR training tables (None = all rows)
    seed: int = 0
    # test: score on the real test split (and choose the minority threshold on validation);
    # validation: score everything on the validation split, for tuning sweeps (the test split
    # is then never read, so choices made from these runs cannot leak it)
    score_on: str = "test"
    # keep TRTR scores in $DPSHARE_CACHE/trtr (keyed by the real splits and these settings), so
    # a sweep fits the real-data reference once, not at every point
    trtr_cache: bool = True
    # fidelity (dpshare.evaluation.fidelity): registered names; real side = the real test split
    fidelity: list[str] = field(
        default_factory=lambda: [
            "fd_raw",
            "fd_encoder",
            "prdc",
            "marginals",
            "correlations",
            "detection",
        ]
    )
    fidelity_max_rows: int | None = 5000  # rows of each table the fidelity metrics compare
    prdc_k: int = 5  # k of the k-NN balls in precision/recall/density/coverage
    feature_net: str | None = None  # "lenet": FD and prdc in a LeNet trained on real MNIST
    # privacy attacks (dpshare.evaluation.attacks): registered names; an attack that needs a
    # synthetic table is skipped for a method that releases a model, and vice versa the model
    # attacks target the TSTR model (``attack_model`` trained on the synthetic table)
    attacks: list[str] = field(
        default_factory=lambda: [
            "mia_dcr",
            "mia_domias",
            "mia_shadow",
            "copies",
            "aia",
            "mia_loss",
            "mia_lira",
            "inversion",
        ]
    )
    attack_targets: int = 1000  # members drawn from train = non-members drawn from test
    attack_model: str = "hist_gradient_boosting"  # the TSTR model the model attacks query
    attack_params: dict[str, Any] = field(default_factory=dict)  # {attack name: {param: value}}


# --------------------------------------------------------------------------------------- trainer


@dataclass
class TrainerConfig:
    """Arguments of ``pytorch_lightning.Trainer`` (same names)."""

    accelerator: str = "cpu"
    devices: Any = 1
    # "auto" = one process; several devices: "ddp_find_unused_parameters_true" (trainer=ddp,
    # non-private runs only; docs/launchers.md)
    strategy: str = "auto"
    max_epochs: int = 1
    precision: str = "32-true"
    deterministic: bool = True
    log_every_n_steps: int = 10
    enable_progress_bar: bool = False
    enable_model_summary: bool = False


# ---------------------------------------------------------------------------------------- logger


@dataclass
class LoggerConfig:
    """CSV logs always go to ``<run_dir>/csv``; W&B is added when ``wandb`` is true."""

    name: str = "csv"
    csv: bool = True
    wandb: bool = False
    wandb_project: str = "dpshare"
    wandb_entity: str | None = None
    # "offline" unless the user sets WANDB_MODE (or passes logger.wandb_mode=online)
    wandb_mode: str | None = None
    wandb_group: str | None = None
    wandb_tags: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- scale


@dataclass
class ScaleConfig:
    """How big a run is. ``smoke``: minutes on a 2-core CPU (CI, first contact; plumbing, not
    claims). ``cpu``: full data sets, training that spends the target epsilon, 3 seeds, each
    paper figure in <= 45 min on 2 cores (docs/scales.md). ``paper``: the papers' sizes (a GPU
    for MNIST)."""

    name: str = MISSING
    max_records: int | None = None  # cap on real records drawn from the dataset (None = all)
    max_epochs: int = MISSING
    eval_max_train_rows: int | None = None
    seeds: str = "0"  # the seeds an experiment's sweep runs per point (Hydra sweep syntax)


# ------------------------------------------------------------------------------------------ root


@dataclass
class RootConfig:
    """Top-level keys; the groups are validated by their own schemas."""

    dataset: Any = MISSING
    method: Any = MISSING
    privacy: Any = MISSING
    eval: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    scale: Any = MISSING
    experiment_name: str = "default"
    tags: list[str] = field(default_factory=list)
    seed: int = 0
    run_dir: str = MISSING
    output_root: str = "outputs"
    save_synthetic_csv: bool = True
    # torch intra-op threads; None: torch's default, shared between parallel multirun jobs
    torch_threads: int | None = None
    # multirun | always | never: reuse a complete record of the same resolved config
    skip_completed: str = "multirun"
    # record archives whose complete record of the same resolved config (any code version) is
    # reused as well (dpshare.reporting.archive; make reproduce passes results/records)
    reuse_records: list[str] = field(default_factory=list)
    # epochs between checkpoints (0: none); resume=<run dir> continues that run (dpshare.checkpoint)
    checkpoint_every_n_epochs: int = 1
    resume: str | None = None


_GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"bank_sim": BankSimConfig},
    "method": {
        "standard_gan": StandardGANConfig,
        "multidisc_gan": MultiDiscGANConfig,
        "dp_lr": DPLRConfig,
        "fedavg": FedAvgConfig,
        "dp_wgan": DPWGANConfig,
        "mst": MSTConfig,
        "aim": AIMConfig,
        "dpctgan": DPCTGANConfig,
        "patectgan": PATECTGANConfig,
    },
    "privacy": {
        "none": PrivacyConfig,
        "fixed": DPConfig,
        "pid": PIDConfig,
        "wgan_feedback": WGANFeedbackConfig,
    },
    "eval": {"default": EvalConfig},
    "trainer": {"default": TrainerConfig},
    "logger": {"default": LoggerConfig},
    "scale": {"default": ScaleConfig},
}


def _dataset_schemas() -> dict[str, type]:
    """The real-data loaders keep their schemas next to their code; they import
    :class:`DatasetConfig` from here, so they are imported lazily (no import cycle)."""
    from dpshare.data.mimic3 import MIMIC3Config
    from dpshare.data.mnist import MNISTConfig
    from dpshare.data.table import BankMarketingConfig, Diabetes130Config, TableConfig

    return {
        "mimic3": MIMIC3Config,
        "mnist": MNISTConfig,
        "table": TableConfig,
        "bank_marketing": BankMarketingConfig,
        "diabetes130": Diabetes130Config,
    }


def group_schemas() -> dict[str, dict[str, type]]:
    """Every config group's options and their schema dataclasses."""
    groups = {group: dict(options) for group, options in _GROUP_SCHEMAS.items()}
    groups["dataset"].update(_dataset_schemas())
    return groups


SCALES = ("smoke", "cpu", "paper")
_MISSING_CPU = object()


def by_scale(scale: str, smoke: Any, paper: Any, cpu: Any = _MISSING_CPU) -> Any:
    """``${by_scale:${scale.name},SMOKE,PAPER,CPU}``: an experiment's value at each scale, e.g.
    a sweep grid that is cut at smoke scale (the experiment file states each). ``CPU`` (the
    ``scale=cpu`` value) comes last so that two-valued files keep their meaning; a file that
    omits it cannot run at ``scale=cpu`` (a clear error, never a silent fallback)."""
    if scale not in SCALES:
        raise ValueError(f"by_scale: unknown scale {scale!r} ({' | '.join(SCALES)})")
    if scale == "cpu":
        if cpu is _MISSING_CPU:
            raise ValueError(
                "by_scale: this value states smoke and paper only; add its scale=cpu value as a "
                "third argument: ${by_scale:${scale.name},SMOKE,PAPER,CPU}"
            )
        return cpu
    return smoke if scale == "smoke" else paper


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore and register the ``by_scale`` resolver
    (idempotent)."""
    if not OmegaConf.has_resolver("by_scale"):
        OmegaConf.register_new_resolver("by_scale", by_scale)
    cs = ConfigStore.instance()
    cs.store(name="root_schema", node=RootConfig)
    for group, options in group_schemas().items():
        for name, node in options.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
