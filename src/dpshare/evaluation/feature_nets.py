"""Learned feature spaces for the fidelity metrics (:mod:`dpshare.evaluation.fidelity`).

Two networks, both trained on the real TRAIN split only (never on test or synthetic records):

* **LeNet features for images** (``fidelity/fd_lenet``). Frechet Inception Distance needs
  Inception-v3 weights trained on ImageNet, which are neither CPU-cheap nor meaningful for 28x28
  digits; the usual substitute for MNIST is a small classifier trained on real MNIST, whose
  penultimate layer is the feature space. Ours is the LeNet-like CNN of
  :mod:`dpshare.evaluation.cnn` (conv 5x5 (16) - pool - conv 5x5 (32) - pool - dense 128 -
  dense (classes)); the features are the 128 ReLU activations fed to the last layer (dropout
  is off in eval mode). The recipe is fixed: seed 0, Adam (lr 1e-3), batch 256,
  :data:`LENET_EPOCHS` epochs over every real train image (no early stopping, no validation
  split), pixels divided by 255 (the public bound of the IDX byte). The network is part of the
  metric's definition, so numbers are comparable only between runs with the same
  :data:`LENET_FEATURES_VERSION` (bump it whenever the recipe changes) and the same real train
  split. The trained weights are cached under ``cache_dir`` as
  ``{LENET_FEATURES_VERSION}-{sha1[:12]}.pt``, where the SHA-1 covers the version, the recipe
  (hyper-parameters and the architecture's ``repr``) and the bytes of the training images and
  labels: a different split or a changed architecture gets a new file, never stale weights.
* **A tabular autoencoder** (``fidelity/fd_encoder``): an MLP ``d -> 64 -> 16 -> 64 -> d``
  (ReLU; the bottleneck is linear, ``min(16, d)`` wide) trained to reconstruct the encoded real
  train features (:class:`~dpshare.evaluation.features.TableEncoder`: standardised numeric,
  one-hot categorical) with mean squared error, Adam (lr 1e-3), batch 256,
  :data:`AUTOENCODER_EPOCHS` epochs. Cheap (under a second for 5000 x 50 on 2 CPU cores), so
  it is retrained per evaluation and not cached.

Both trainings are deterministic on CPU given the seed: initial weights, batch order and
dropout come from seeded generators, and the global torch RNG is forked so training neither
depends on nor disturbs the caller's random state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from dpshare.data.mnist import PIXEL_COLUMNS
from dpshare.errors import UserInputError
from dpshare.evaluation.cnn import _LeNet

LENET_FEATURES_VERSION = "lenet-v1"
LENET_EPOCHS = 2  # about 25 s on the 60,000 MNIST train images with 2 CPU cores
LENET_BATCH_SIZE = 256
LENET_LR = 1e-3
LENET_SEED = 0
LENET_FEATURE_DIM = 128
PIXEL_MAX = 255.0  # public upper bound of an MNIST pixel (IDX unsigned byte)
IMAGE_SIDE = 28

AUTOENCODER_HIDDEN = 64
AUTOENCODER_BOTTLENECK = 16
AUTOENCODER_EPOCHS = 30
AUTOENCODER_BATCH_SIZE = 256
AUTOENCODER_LR = 1e-3

CACHE_ENV = "DPSHARE_CACHE"
_INFERENCE_BATCH = 1024


def default_cache_dir() -> Path:
    """``$DPSHARE_CACHE`` when set, else ``~/.cache/dpshare``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dpshare"


def is_image_table(frame: pd.DataFrame) -> bool:
    """True when ``frame`` has MNIST's 784 pixel columns ``px_000`` ... ``px_783``."""
    return all(column in frame.columns for column in PIXEL_COLUMNS)


def require_image_table(frame: pd.DataFrame, *, what: str) -> None:
    """A :class:`UserInputError` naming ``what`` when ``frame`` is not an image table."""
    if not is_image_table(frame):
        n_px = sum(str(c).startswith("px_") for c in frame.columns)
        raise UserInputError(
            f"{what} needs an image table with the {len(PIXEL_COLUMNS)} pixel columns "
            f"px_000 ... px_783 (MNIST), got a table with {frame.shape[1]} columns "
            f"({n_px} named px_*); remove it from eval.fidelity (and do not set "
            "eval.feature_net=lenet) for tabular data"
        )


