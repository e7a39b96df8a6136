"""``method=fedavg``: federated averaging (McMahan et al. 2017) across the dataset's
institutions (banks in bank_sim, first care units in MIMIC-III, the ``institution_column`` of a
user table); the released artifact is the global model, the same classifier as ``dp_lr``
(:func:`~dpshare.models.classifier.classifier_network`), so the two baselines differ only in
federation.

Each round a seeded random ``client_fraction`` of the clients (at least one) starts from the
global model, runs ``local_epochs`` epochs of local SGD on its own records, and the server
averages the returned weights, weighted by client size (``weighting: size``) or uniformly.

Written by hand (about 100 lines), not with Flower: Flower downgrades protobuf/packaging/rich in
this environment and its simulation needs Ray (+350 MB); the algorithm is a loop and a weighted
mean. The local update is a plain loop over the LightningModule's network: a Lightning Trainer
per client per round would cost more in setup than the update itself.

DP (``privacy=fixed``): DP-SGD at the clients with **sample-level** privacy: a neighbouring
dataset adds or removes one record of one institution. Every client Poisson-samples its own
records at the SAME rate ``q = method.batch_size / n_train`` and takes
``local_epochs * int(1/q)`` clipped, noised steps per round (Opacus GradSampleModule +
DPOptimizer, noise ``sigma * C`` on the sum, averaged over the expected local batch ``q * n_k``).
A record lives in one client only, so only its client's steps touch it (parallel composition
across clients); all clients share (q, sigma, steps), so each round costs exactly one client's
local steps, and rounds compose sequentially: the ledger entry ``fedavg_clients`` is charged
``local_epochs * int(1/q)`` steps per round - exact with full participation, an upper bound
with ``client_fraction < 1`` (a client that sits out a round is charged anyway). Training stops
before a round would pass the target epsilon. Client sizes are treated as public, like the size
of the train split. The averaging and the released model are post-processing.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch.nn import functional as F

from dpshare.data.datamodule import TabularDataModule
from dpshare.errors import UserInputError
from dpshare.models.base import ReleasedModelMethod
from dpshare.models.checks import check_finite_weights, check_trained
from dpshare.models.classifier import (
    ClassifierModule,
    _encode,
    make_base_optimizer,
)
from dpshare.models.dp import noise_generator
from dpshare.models.registry import METHODS
from dpshare.privacy.plan import PrivacyPlan

log = logging.getLogger(__name__)

WEIGHTINGS = ("size", "uniform")


def resolve_institution_column(
    datamodule: TabularDataModule, configured: str | None, *, simulated: bool = False
) -> str | None:
    """``method.institution_column``, else the dataset's declared institution column, else a
    column named ``institution``; None when there is none and ``simulated`` clients stand in."""
    frame = datamodule.train_frame
    column = configured or datamodule.data.institution_column
    if column is None and "institution" in frame.columns:
        column = "institution"
    if column is None and simulated:
        return None
    if column is None:
        raise UserInputError(
            f"dataset {datamodule.data.name!r} declares no institution column to federate over; "
            "set method.institution_column=<column> (or dataset.institution_column for a "
            "table), or method.simulated_clients=K to split the records at random into K "
            "simulated institutions"
        )
    if column not in frame.columns:
        raise UserInputError(
            f"method.institution_column={column!r} is not a column of the train split; columns: "
            f"{list(frame.columns)[:20]}"
        )
    return str(column)


@METHODS.register("fedavg")
class FedAvg(ReleasedModelMethod):
    """FedAvg over institutions; releases the global classifier."""

    name = "fedavg"
    ledger_module = "fedavg_clients"

    def __init__(
        self, cfg: Any, datamodule: TabularDataModule, *, plan: PrivacyPlan | None = None
    ) -> None:
        if plan is not None and plan.name != "fixed":
            raise UserInputError(
                f"method=fedavg trains with privacy=none or privacy=fixed; privacy={plan.name} "
                "steers a GAN's noise from GAN signals"
            )
        for key, low in (("rounds", 1), ("local_epochs", 1)):
            if int(cfg[key]) < low:
                raise UserInputError(f"method.{key} must be >= {low}, got {cfg[key]}")
        if not 0 < float(cfg.client_fraction) <= 1:
            raise UserInputError(
                f"method.client_fraction must be in (0, 1], got {cfg.client_fraction}"
            )
        if cfg.weighting not in WEIGHTINGS:
            raise UserInputError(
                f"method.weighting must be one of {WEIGHTINGS}, got {cfg.weighting!r}"
            )
        self.cfg = cfg
        self.datamodule = datamodule
        self.plan = plan
        datamodule.needs_class_prior = False
        datamodule.setup()
        self.classes = datamodule.classes
        simulated = cfg.get("simulated_clients")
        if simulated is not None and int(simulated) < 2:
            raise UserInputError(f"method.simulated_clients must be >= 2, got {simulated}")
        self.column = resolve_institution_column(
            datamodule, cfg.institution_column, simulated=simulated is not None
        )
        if self.column is None:
            # no institutions in the data: K equal-size clients of a seeded random permutation
            # of the train split. The partition reads no record (only their number, public like
            # the split's size), so disjoint clients keep the parallel composition below.
            order = np.random.default_rng(int(datamodule.seed)).permutation(datamodule.n_train)
            self.client_index = [np.sort(i) for i in np.array_split(order, int(simulated))]
            self.client_names = [f"simulated_{k}" for k in range(int(simulated))]
        else:
            values = datamodule.train_frame[self.column].astype(str).to_numpy()
            self.client_names = sorted(set(values))
            self.client_index = [np.flatnonzero(values == name) for name in self.client_names]
        log.info(
            "fedavg: %d clients on %s (sizes %s)",
            len(self.client_names),
            repr(self.column) if self.column else "a random partition (method.simulated_clients)",
            [len(i) for i in self.client_index],
        )
        self.module = ClassifierModule(
            in_dim=datamodule.transformer.output_dim,
            n_classes=len(self.classes),
            hidden_dims=list(cfg.hidden_dims),
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        self.rounds_done = 0
        self.entry = None
        if plan is not None:
            self.sample_rate = float(plan.sample_rate)
            # as the plan counts them: Opacus's Poisson sampler yields int(1 / q) batches/epoch
            self.steps_per_round = int(cfg.local_epochs) * max(1, int(1.0 / self.sample_rate))
            self.entry = datamodule.ledger.open_dp_sgd(
                module=self.ledger_module,
                purpose=(
                    "DP-SGD at every client (sample-level): Poisson rate q at each client, "
                    "per-sample clipping, Gaussian noise; clients hold disjoint records, so a "
                    "round costs one client's local steps (parallel composition)"
                ),
                records=datamodule.n_train,
                sample_rate=self.sample_rate,
                poisson_sampling=True,
                max_grad_norm=plan.max_grad_norm,
                steps_per_round=self.steps_per_round,
                clients=len(self.client_names),
                client_fraction=float(cfg.client_fraction),
                noise_calibrated=plan.calibrated,
            )
            self.noise = noise_generator(plan.noise_seed)
            if plan.grad_sample_mode in ("bk", "ghost"):
                log.info("fedavg clients compute per-sample gradients with hooks (linear model)")

    # ------------------------------------------------------------------------------ training
    def fit(self, trainer: pl.Trainer) -> None:
        """Runs the rounds (``trainer`` is unused: see the module docstring)."""
        cfg = self.cfg
        dm = self.datamodule
        rng = np.random.default_rng(int(dm.seed))
        torch_gen = torch.Generator().manual_seed(int(dm.seed))
        global_net = self.module.net
        n_clients = len(self.client_names)
        per_round = max(1, int(round(float(cfg.client_fraction) * n_clients)))
        stopped = False
        for _ in range(int(cfg.rounds)):
            if self.entry is not None:
                sigma = float(self.plan.noise_multiplier)  # type: ignore[union-attr]
                if not dm.ledger.allows([(self.entry, sigma)] * self.steps_per_round):
                    stopped = True
                    break
            chosen = np.sort(rng.choice(n_clients, size=per_round, replace=False))
            states, weights = [], []
            for k in chosen:
                idx = self.client_index[k]
                states.append(self._local_update(global_net, idx, torch_gen))
                weights.append(len(idx) if cfg.weighting == "size" else 1.0)
            if self.entry is not None:
                for _ in range(self.steps_per_round):
                    dm.ledger.step(self.entry, sigma)
            w = np.asarray(weights, dtype=float) / float(np.sum(weights))
            averaged = {
                key: sum(float(wk) * s[key] for wk, s in zip(w, states, strict=True))
                for key in states[0]
            }
            global_net.load_state_dict(averaged)
            self.rounds_done += 1
            # the averaged (under DP: released) model, not a loss of real records
            check_finite_weights(
                global_net,
                what="global model",
                update=self.rounds_done,
                lr_keys=["lr"],
                private=self.entry is not None,
            )
        check_trained(
            self.rounds_done,
            length=f"method.rounds={cfg.rounds}",
            plan=self.plan,
            budget_stopped=stopped,
            target_epsilon=dm.ledger.target_epsilon,
        )
        ledger = dm.ledger
        if self.entry is None:
            ledger.record_non_private(
                module=self.ledger_module,
                purpose="non-private local SGD at every client (no clipping, no noise)",
                records=dm.n_train,
                rounds=self.rounds_done,
                clients=n_clients,
            )
        else:
            ledger.update_parameters(self.entry, rounds=self.rounds_done, stopped_by_budget=stopped)

    def _local_update(
        self, global_net: torch.nn.Module, idx: np.ndarray, gen: torch.Generator
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        dm = self.datamodule
        x = dm.x_train[torch.from_numpy(idx)]
        y = dm.y_train[torch.from_numpy(idx)]
        local = copy.deepcopy(global_net)
        base = make_base_optimizer(
            cfg.optimizer,
            local.parameters(),
            lr=float(cfg.lr),
            momentum=float(cfg.momentum),
            weight_decay=float(cfg.weight_decay),
        )
        n = len(idx)
        if self.entry is None:
            batch = max(1, int(round(n * dm.batch_size / dm.n_train)))
            for _ in range(int(cfg.local_epochs)):
                order = torch.randperm(n, generator=gen)
                for start in range(0, n, batch):
                    b = order[start : start + batch]
                    base.zero_grad(set_to_none=True)
                    F.cross_entropy(local(x[b]), y[b]).backward()
                    base.step()
            return {k: v.detach().clone() for k, v in local.state_dict().items()}
        plan = self.plan
        assert plan is not None
        model = GradSampleModule(local, batch_first=True, loss_reduction="mean")
        opt = DPOptimizer(
            base,
            noise_multiplier=float(plan.noise_multiplier),
            max_grad_norm=float(plan.max_grad_norm),
            expected_batch_size=max(1, int(round(self.sample_rate * n))),
            loss_reduction="mean",
            generator=self.noise,
        )
        for _ in range(self.steps_per_round):
            mask = torch.rand(n, generator=gen) < self.sample_rate  # Poisson sampling
            opt.zero_grad(set_to_none=True)
            xb, yb = x[mask], y[mask]
            if len(xb) == 0:
                # An empty Poisson batch still takes a noise-only step: skipping it would make
                # "no step" reveal that the batch was empty (Opacus handles 0-row grad samples).
                for p in model.parameters():
                    p.grad_sample = torch.zeros((0, *p.shape))
            else:
                F.cross_entropy(model(xb), yb).backward()
            opt.step()
        state = model._module.state_dict()
        model._close()
        return {k: v.detach().clone() for k, v in state.items()}

    # ----------------------------------------------------------------------------- artifact
    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.module.predict_proba(_encode(self.datamodule, frame))

    def state_dict(self) -> dict[str, Any]:
        return {
            "classifier": self.module.net.state_dict(),
            "classes": self.classes.tolist(),
            "clients": self.client_names,
        }
