"""MNIST handwritten digits from the four original IDX files (docs/mnist.md).

Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte`` (each gzipped, ``.gz``, or raw) from ``dataset.root`` (default:
``$MNIST_ROOT``, else ``../shared/datasets/mnist``) with a few lines of numpy, no torchvision:

1. **Structure**: the IDX magic number (2051 images / 2049 labels), the big-endian dimensions
   and the exact byte length they imply; a short file is reported as truncated, with the number
   of bytes expected.
2. **Checksums** (``verify_checksums``): the MD5 of each file on disk against the official MD5
   of the ``.gz`` files (:data:`GZ_MD5`) or of their decompressed contents (:data:`RAW_MD5`).
3. **Download** (``download``, off by default): a missing file is fetched from the official
   mirrors (:data:`MIRRORS`) with :mod:`urllib` and checked against :data:`GZ_MD5` before it is
   written. Offline, the error lists the four files and where to put them.

:func:`load_mnist` releases the 70,000 images as a flat table: 784 ``uint8`` pixel columns
``px_000`` ... ``px_783`` (row-major, ``px_{28 * row + col}``) and the digit ``label``. The 10,000
official test images form ``predefined_test``, so the project's split uses exactly them as test.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from dpshare.config.schema import DatasetConfig
from dpshare.data.base import TabularData
from dpshare.errors import UserInputError

log = logging.getLogger("dpshare.data.mnist")

ROOT_ENV = "MNIST_ROOT"
DEFAULT_ROOT = "../shared/datasets/mnist"

#: The four files, by role (base names without ``.gz``).
FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: Official MD5 of the distributed ``.gz`` files (as listed by the mirrors and torchvision).
GZ_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: MD5 of the decompressed files: computed from the ``.gz`` files above (verified against
#: :data:`GZ_MD5`); equal to the values public download scripts list for the raw files.
RAW_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

#: Where ``download: true`` looks for ``<name>.gz``, in order (each URL ends with ``/``).
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension
IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
N_CLASSES = 10
N_TRAIN = 60_000
N_TEST = 10_000

ID_COLUMN = "record_id"
TARGET_COLUMN = "label"
PIXEL_COLUMNS: tuple[str, ...] = tuple(f"px_{i:03d}" for i in range(N_PIXELS))

# IDX type byte -> numpy dtype (multi-byte types are big-endian).
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# ----------------------------------------------------------------------------------- config


@dataclass
class MNISTConfig(DatasetConfig):
    """MNIST handwritten digits from the original IDX files (docs/mnist.md).

    Attributes (beyond :class:`~dpshare.config.schema.DatasetConfig`; ``test_fraction`` is
    ignored: the test split is always the official 10,000 t10k images):
        root: folder with the four IDX files (``.gz`` or raw); relative paths are resolved
            against the current directory. The YAML default is ``$MNIST_ROOT``, else
            ``../shared/datasets/mnist``.
        verify_checksums: check each file's MD5 against the official values; turn off only for
            deliberately modified copies (structure is still checked).
        download: fetch missing files from :data:`MIRRORS` into ``root`` (needs network).
        download_timeout_s: seconds before one download attempt gives up.
        positive_label: the digit treated as positive by binary metrics (one-vs-rest).
    """

    name: str = "mnist"
    root: str = DEFAULT_ROOT
    verify_checksums: bool = True
    download: bool = False
    download_timeout_s: float = 30.0
    positive_label: int = 0


def mnist_settings(cfg: Any) -> MNISTConfig:
    """A validated :class:`MNISTConfig` from a config node, a mapping or an MNISTConfig."""
    if isinstance(cfg, MNISTConfig):
        node = OmegaConf.structured(cfg)
    else:
        given = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        if not isinstance(given, Mapping):
            raise UserInputError(f"dataset config must be a mapping, got {type(cfg).__name__}")
        known = {f.name for f in fields(MNISTConfig)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise UserInputError(
                f"dataset.mnist: unknown keys {unknown}; valid keys are {sorted(known)}"
            )
        try:
            node = OmegaConf.merge(OmegaConf.structured(MNISTConfig), dict(given))
        except Exception as err:  # omegaconf ValidationError and friends
            raise UserInputError(f"dataset.mnist: invalid config: {err}") from err
    try:
        settings = OmegaConf.to_object(node)
    except Exception as err:
        raise UserInputError(f"dataset.mnist: invalid config: {err}") from err
    assert isinstance(settings, MNISTConfig)
    if not 0 <= settings.positive_label < N_CLASSES:
        raise UserInputError(
            f"dataset.positive_label: must be a digit 0..9, got {settings.positive_label}"
        )
    if not (math.isfinite(settings.download_timeout_s) and settings.download_timeout_s > 0):
        raise UserInputError(
            f"dataset.download_timeout_s: must be > 0 seconds, got {settings.download_timeout_s}"
        )
    return settings


# -------------------------------------------------------------------------------------- IDX


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """One IDX file (``.gz`` or raw) as a native-endian array of the shape in its header.

    Header: two zero bytes, a type byte (0x08 = uint8), the number of dimensions, then one
    big-endian uint32 per dimension; the data follow, exactly ``prod(dims) * itemsize`` bytes.

    Raises:
        UserInputError: naming the file when it is not valid gzip, has another magic number than
            ``expected_magic``, an unknown type, or a length other than its header implies
            (truncated: the message says how many bytes were expected).
    """
    path = Path(path)
    raw = _decompressed(path, path.read_bytes())
    return _parse_idx(path, raw, expected_magic=expected_magic)


def _decompressed(path: Path, blob: bytes) -> bytes:
    if path.suffix != ".gz":
        return blob
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as err:
        raise UserInputError(
            f"MNIST file {path} is truncated or corrupt: it is not a complete gzip stream "
            f"({err}); replace it with a fresh copy"
        ) from err


def _parse_idx(path: Path, raw: bytes, *, expected_magic: int | None) -> np.ndarray:
    def corrupt(message: str) -> UserInputError:
        return UserInputError(
            f"MNIST file {path} is truncated or corrupt: {message}; replace it with a fresh copy"
        )

    if len(raw) < 4:
        raise corrupt(f"{len(raw)} bytes, shorter than the 4-byte IDX magic number")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise UserInputError(
            f"MNIST file {path}: magic number {magic} (0x{magic:08x}), expected "
            f"{expected_magic} (0x{expected_magic:08x}); this is not the expected IDX file "
            "(images 2051, labels 2049), or it is corrupt"
        )
    zeros, type_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zeros != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise UserInputError(
            f"MNIST file {path}: magic number {magic} (0x{magic:08x}) is not a valid IDX header"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise corrupt(
            f"{len(raw)} bytes, shorter than its {header}-byte header ({ndim} dimensions)"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        size = "decompressed size" if path.suffix == ".gz" else "size"
        raise corrupt(
            f"{what}: its header (dimensions {dims}) implies {expected:,} bytes, its {size} is "
            f"{len(raw):,} bytes"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends with ``.gz``).

    The inverse of :func:`read_idx`, for tests and for deliberately modified copies (which then
    need ``verify_checksums: false``).
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0 or array.ndim > 255:
        raise UserInputError(f"cannot write dtype {array.dtype} / {array.ndim} dims as IDX")
    big = array.astype(_IDX_DTYPES[code], copy=False)
    blob = bytes([0, 0, code, array.ndim])
    blob += b"".join(int(d).to_bytes(4, "big") for d in array.shape) + big.tobytes()
    path.write_bytes(gzip.compress(blob, mtime=0) if path.suffix == ".gz" else blob)
    return path


# ------------------------------------------------------------------------------------ files


@dataclass(frozen=True)
class MNISTArrays:
    """The four MNIST arrays as stored (uint8), and the files they came from.

    Attributes:
        train_images: ``(60000, 28, 28)`` pixel intensities 0..255 (0 = background).
        train_labels: ``(60000,)`` digits 0..9.
        test_images: ``(10000, 28, 28)``.
        test_labels: ``(10000,)``.
        files: role (``train_images`` ...) -> path read.
        verified: whether every file's MD5 was checked against the official value.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    files: Mapping[str, Path]
    verified: bool