def _images(frame: pd.DataFrame) -> torch.Tensor:
    """The pixel columns as an (n, 1, 28, 28) float tensor in [0, 1] (C order: fast convs)."""
    require_image_table(frame, what="the LeNet feature network")
    pixels = np.ascontiguousarray(frame[list(PIXEL_COLUMNS)].to_numpy(dtype=np.float32))
    if not np.isfinite(pixels).all():
        raise UserInputError("an image table holds missing or infinite pixel values")
    pixels /= np.float32(PIXEL_MAX)
    return torch.from_numpy(pixels).reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)


def _lenet_recipe(n_classes: int, seed: int, epochs: int) -> dict[str, object]:
    with torch.random.fork_rng(devices=[]):
        architecture = repr(_LeNet(n_classes, IMAGE_SIDE))
    return {
        "version": LENET_FEATURES_VERSION,
        "architecture": architecture,
        "epochs": epochs,
        "batch_size": LENET_BATCH_SIZE,
        "lr": LENET_LR,
        "seed": seed,
        "pixel_max": PIXEL_MAX,
        "optimizer": "adam",
    }


def _lenet_cache_key(
    pixels: np.ndarray, labels: np.ndarray, classes: np.ndarray, recipe: dict[str, object]
) -> str:
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode())
    digest.update(repr(classes.tolist()).encode())
    digest.update(f"{pixels.dtype.str}{pixels.shape}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return f"{LENET_FEATURES_VERSION}-{digest.hexdigest()[:12]}"


def _train_lenet(
    images: torch.Tensor, targets: torch.Tensor, n_classes: int, *, seed: int, epochs: int
) -> _LeNet:
    """The fixed recipe of the module docstring (no validation split, no early stopping)."""
    generator = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = _LeNet(n_classes, IMAGE_SIDE)
        optimizer = torch.optim.Adam(net.parameters(), lr=LENET_LR)
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(order), LENET_BATCH_SIZE):
                idx = order[start : start + LENET_BATCH_SIZE]
                loss = F.cross_entropy(net(images[idx]), targets[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    net.eval()
    return net


def _atomic_save(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write to a temporary file in the same folder, then rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def lenet_cache_path(
    real_train: pd.DataFrame,
    *,
    target: str,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = LENET_SEED,
    epochs: int = LENET_EPOCHS,
) -> Path:
    """Where :func:`load_or_train_lenet` keeps the weights for this table and recipe."""
    _, _, _, path = _lenet_inputs(real_train, target, cache_dir, seed, epochs)
    return path


def _lenet_inputs(
    real_train: pd.DataFrame,
    target: str,
    cache_dir: str | os.PathLike[str] | None,
    seed: int,
    epochs: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Path]:
    require_image_table(real_train, what="the LeNet feature network (fd_lenet)")
    if target not in real_train.columns:
        raise UserInputError(f"the real train table has no target column {target!r}")
    if epochs < 1:
        raise UserInputError(f"LeNet epochs must be >= 1, got {epochs}")
    labels = real_train[target].to_numpy()
    if pd.isna(labels).any():
        raise UserInputError(f"target column {target!r} of the real train table has missing values")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise UserInputError("the LeNet feature network needs at least 2 classes to train on")
    codes = np.searchsorted(classes, labels)
    pixels = real_train[list(PIXEL_COLUMNS)].to_numpy()
    recipe = _lenet_recipe(len(classes), seed, epochs)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / f"{_lenet_cache_key(pixels, codes, classes, recipe)}.pt"
    return pixels, codes, classes, path


def load_or_train_lenet(
    real_train: pd.DataFrame,
    *,
    target: str,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = LENET_SEED,
    epochs: int = LENET_EPOCHS,
) -> nn.Module:
    """The LeNet feature network for ``real_train`` (an MNIST-style image table), in eval mode.

    Loads the cached weights when a file for this exact training table and recipe exists under
    ``cache_dir`` (``None``: :func:`default_cache_dir`), else trains with the fixed recipe of
    the module docstring and caches them (atomic write). An unreadable cache file is retrained
    and replaced. Only ``real_train`` is read: pass the real TRAIN split, never test records.

    Raises:
        UserInputError: ``real_train`` lacks the 784 pixel columns or the target, has missing
            pixel or label values, or fewer than 2 classes.
    """
    _, codes, classes, path = _lenet_inputs(real_train, target, cache_dir, seed, epochs)
    if path.is_file():
        with torch.random.fork_rng(devices=[]):
            net = _LeNet(len(classes), IMAGE_SIDE)
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:  # a truncated or foreign file: retrain rather than fail
            warnings.warn(
                f"ignoring unreadable LeNet cache {path} ({exc}); retraining", stacklevel=2
            )
        else:
            net.eval()
            return net
    images = _images(real_train)
    targets = torch.from_numpy(codes.astype(np.int64))
    net = _train_lenet(images, targets, len(classes), seed=seed, epochs=epochs)
    _atomic_save(net.state_dict(), path)
    return net


def lenet_features(net: nn.Module, frame: pd.DataFrame) -> np.ndarray:
    """The (n, 128) float32 penultimate activations of ``net`` for the images of ``frame``:
    the input of the last dense layer (ReLU of the 128-unit layer; dropout off)."""
    images = _images(frame)
    captured: list[torch.Tensor] = []
    fc2: nn.Module = net.fc2  # type: ignore[assignment]
    hook = fc2.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), _INFERENCE_BATCH):
                net(images[start : start + _INFERENCE_BATCH])
    finally:
        hook.remove()
        net.train(was_training)
    if not captured:
        return np.zeros((0, LENET_FEATURE_DIM), dtype=np.float32)
    return torch.cat(captured).numpy().astype(np.float32, copy=False)


# ---------------------------------------------------------------------------- tabular encoder
class TabularAutoencoder(nn.Module):
    """MLP autoencoder ``d -> 64 -> k -> 64 -> d`` (ReLU), ``k = min(16, d)``; see the module
    docstring. :meth:`encode` gives the (linear) bottleneck."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        bottleneck = min(AUTOENCODER_BOTTLENECK, dim)
        self.bottleneck = bottleneck
        self.encoder = nn.Sequential(
            nn.Linear(dim, AUTOENCODER_HIDDEN), nn.ReLU(), nn.Linear(AUTOENCODER_HIDDEN, bottleneck)
        )
        self.decoder = nn.Sequential(
            nn.Linear(bottleneck, AUTOENCODER_HIDDEN), nn.ReLU(), nn.Linear(AUTOENCODER_HIDDEN, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def encode(self, features: np.ndarray) -> np.ndarray:
        """Bottleneck codes (float32) of encoded rows ``features`` (n, d)."""
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        with torch.no_grad():
            parts = [
                self.encoder(x[start : start + _INFERENCE_BATCH])
                for start in range(0, len(x), _INFERENCE_BATCH)
            ]
        out = torch.cat(parts) if parts else torch.zeros((0, self.bottleneck))
        return out.numpy().astype(np.float32, copy=False)


def train_autoencoder(
    features: np.ndarray, *, seed: int, epochs: int = AUTOENCODER_EPOCHS
) -> TabularAutoencoder:
    """Fit a :class:`TabularAutoencoder` to encoded real train rows ``features`` (n, d)."""
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    if x.ndim != 2 or len(x) < 2:
        raise UserInputError(
            f"the autoencoder needs a 2-D array of >= 2 rows, got {tuple(x.shape)}"
        )
    generator = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = TabularAutoencoder(x.shape[1])
        optimizer = torch.optim.Adam(net.parameters(), lr=AUTOENCODER_LR)
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(order), AUTOENCODER_BATCH_SIZE):
                batch = x[order[start : start + AUTOENCODER_BATCH_SIZE]]
                loss = F.mse_loss(net(batch), batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    net.eval()
    return net
