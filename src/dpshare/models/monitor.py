"""Signals a noise controller monitors during GAN training, each with its privacy cost charged.

- ``disc_accuracy`` (Deng 2026 Sec. 3.5): the discriminator's accuracy on real vs generated
  records. The generated half is free. The real half is a noisy count over a fresh Poisson sample
  of real train records (sampled-Gaussian step, charged to the ledger) when
  ``signal_source=dp``, or an exact count on the validation split when the config declares that
  split public (``signal_source=public_validation``; recorded in the ledger as such).
- ``frechet_distance`` (Deng 2026 Sec. 3.5): Frechet distance between generated encoded rows and
  the real rows' mean/covariance, released ONCE through the Gaussian mechanism (charged), or
  computed on the public validation split.
- ``val_utility`` (Deng 2026 Sec. 3.5, "validation set performance"): ROC-AUC on the validation
  split of a logistic regression trained on generated rows; only with
  ``signal_source=public_validation`` (the plan refuses it otherwise).
- ``generated_similarity`` (Tao 2020 Sec. 2.4): similarity of successive generated results G1, G2
  from the same fixed latent vectors: synthetic only, no privacy cost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from dpshare.privacy.controllers import generated_similarity
from dpshare.privacy.ledger import SUBSAMPLED_GAUSSIAN, LedgerEntry, PrivacyLedger
from dpshare.privacy.plan import PrivacyPlan
from dpshare.privacy.signals import frechet_distance, noisy_count, release_moments


class SignalMonitor:
    """Computes a controller's signals from a GAN module (``monitor_sample``,
    ``monitor_real_inputs``, ``monitor_score``), charging every real-data signal to ``ledger``."""

    def __init__(
        self,
        *,
        plan: PrivacyPlan,
        ledger: PrivacyLedger,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_public: torch.Tensor | None,
        y_public: torch.Tensor | None,
        seed: int,
        n_probe: int = 256,
    ) -> None:
        self.plan = plan
        self.ledger = ledger
        self.signals = plan.signals
        self.x_train, self.y_train = x_train, y_train
        self.x_public, self.y_public = x_public, y_public
        self.rng = plan.noise_rng(3)
        self.probe_seed = seed + 104729
        self.n_probe = n_probe
        self.previous_probe: np.ndarray | None = None
        self.signal_entry: LedgerEntry | None = None
        self.real_moments: tuple[np.ndarray, np.ndarray] | None = None
        public = plan.signal_source == "public_validation"
        needs_real = any(
            s in self.signals for s in ("disc_accuracy", "frechet_distance", "val_utility")
        )
        if public and needs_real:
            if x_public is None:
                raise ValueError("signal_source=public_validation needs the validation split")
            ledger.record_declared_public(
                module="controller_signals",
                purpose="monitored signals computed on the validation split, which this config "
                "declares public (those records get no privacy protection)",
                records=len(x_public),
            )
        if "disc_accuracy" in self.signals and not public:
            self.signal_entry = ledger.open_dp_sgd(
                module="controller_signal",
                purpose="noisy count of real records the discriminator labels real",
                records=len(x_train),
                sample_rate=plan.signal_sample_rate,
                poisson_sampling=True,
                mechanism=SUBSAMPLED_GAUSSIAN,
                l2_sensitivity=1.0,
            )
        if "frechet_distance" in self.signals:
            x = (x_public if public else x_train).numpy()
            if public:
                mean, cov = x.mean(axis=0), np.cov(x, rowvar=False)
            else:
                clip_norm = float(np.sqrt(x.shape[1]))
                moments = release_moments(
                    x,
                    clip_norm=clip_norm,
                    noise_multiplier=plan.release_noise_multiplier,
                    rng=self.rng,
                )
                ledger.record_gaussian(
                    module="controller_moments",
                    purpose="mean and covariance of encoded real rows (clipped to L2 norm "
                    f"{clip_norm:.2f}) for the Frechet-distance signal",
                    records=len(x),
                    noise_multiplier=moments.noise_multiplier,
                    l2_sensitivity=moments.l2_sensitivity,
                    clip_norm=clip_norm,
                )
                mean, cov = moments.mean, moments.cov
            self.real_moments = (mean, cov)

    @torch.no_grad()
    def __call__(self, module: Any) -> dict[str, float]:
        out: dict[str, float] = {}
        was_training = module.training
        module.eval()
        try:
            if "disc_accuracy" in self.signals:
                value = self._disc_accuracy(module)
                if value is not None:
                    out["disc_accuracy"] = value
            if "frechet_distance" in self.signals and self.real_moments is not None:
                fake = self._generate(module, 2048, seed=int(self.rng.integers(2**31)))
                mean, cov = fake.mean(axis=0), np.cov(fake, rowvar=False)
                out["frechet_distance"] = frechet_distance(mean, cov, *self.real_moments)
            if "val_utility" in self.signals and self.x_public is not None:
                value = self._val_utility(module)
                if value is not None:
                    out["val_utility"] = value
            if "generated_similarity" in self.signals:
                probe = self._generate(module, self.n_probe, seed=self.probe_seed)
                if self.previous_probe is not None:
                    out["generated_similarity"] = generated_similarity(self.previous_probe, probe)
                self.previous_probe = probe
        finally:
            module.train(was_training)
        return out

    # A module offers: monitor_sample(n, generator=, hard=) -> (x, labels, disc_inputs),
    # monitor_real_inputs(x, y, positions) -> disc_inputs, monitor_score(disc_inputs) -> logits.
    def _generate(self, module: Any, n: int, *, seed: int) -> np.ndarray:
        generator = torch.Generator().manual_seed(seed)
        x, _, _ = module.monitor_sample(n, generator=generator, hard=True)
        return x.cpu().numpy()

    def _val_utility(self, module: Any) -> float | None:
        """AUC on the (declared public) validation split of a classifier fitted on generated
        rows: how the synthetic data would serve a downstream task."""
        assert self.x_public is not None and self.y_public is not None
        generator = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        x_t, labels, _ = module.monitor_sample(4096, generator=generator, hard=True)
        x, y = x_t.cpu().numpy(), labels.cpu().numpy()
        y_val = self.y_public.numpy()
        if len(np.unique(y)) < 2 or len(np.unique(y_val)) < 2:
            return None
        model = LogisticRegression(max_iter=300).fit(x, y)
        scores = model.predict_proba(self.x_public.numpy())
        if scores.shape[1] == 2:
            return float(roc_auc_score(y_val, scores[:, 1]))
        return float(roc_auc_score(y_val, scores, multi_class="ovr", labels=model.classes_))

    def _disc_accuracy(self, module: Any) -> float | None:
        n_fake = max(int(self.plan.signal_sample_rate * len(self.x_train)), 64)
        generator = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        _, _, fake_inputs = module.monitor_sample(n_fake, generator=generator, hard=False)
        acc_fake = float((module.monitor_score(fake_inputs) < 0).float().mean())
        if self.signal_entry is None:  # declared-public validation split
            inputs = module.monitor_real_inputs(self.x_public, self.y_public, None)
            logits = module.monitor_score(inputs)
            return 0.5 * (acc_fake + float((logits > 0).float().mean()))
        sigma = self.plan.signal_noise_multiplier
        if not self.ledger.allows([(self.signal_entry, sigma)]):
            return None  # the budget is spent: no more signals (the controller keeps its state)
        mask = self.rng.random(len(self.x_train)) < self.plan.signal_sample_rate  # Poisson
        positions = torch.from_numpy(np.flatnonzero(mask))
        x, y = self.x_train[positions], self.y_train[positions]
        correct = 0.0
        if len(x):
            logits = module.monitor_score(module.monitor_real_inputs(x, y, positions))
            correct = float((logits > 0).sum())
        noisy = noisy_count(correct, noise_multiplier=sigma, rng=self.rng)
        self.ledger.step(self.signal_entry, sigma)
        expected = self.plan.signal_sample_rate * len(self.x_train)  # n is public (as in Opacus)
        acc_real = float(np.clip(noisy / expected, 0.0, 1.0))
        return 0.5 * (acc_fake + acc_real)
