"""The LightningDataModule every generator trains from.

It owns the *encoded* real train split as tensors (no pandas in the training loop), the fitted
reversible transformer and the label encoding. Every read of real records it makes is written to
the run's :class:`~dpshare.privacy.PrivacyLedger`. It never holds the test split: evaluation gets
that from :class:`~dpshare.data.base.DataSplits` directly, so the test records cannot reach a
generator through this object.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from opacus.data_loader import DPDataLoader
from torch.utils.data import DataLoader, TensorDataset

from dpshare.data.base import TabularData
from dpshare.data.transformer import OutputSpan, TabularTransformer, check_continuous_scale
from dpshare.errors import NonFiniteLossError, UserInputError
from dpshare.privacy import PrivacyLedger
from dpshare.privacy.plan import PrivacyPlan

log = logging.getLogger(__name__)


class TabularDataModule(pl.LightningDataModule):
    """Encoded train split (features ``x`` float32, label index ``y`` int64) for GAN training.

    Args:
        data: the dataset (schema, target, column kinds).
        train: the real train split (released columns, index = record ids).
        batch_size: records per training batch.
        continuous_mode: ``standard`` or ``quantile`` scaling of continuous columns.
        ledger: where the accesses to real records are recorded.
        seed: seeds the shuffling of batches.
    """

    def __init__(
        self,
        data: TabularData,
        train: pd.DataFrame,
        *,
        batch_size: int,
        continuous_mode: str = "standard",
        continuous_scale: str = "linear",
        ledger: PrivacyLedger,
        seed: int = 0,
        plan: PrivacyPlan | None = None,
        public_validation: pd.DataFrame | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserInputError(f"method.batch_size must be >= 1, got {batch_size}")
        if batch_size > len(train):
            raise UserInputError(
                f"method.batch_size={batch_size} is larger than the real train split "
                f"({len(train)} records); lower method.batch_size or use more data"
            )
        self.data = data
        self.train_frame = train
        self.batch_size = int(batch_size)
        # True on resume (dpshare.checkpoint): batches drawn with fresh OS entropy
        self.fresh_sampling = False
        self.continuous_mode = continuous_mode
        # public scale of bounded columns in the DP transformer fit (TabularTransformer.fit_dp)
        check_continuous_scale(continuous_scale, "method.continuous_scale")  # before any work
        self.continuous_scale = continuous_scale
        self.ledger = ledger
        self.seed = seed
        self.plan = plan
        self.public_validation = public_validation
        self.x_public: torch.Tensor | None = None
        self.y_public: torch.Tensor | None = None
        # Set by a method with a temporal part before setup(): batches then carry each record's
        # window, scaled to [-1, 1] (``s_train``, shape (n, T, V)).
        self.use_sequences = False
        # A method that releases a classifier (dp_lr, fedavg) needs no class frequencies: it
        # sets this False before setup() and the label-distribution release is skipped.
        self.needs_class_prior = True
        self.class_prior: np.ndarray | None = None
        self.s_train: torch.Tensor | None = None
        self.sequence_bounds: np.ndarray | None = None  # (V, 2): lo, hi per variable
        # Set by a method before setup() (images: dp_wgan): scale every feature by its DECLARED
        # public bounds to [-1, 1] (TabularTransformer.fit_public), no statistic read or released.
        self.public_scaling = False
        self._prepared = False

    # ------------------------------------------------------------------ fitting on real records
    def setup(self, stage: str | None = None) -> None:
        if self._prepared:
            return
        features = self.train_frame[self.data.feature_columns]
        labels = self.train_frame[self.data.target]
        self.classes = np.unique(labels.to_numpy())
        self.label_dtype = labels.dtype
        y = np.searchsorted(self.classes, labels.to_numpy())
        self.transformer = TabularTransformer(continuous_mode=self.continuous_mode)
        if self.public_scaling:
            self._fit_public(features, y)
        elif self.plan is not None and self.plan.transformer_fit == "dp":
            self._fit_dp(features, y)
        else:
            self._fit_raw(features, y)
        if self.public_validation is not None:
            val = self.public_validation
            self.x_public = torch.from_numpy(
                self.transformer.transform(val[self.data.feature_columns])
            )
            known = np.isin(val[self.data.target].to_numpy(), self.classes)
            self.x_public = self.x_public[torch.from_numpy(known)]
            self.y_public = torch.from_numpy(
                np.searchsorted(self.classes, val[self.data.target].to_numpy()[known]).astype(
                    np.int64
                )
            )
        self.x_train = torch.from_numpy(self.transformer.transform(features))
        self.y_train = torch.from_numpy(y.astype(np.int64))
        if self.use_sequences:
            self._prepare_sequences()
        self._prepared = True

    def _prepare_sequences(self) -> None:
        """Scale each record's window to [-1, 1] with public bounds (no read of the records
        beyond the record's own window, which only its own per-sample gradient sees)."""
        data = self.data
        if data.sequences is None:
            raise UserInputError(
                f"dataset {data.name!r} has no sequences (fixed-length windows) for a temporal "
                "discriminator; drop 'temporal' from method.heads (or use dataset=mimic3)"
            )
        windows = data.sequences_for(self.train_frame.index).astype(np.float32)
        if data.sequence_bounds is not None:
            missing = [f for f in data.sequence_features if f not in data.sequence_bounds]
            if missing:
                raise UserInputError(
                    f"dataset {data.name!r}: sequence_bounds lacks {missing}; declare them"
                )
            bounds = np.array([data.sequence_bounds[f] for f in data.sequence_features], float)
        elif self.plan is not None:
            raise UserInputError(
                f"dataset {data.name!r} declares no public bounds for its sequence variables, "
                "which a DP run needs to scale them; declare sequence_bounds in the loader"
            )
        else:
            flat = windows.reshape(-1, windows.shape[-1])
            bounds = np.stack([np.nanmin(flat, 0), np.nanmax(flat, 0)], axis=1).astype(float)
            bounds[:, 1] = np.maximum(bounds[:, 1], bounds[:, 0] + 1e-6)
            self.ledger.record_non_private(
                module="sequence_scaling",
                purpose="min / max of each sequence variable on the train split",
                records=len(windows),
            )
        lo, hi = bounds[:, 0], bounds[:, 1]
        scaled = np.clip(2.0 * (windows - lo) / (hi - lo) - 1.0, -1.0, 1.0)
        self.sequence_bounds = bounds
        self.s_train = torch.from_numpy(np.nan_to_num(scaled).astype(np.float32))

    def decode_sequences(self, scaled: np.ndarray) -> np.ndarray:
        """Generated windows in [-1, 1] -> the variables' units, shape (n, T, V)."""
        assert self.sequence_bounds is not None
        return decode_windows(scaled, self.sequence_bounds)

    def _fit_raw(self, features: pd.DataFrame, y: np.ndarray) -> None:
        self.transformer.fit(features, self.data.column_kinds or None)
        self.ledger.record_non_private(
            module="transformer",
            purpose="fit normalization statistics, clipping bounds and category sets",
            records=len(features),
            statistics=[f"{a.column}:{a.statistic}" for a in self.transformer.accesses],
        )
        if not self.needs_class_prior:
            return
        counts = np.bincount(y, minlength=len(self.classes))
        self.class_prior = counts / counts.sum()
        self.ledger.record_non_private(
            module="label_distribution",
            purpose="class frequencies used to sample the generator's label conditions",
            records=len(y),
            n_classes=len(self.classes),
        )

    def _fit_public(self, features: pd.DataFrame, y: np.ndarray) -> None:
        """Features scaled by their declared public bounds (no read, no release: listed in the
        ledger with 0 records read); class frequencies as in the other fits (a Gaussian release
        under DP, a raw read otherwise)."""
        domain = self.data.public_domain
        if domain is None:
            raise UserInputError(
                f"dataset {self.data.name!r} declares no public bounds for its columns, which "
                "scaling by public bounds needs (e.g. dataset=mnist: pixels in [0, 255])"
            )
        self.transformer.fit_public(features, domain=domain)
        self.ledger.record_declared_public(
            module="transformer",
            purpose="every feature scaled to [-1, 1] by its declared public bounds (e.g. pixels "
            "[0, 255]); no statistic of the records is read or released",
            records=0,
            scaling="public_bounds",
            n_columns=features.shape[1],
        )
        if self.plan is not None and self.plan.transformer_fit == "dp":
            sigma = self.plan.release_noise_multiplier
            rng = self.plan.release_rng(2)
            counts = np.bincount(y, minlength=len(self.classes)).astype(float)
            noisy = np.clip(counts + rng.normal(0.0, sigma, len(counts)), 1.0, None)
            self.class_prior = noisy / noisy.sum()
            self.ledger.record_gaussian(
                module="label_distribution",
                purpose="class counts for the generator's label conditions",
                records=len(y),
                noise_multiplier=sigma,
                l2_sensitivity=1.0,
                n_classes=len(self.classes),
            )
        else:
            counts = np.bincount(y, minlength=len(self.classes))
            self.class_prior = counts / counts.sum()
            self.ledger.record_non_private(
                module="label_distribution",
                purpose="class frequencies used to sample the generator's label conditions",
                records=len(y),
                n_classes=len(self.classes),
            )

    def _fit_dp(self, features: pd.DataFrame, y: np.ndarray) -> None:
        """Transformer statistics and class counts as two Gaussian releases (charged)."""
        assert self.plan is not None
        if self.data.public_domain is None:
            raise UserInputError(
                f"dataset {self.data.name!r} declares no public domain (column bounds and "
                "categories), which a DP fit of the transformer needs; declare one, or set "
                "privacy.transformer_fit=non_private (the run is then not DP)"
            )
        domain = self.data.public_domain
        undeclared = [str(c) for c in features.columns if domain.kind(str(c)) is None]
        if undeclared:
            raise UserInputError(
                f"dataset {self.data.name!r}: a DP fit of the transformer needs a public domain "
                f"for every released column, and {undeclared} have none; declare "
                "dataset.public_domain.<column> from public knowledge (never from the data), or "
                f"leave them out: dataset.drop_columns=[{','.join(undeclared)}]"
            )
        sigma = self.plan.release_noise_multiplier
        self.transformer.fit_dp(
            features,
            domain=domain,
            noise_multiplier=sigma,
            seed=self.plan.release_seed_for(1),
            continuous_scale=self.continuous_scale,
        )
        release = self.transformer.release
        unresolved = release.unresolved_std_columns()
        if unresolved:
            # post-processing of the release: says which encodings rest on a noise-level std
            log.warning(
                "DP transformer fit: the noisy variance of %s does not stand out of its noise, "
                "so the encoding's scale is mostly noise (a column narrow for its declared "
                "range); a public log scale (method.continuous_scale=log) or a tighter declared "
                "bound (dataset.public_domain) resolves it",
                unresolved,
            )
        self.ledger.record_gaussian(
            module="transformer",
            purpose="normalization statistics of every column on declared public bounds "
            "(one Gaussian release)",
            records=len(features),
            noise_multiplier=release.noise_multiplier,
            l2_sensitivity=release.l2_sensitivity,
            n_coordinates=release.n_coordinates,
        )
        if not self.needs_class_prior:
            return
        # Class counts: a histogram, one record touches one count (L2 sensitivity 1). The class
        # SET comes from the data's declared target domain when there is one.
        rng = self.plan.release_rng(2)
        counts = np.bincount(y, minlength=len(self.classes)).astype(float)
        noisy = np.clip(counts + rng.normal(0.0, sigma, len(counts)), 1.0, None)
        self.class_prior = noisy / noisy.sum()
        self.ledger.record_gaussian(
            module="label_distribution",
            purpose="class counts for the generator's label conditions",
            records=len(y),
            noise_multiplier=sigma,
            l2_sensitivity=1.0,
            n_classes=len(self.classes),
        )

    # ------------------------------------------------------------------------------- accessors
    @property
    def output_spans(self) -> list[OutputSpan]:
        return self.transformer.output_spans

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_train(self) -> int:
        return len(self.train_frame)

    def train_dataloader(self) -> DataLoader:
        """Poisson-sampled batches under DP (Opacus DPDataLoader), shuffled batches otherwise."""
        tensors = [self.x_train, self.y_train]
        if self.s_train is not None:
            tensors.append(self.s_train)
        dataset = TensorDataset(*tensors)
        generator = torch.Generator()
        if self.fresh_sampling:  # a resumed run: no step may reuse an earlier step's sample
            generator.seed()
        else:
            generator.manual_seed(self.seed)
        if self.plan is not None and self.plan.poisson_sampling:
            return DPDataLoader(dataset, sample_rate=self.plan.sample_rate, generator=generator)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            generator=generator,
        )

    # ------------------------------------------------------------------------------- decoding
    def decode(self, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
        """Generator output (encoded features, label indices) -> table in the released schema."""
        return decode_rows(
            x,
            y,
            transformer=self.transformer,
            classes=self.classes,
            label_dtype=self.label_dtype,
            target=self.data.target,
            columns=list(self.data.frame.columns),
        )


def decode_rows(
    x: np.ndarray,
    y: np.ndarray,
    *,
    transformer: TabularTransformer,
    classes: np.ndarray,
    label_dtype: object,
    target: str,
    columns: list[str],
) -> pd.DataFrame:
    """Generator output (encoded features ``x``, label indices ``y``) -> a table with
    ``columns`` in order, the target decoded through ``classes`` and cast to ``label_dtype``.
    Shared by :class:`TabularDataModule` and a run loaded from disk (:mod:`dpshare.artifact`)."""
    bad = int(x.size - np.isfinite(x).sum())
    if bad:  # the generator's weights are finite but its forward pass overflows
        raise NonFiniteLossError(
            f"training diverged: the generator's output holds {bad} NaN or infinite values; "
            "the run stopped without a result. Fix: lower the method's learning rates "
            "(method.*_lr, e.g. 10x smaller), and check the data for extreme values"
        )
    features = transformer.inverse_transform(x)
    labels = pd.Series(classes[y]).astype(label_dtype)
    features[target] = labels.to_numpy()
    features[target] = features[target].astype(label_dtype)
    return features[columns]


def decode_windows(scaled: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Generated windows in [-1, 1] -> the variables' units with the public ``bounds``
    ``(V, 2)`` (lo, hi per variable), float32 of shape (n, T, V)."""
    lo, hi = bounds[:, 0], bounds[:, 1]
    return ((np.clip(scaled, -1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo).astype(np.float32)