def resolve_root(root: str | os.PathLike[str]) -> Path:
    """``root`` expanded (``~``) and made absolute against the current directory."""
    path = Path(os.path.expanduser(str(root)))
    return path if path.is_absolute() else Path.cwd() / path


def _where_to_put(root: Path) -> str:
    names = ", ".join(f"{name}.gz" for name in FILES.values())
    return (
        f"put the four MNIST files ({names}; raw, un-gzipped copies also work) in {root}, or "
        f"point dataset.root (or the {ROOT_ENV} environment variable) at a folder holding them, "
        "or set dataset.download=true to fetch them from the official mirrors"
    )


def find_files(root: Path) -> tuple[dict[str, Path], list[str]]:
    """``(found, missing)``: the path of each role's file (the raw file when both it and the
    ``.gz`` exist) and the base names not found."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, name in FILES.items():
        hit = next((p for p in (root / name, root / f"{name}.gz") if p.is_file()), None)
        if hit is None:
            missing.append(name)
        else:
            found[role] = hit
    return found, missing


def download_mnist(
    root: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    timeout_s: float = 30.0,
) -> list[Path]:
    """Fetch ``<name>.gz`` for each of ``names`` (default: all four) into ``root``.

    Each mirror is tried in order; a download counts only when its MD5 equals :data:`GZ_MD5`,
    and it is written atomically (temporary file, then rename).

    Raises:
        UserInputError: when a file could not be fetched from any mirror (offline, blocked,
            moved); the message lists the attempts and where to put the files by hand.
    """
    root = resolve_root(root)
    mirrors = MIRRORS if mirrors is None else tuple(mirrors)
    names = list(FILES.values()) if names is None else list(names)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserInputError(
            f"cannot create the MNIST folder {root} for downloading ({err}); {_where_to_put(root)}"
        ) from err
    written: list[Path] = []
    for name in names:
        failures: list[str] = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{name}.gz"
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as response:
                    blob = response.read()
            except (urllib.error.URLError, OSError, ValueError) as err:
                failures.append(f"{url}: {err}")
                continue
            digest = hashlib.md5(blob).hexdigest()
            if digest != GZ_MD5[name]:
                failures.append(f"{url}: MD5 {digest}, expected {GZ_MD5[name]}")
                continue
            target = root / f"{name}.gz"
            try:
                with tempfile.NamedTemporaryFile(dir=root, delete=False, suffix=".part") as tmp:
                    tmp.write(blob)
                os.replace(tmp.name, target)
            except OSError as err:
                raise UserInputError(
                    f"cannot write {target} ({err}); {_where_to_put(root)}"
                ) from err
            log.info("downloaded %s (%d bytes) from %s", target, len(blob), url)
            written.append(target)
            break
        else:
            tried = "; ".join(failures) or "no mirrors configured"
            raise UserInputError(
                f"could not download MNIST file {name}.gz (offline?). Tried: {tried}. "
                f"{_where_to_put(root)}"
            )
    return written


def read_mnist(
    root: str | os.PathLike[str],
    *,
    verify: bool = True,
    download: bool = False,
    timeout_s: float = 30.0,
) -> MNISTArrays:
    """Read (and with ``verify`` check) the four MNIST files in ``root``.

    Args:
        root: folder with the files (``.gz`` or raw; relative: against the current directory).
        verify: compare each file's MD5 with :data:`GZ_MD5` / :data:`RAW_MD5`. Structure
            (magic numbers, dimensions, byte lengths, 28x28 images, one label 0..9 per image)
            is checked either way.
        download: fetch missing files with :func:`download_mnist` first.
        timeout_s: per-attempt download timeout in seconds.

    Raises:
        UserInputError: a missing folder or file (the message lists the four files and where to
            put them), a truncated or corrupt file, or a checksum mismatch.
    """
    root = resolve_root(root)
    if not root.is_dir() and not download:
        raise UserInputError(f"MNIST folder {root} does not exist; {_where_to_put(root)}")
    found, missing = find_files(root) if root.is_dir() else ({}, list(FILES.values()))
    if missing and download:
        download_mnist(root, missing, timeout_s=timeout_s)
        found, missing = find_files(root)
    if missing:
        raise UserInputError(
            f"MNIST files missing in {root}: {', '.join(missing)} (looked for NAME and "
            f"NAME.gz); {_where_to_put(root)}"
        )
    arrays: dict[str, np.ndarray] = {}
    for role, path in found.items():
        blob = path.read_bytes()
        magic = IMAGES_MAGIC if role.endswith("images") else LABELS_MAGIC
        arrays[role] = _parse_idx(path, _decompressed(path, blob), expected_magic=magic)
        if verify:
            _verify_md5(path, blob)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise UserInputError(
                f"MNIST file {found[f'{split}_images']}: images are {images.shape[1:]}, "
                f"expected {IMAGE_SIDE}x{IMAGE_SIDE}"
            )
        if len(images) != len(labels):
            raise UserInputError(
                f"MNIST {split} files disagree: {len(images)} images in "
                f"{found[f'{split}_images']}, {len(labels)} labels in {found[f'{split}_labels']}"
            )
        if labels.size and int(labels.max()) >= N_CLASSES:
            raise UserInputError(
                f"MNIST file {found[f'{split}_labels']}: label {int(labels.max())} is not a "
                "digit 0..9"
            )
    return MNISTArrays(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        files=dict(found),
        verified=verify,
    )


def _verify_md5(path: Path, blob: bytes) -> None:
    gz = path.suffix == ".gz"
    name = path.name[: -len(".gz")] if gz else path.name
    expected = (GZ_MD5 if gz else RAW_MD5)[name]
    digest = hashlib.md5(blob).hexdigest()
    if digest != expected:
        raise UserInputError(
            f"MNIST file {path}: MD5 checksum mismatch (got {digest}, official "
            f"{expected}); the file is corrupt or not the original. Replace it with an official "
            "copy, or set dataset.verify_checksums=false if you modified it on purpose"
        )


# ----------------------------------------------------------------------------------- table


def public_domain() -> Any:
    """The public domain of the released table: every pixel in [0, 255], label in 0..9.

    Both follow from the IDX format (unsigned bytes) and the task (ten digits); nothing is
    read from the images.
    """
    from dpshare.data.transformer import PublicDomain

    return PublicDomain(
        bounds={column: (0.0, 255.0) for column in PIXEL_COLUMNS},
        categories={TARGET_COLUMN: tuple(range(N_CLASSES))},
    )


def load_mnist(cfg: Any, *, max_records: int | None) -> TabularData:
    """MNIST as a flat :class:`TabularData` (docs/mnist.md).

    Args:
        cfg: a ``dataset`` config node (:class:`MNISTConfig` fields).
        max_records: cap on the number of images: a stratified (by label) random subset seeded
            by ``split_seed``; ``predefined_test`` stays aligned (``None``: all 70,000).

    Returns:
        ``frame``: ``px_000`` ... ``px_783`` (uint8, row-major) and ``label`` (int64); index
        ``record_id`` (``train-00000`` ... ``train-59999``, ``test-00000`` ... ``test-09999``);
        ``predefined_test``: the official t10k images; ``public_domain`` from
        :func:`public_domain`; pixels continuous, ``label`` categorical.
    """
    s = mnist_settings(cfg)
    arrays = read_mnist(
        s.root, verify=s.verify_checksums, download=s.download, timeout_s=s.download_timeout_s
    )
    n_train, n_test = len(arrays.train_labels), len(arrays.test_labels)
    pixels = np.concatenate(
        [
            arrays.train_images.reshape(n_train, N_PIXELS),
            arrays.test_images.reshape(n_test, N_PIXELS),
        ]
    )
    record_ids = [f"train-{i:05d}" for i in range(n_train)] + [
        f"test-{i:05d}" for i in range(n_test)
    ]
    frame = pd.DataFrame(
        pixels, columns=list(PIXEL_COLUMNS), index=pd.Index(record_ids, name=ID_COLUMN)
    )
    frame[TARGET_COLUMN] = np.concatenate([arrays.train_labels, arrays.test_labels]).astype(
        np.int64
    )
    predefined_test = np.zeros(n_train + n_test, dtype=bool)
    predefined_test[n_train:] = True
    column_kinds = {column: "continuous" for column in PIXEL_COLUMNS}
    data = TabularData(
        name="mnist",
        frame=frame,
        target=TARGET_COLUMN,
        positive_label=s.positive_label,
        column_kinds=column_kinds,
        public_domain=public_domain(),
        predefined_test=predefined_test,
        sequences=None,
    )
    data = data.subsample(max_records, seed=s.split_seed)
    assert data.predefined_test is not None
    n, n_official_test = len(data.frame), int(np.count_nonzero(data.predefined_test))
    data.description = (
        f"MNIST handwritten digits: {n} images of {IMAGE_SIDE}x{IMAGE_SIDE} uint8 pixels as "
        f"{N_PIXELS} columns ({n_official_test} from the official test set); target "
        f"{TARGET_COLUMN} (10 classes; digit {s.positive_label} positive for binary metrics)"
    )
    return data
