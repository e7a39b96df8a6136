"""A small convolutional classifier for image tables (MNIST's 784 pixel columns), as a
scikit-learn-style estimator, registered as the downstream model ``cnn``.

Used for TSTR (train on synthetic images, test on the real test split) and TRTR (train on the
real train split: the real-data reference Tao 2020 Sec. 3.2 compares against).

Model selection protocol. The number of epochs is chosen by early stopping on a validation
split carved (stratified, seeded) from the TRAINING table the estimator is given: for TSTR that
is synthetic data, for TRTR real train records. The real test split is never seen by ``fit``:
DPImageBench (Chen et al. 2025) shows that selecting on the test set, as many DP image papers
do, inflates reported accuracy. After early stopping the weights of the best validation epoch
are kept (no refit on the held-out part).

Architecture (LeNet-like, LeCun et al. 1998): conv 5x5 (16) - max-pool - conv 5x5 (32) -
max-pool - dense 128 - dense (classes), ReLU, dropout 0.25 before the last layer; Adam.
Inputs: the 784 columns in row-major order (``px_{28 r + c}``), reshaped to 1x28x28 and divided
by ``pixel_max`` (255: the public bound of the IDX byte).

Deterministic given ``random_state`` (on CPU): the split, the initial weights, the batch order
and dropout all come from seeded generators (the global torch RNG is forked, so fitting neither
depends on nor disturbs the caller's random state).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

from dpshare.errors import UserInputError
from dpshare.evaluation.utility import DOWNSTREAM_MODELS


class _LeNet(nn.Module):
    def __init__(self, n_classes: int, side: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc1 = nn.Linear(32 * (side // 4) ** 2, 128)
        self.drop = nn.Dropout(0.25)
        self.fc2 = nn.Linear(128, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(self.drop(x))


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """LeNet-like CNN over flattened square grey images (see the module docstring).

    Args:
        random_state: seeds the validation split, the weights, batch order and dropout.
        max_epochs: upper bound on training epochs.
        patience: stop after this many epochs without a better validation loss.
        validation_fraction: share of the training table held out for early stopping
            (stratified when every class has at least 2 rows).
        batch_size: rows per Adam step.
        lr: Adam learning rate.
        pixel_max: inputs are divided by this (the public upper bound of a pixel).

    Attributes after ``fit``: ``classes_`` (sorted labels), ``n_epochs_`` (epochs run),
    ``best_epoch_`` (1-based epoch whose weights are kept), ``validation_loss_`` (its loss).

    ``raw_features = True`` tells :func:`dpshare.evaluation.utility.evaluate_utility` to pass the
    pixel columns unchanged (no per-column standardisation, which would distort the image).
    """

    raw_features = True

    def __init__(
        self,
        *,
        random_state: int = 0,
        max_epochs: int = 30,
        patience: int = 3,
        validation_fraction: float = 0.1,
        batch_size: int = 128,
        lr: float = 1e-3,
        pixel_max: float = 255.0,
    ) -> None:
        self.random_state = random_state
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.batch_size = batch_size
        self.lr = lr
        self.pixel_max = pixel_max

    # ------------------------------------------------------------------------------ helpers
    def _images(self, X: Any) -> torch.Tensor:
        array = np.asarray(X.to_numpy() if isinstance(X, pd.DataFrame) else X, dtype=np.float32)
        if array.ndim != 2:
            raise UserInputError(f"the cnn model expects a 2-D table, got shape {array.shape}")
        side = int(round(np.sqrt(array.shape[1])))
        if side * side != array.shape[1] or side % 4:
            raise UserInputError(
                f"the cnn downstream model needs square images flattened row-major (e.g. "
                f"MNIST's 784 pixel columns), got {array.shape[1]} feature columns; use "
                "eval.models without cnn for tabular data"
            )
        if not np.isfinite(array).all():
            raise UserInputError("the cnn model got missing or infinite pixel values")
        # C order: a DataFrame's block is column-major, and strided images make convs slow
        scaled = np.ascontiguousarray(array / np.float32(self.pixel_max), dtype=np.float32)
        return torch.from_numpy(scaled).reshape(-1, 1, side, side)

    def _loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        net.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(x), 1024):
                logits = net(x[start : start + 1024])
                total += float(F.cross_entropy(logits, y[start : start + 1024], reduction="sum"))
        return total / max(len(x), 1)

    # ------------------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any) -> CNNClassifier:
        """Train on ``(X, y)`` only; early stopping on a split of them (module docstring)."""
        if not 0 < self.validation_fraction < 1:
            raise UserInputError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}"
            )
        images = self._images(X)
        labels = np.asarray(y)
        self.classes_ = np.unique(labels)
        if len(self.classes_) < 2:
            raise UserInputError("the cnn model needs at least 2 classes in its training table")
        targets = torch.from_numpy(np.searchsorted(self.classes_, labels).astype(np.int64))
        positions = np.arange(len(labels))
        counts = np.bincount(targets.numpy(), minlength=len(self.classes_))
        n_val = int(np.ceil(self.validation_fraction * len(labels)))
        stratify = targets.numpy() if counts.min() >= 2 and n_val >= len(self.classes_) else None
        train_pos, val_pos = train_test_split(
            positions,
            test_size=self.validation_fraction,
            random_state=self.random_state,
            stratify=stratify,
        )
        x_tr, y_tr = images[train_pos], targets[train_pos]
        x_val, y_val = images[val_pos], targets[val_pos]

        generator = torch.Generator().manual_seed(int(self.random_state))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            net = _LeNet(len(self.classes_), images.shape[-1])
            optimizer = torch.optim.Adam(net.parameters(), lr=self.lr)
            best_loss, best_state, best_epoch, stale = np.inf, None, 0, 0
            epoch = 0
            for epoch in range(1, self.max_epochs + 1):
                net.train()
                order = torch.randperm(len(x_tr), generator=generator)
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    loss = F.cross_entropy(net(x_tr[idx]), y_tr[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                val_loss = self._loss(net, x_val, y_val)
                if val_loss < best_loss - 1e-6:
                    best_loss, best_epoch, stale = val_loss, epoch, 0
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
        assert best_state is not None
        net.load_state_dict(best_state)
        net.eval()
        self.net_ = net
        self.n_epochs_ = epoch
        self.best_epoch_ = best_epoch
        self.validation_loss_ = float(best_loss)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        images = self._images(X)
        out = []
        with torch.no_grad():
            for start in range(0, len(images), 1024):
                out.append(F.softmax(self.net_(images[start : start + 1024]), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes_)))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


DOWNSTREAM_MODELS.register("cnn")(lambda seed: CNNClassifier(random_state=seed))
