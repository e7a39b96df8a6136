"""A finished run is a generator you can load and sample from: no retraining, no extra privacy.

Every generator run (``standard_gan``, ``multidisc_gan``, ``dp_wgan``) saves, next to
``model.pt``, one versioned **generator artifact** in its run directory (docs/sampling.md):

- ``generator.json``: format name and version, the method's resolved config, the released
  schema (columns and dtypes, target, classes, label dtype), the class prior the generator draws
  labels from, the fitted transformer (:meth:`~dpshare.data.transformer.TabularTransformer.
  to_dict`: encoders, dtypes, the DP release and its statistics), the method's own sampling
  state (e.g. ``multidisc_gan``'s heads and condition priors), the fit-time sample's size, seed
  and options, a manifest of the tensors, and where each saved statistic was charged in the
  privacy ledger;
- ``generator.pt``: ``{"generator": {name: tensor}}``, the released generator's weights and
  buffers as plain tensors, read back with ``torch.load(weights_only=True)``.

Nothing is pickled, so loading a record cannot run code. The SHA-256 of both files is recorded
in ``run.json`` (``artifact_sha256``, beside ``synthetic.parquet``'s), and :func:`load_run`
refuses a file that changed after the run.

:func:`load_run` rebuilds the method for sampling around a :class:`SavedDataModule` that holds
the released statistics and no real record: it reads no real data, and :meth:`sample
<dpshare.models.base.SyntheticDataMethod.sample>` on it is post-processing of the DP generator
and of statistics already charged to the run's ledger, so it spends no privacy. With the same
seed on the same CPU settings it reproduces the in-process sample bit for bit (the Gumbel noise of
categorical columns is drawn from the sampling seed, :mod:`dpshare.models.networks`).
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from dpshare.data.datamodule import decode_rows, decode_windows
from dpshare.data.transformer import (
    OutputSpan,
    TabularTransformer,
    dtype_from_json,
    dtype_to_json,
    value_from_json,
    value_to_json,
)
from dpshare.errors import UserInputError
from dpshare.reporting import records

__all__ = [
    "FORMAT",
    "JSON_FILE",
    "TENSOR_FILE",
    "VERSION",
    "ArtifactError",
    "LoadedRun",
    "SavedDataModule",
    "SavedSchema",
    "load_run",
    "write_artifact",
]

FORMAT = "dpshare-generator"
VERSION = 1
JSON_FILE = "generator.json"
TENSOR_FILE = "generator.pt"

_RETRAIN = "train the run again (python -m dpshare.train with its config_resolved.yaml)"


class ArtifactError(UserInputError):
    """A run directory that cannot be loaded for sampling; the message names the problem and
    the fix. Entry points print it as one line and exit with status 2."""


# ------------------------------------------------------------------------- the saved data


@dataclass
class SavedSchema:
    """The released schema of a dataset, as a loaded run knows it: names and dtypes only.

    ``frame`` has the original columns, in order, with their dtypes and **no rows**; it stands
    in for :attr:`dpshare.data.base.TabularData.frame` where only the schema is used."""

    name: str
    target: str
    positive_label: Any
    frame: pd.DataFrame
    sequence_features: list[str] = field(default_factory=list)
    sequences: None = None  # a saved run holds no real windows
    public_domain: None = None

    @property
    def feature_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != self.target]


class SavedDataModule:
    """What sampling needs from a :class:`~dpshare.data.datamodule.TabularDataModule`, rebuilt
    from a generator artifact: the fitted transformer, the classes and their released prior,
    the label dtype, the public bounds of generated windows, and (``multidisc_gan`` in a
    non-private run that read them) the marginals ``refine.match_marginals`` targets.

    It holds no real record and no ledger: ``train_frame``, ``x_train`` and ``s_train`` are
    ``None``, and any attempt to charge the ledger is a programming error."""

    train_frame: None = None
    x_train: None = None
    s_train: None = None

    def __init__(
        self,
        *,
        data: SavedSchema,
        transformer: TabularTransformer,
        classes: np.ndarray,
        label_dtype: Any,
        class_prior: np.ndarray,
        sequence_bounds: np.ndarray | None,
        seed: int,
    ) -> None:
        self.data = data
        self.transformer = transformer
        self.classes = classes
        self.label_dtype = label_dtype
        self.class_prior = class_prior
        self.sequence_bounds = sequence_bounds
        self.seed = seed
        self.released_marginals: dict[str, dict[str, float]] | None = None
        # set by the methods' prepare hooks; meaningless without real records
        self.public_scaling = False
        self.use_sequences = False

    @property
    def ledger(self) -> Any:
        raise RuntimeError(
            "a run loaded for sampling reads no real record, so nothing may be charged to a "
            "privacy ledger; this code path needs the fitted in-process method"
        )

    @property
    def output_spans(self) -> list[OutputSpan]:
        return self.transformer.output_spans

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def decode(self, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
        """Generator output -> table in the released schema (as the fitted DataModule does)."""
        return decode_rows(
            x,
            y,
            transformer=self.transformer,
            classes=self.classes,
            label_dtype=self.label_dtype,
            target=self.data.target,
            columns=list(self.data.frame.columns),
        )

    def decode_sequences(self, scaled: np.ndarray) -> np.ndarray:
        if self.sequence_bounds is None:
            raise ArtifactError("the saved run has no window bounds, so it cannot decode windows")
        return decode_windows(scaled, self.sequence_bounds)

    def saved_marginals(self, columns: Sequence[str]) -> dict[str, dict[str, float]]:
        """The category frequencies ``refine.match_marginals`` targets, as the run released
        them; a run that never released them (non-private, never used) refuses."""
        if self.released_marginals is None:
            raise ArtifactError(
                "refine.match_marginals needs released category frequencies; this run was "
                "fitted without a DP transformer release and never read the train split's "
                "marginals, and a loaded run reads no real record: sample with "
                "refine={match_marginals: false}, or train with privacy.transformer_fit=dp"
            )
        saved = self.released_marginals
        return {c: dict(saved[c]) for c in columns if c in saved}


# ----------------------------------------------------------------------------- writing


def _options_to_json(options: Mapping[str, Any]) -> dict[str, Any]:
    """Sampling options with typed keys/values (class values may be ints, bools, strings)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in ("class_mix", "conditions") and isinstance(value, Mapping):
            out[key] = [[value_to_json(k), value_to_json(v)] for k, v in value.items()]
        else:
            out[key] = value
    return out


def _options_from_json(options: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in ("class_mix", "conditions") and isinstance(value, list):
            out[key] = {value_from_json(k): value_from_json(v) for k, v in value}
        else:
            out[key] = value
    return out


def _ledger_sources(ledger: Any) -> dict[str, str]:
    """Ledger module -> mechanism of every access the saved statistics may come from."""
    return {str(e.module): str(e.mechanism) for e in ledger.entries}


def build_document(
    *, cfg: DictConfig, method: Any, datamodule: Any, ledger: Any, weights: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON part of the artifact (see the module docstring)."""
    dm = datamodule
    data = dm.data
    generation = {
        key: OmegaConf.to_container(cfg.method[key], resolve=True)
        for key in ("class_mix", "conditions")
        if cfg.method.get(key)
    }
    bounds = dm.sequence_bounds
    classes = np.asarray(dm.classes)
    sources = _ledger_sources(ledger)
    transformer = dm.transformer.to_dict()
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "method": str(cfg.method.name),
        "method_config": OmegaConf.to_container(cfg.method, resolve=True),
        "sampling_state": method.sampling_state(),
        "data": {
            "dataset": str(cfg.dataset.name),
            "target": str(data.target),
            "positive_label": value_to_json(data.positive_label),
            "columns": [[str(c), dtype_to_json(t)] for c, t in data.frame.dtypes.items()],
            "classes": {
                "values": [value_to_json(c) for c in classes.tolist()],
                "dtype": str(classes.dtype),
            },
            "label_dtype": dtype_to_json(dm.label_dtype),
            "class_prior": [float(p) for p in np.asarray(dm.class_prior, dtype=np.float64)],
            "sequence_features": list(data.sequence_features) if bounds is not None else [],
            "sequence_bounds": None if bounds is None else np.asarray(bounds).tolist(),
            "seed": int(dm.seed),
        },
        "transformer": transformer,
        "fit_sample": {
            "n": int(cfg.method.sample_size or dm.n_train),
            "seed": int(cfg.seed),
            "options": _options_to_json(generation),
        },
        "weights": {
            "file": TENSOR_FILE,
            "tensors": {
                name: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
                for name, t in weights.items()
            },
        },
        "provenance": {
            "differentially_private": bool(ledger.is_private),
            "transformer": {
                "fit": transformer["fit"],
                "ledger": sources.get("transformer"),
            },
            "class_prior": {"ledger": sources.get("label_distribution")},
            "condition_priors": {
                "ledger": sources.get("condition_marginals", sources.get("transformer"))
            },
            "generator": "weights of the released generator, trained by post-processing of "
            "the discriminator (its DP-SGD steps are in the ledger); reads no real record",
            "ledger_modules": sources,
        },
    }


def write_artifact(
    run_dir: Path,
    *,
    cfg: DictConfig,
    method: Any,
    datamodule: Any,
    ledger: Any,
    run_info: dict[str, Any],
) -> dict[str, str]:
    """Save the generator artifact of a fitted generator method into ``run_dir`` (atomic
    writes) and record both files' SHA-256 in ``run_info["artifact_sha256"]`` (``run.json``).
    Returns the digests."""
    run_dir = Path(run_dir)
    state = method.state_dict()["generator"]
    weights = {str(k): v.detach().cpu().clone() for k, v in state.items()}
    records.write_torch(run_dir / TENSOR_FILE, {"generator": weights})
    document = build_document(
        cfg=cfg, method=method, datamodule=datamodule, ledger=ledger, weights=weights
    )
    document["weights"]["sha256"] = records.file_sha256(run_dir / TENSOR_FILE)
    records.write_json(run_dir / JSON_FILE, document)
    digests = {
        JSON_FILE: records.file_sha256(run_dir / JSON_FILE),
        TENSOR_FILE: document["weights"]["sha256"],
    }
    run_info.setdefault("artifact_sha256", {}).update(digests)
    return digests


# ----------------------------------------------------------------------------- loading


@dataclass
class LoadedRun:
    """A run directory loaded for sampling: the rebuilt method, the run's records and the
    artifact's JSON part."""

    run_dir: Path
    method: Any
    metrics: dict[str, Any]
    run: dict[str, Any]
    document: dict[str, Any]

    @property
    def fit_sample(self) -> dict[str, Any]:
        """``n``, ``seed`` and the options (``class_mix``, ``conditions``) of the run's own
        synthetic table: ``method.sample(fit["n"], seed=fit["seed"], **fit["options"])``
        reproduces ``synthetic.parquet``."""
        fit = self.document["fit_sample"]
        return {"n": fit["n"], "seed": fit["seed"], "options": _options_from_json(fit["options"])}


def _read_record_json(path: Path, *, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{what} is unreadable ({path}: {exc}); {_RETRAIN}") from exc


def _check_complete(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not run_dir.is_dir():
        raise ArtifactError(f"no run directory at {run_dir}")
    run_path = run_dir / records.RUN_FILE
    if not run_path.is_file():
        raise ArtifactError(
            f"{run_dir} is not a run directory (no {records.RUN_FILE}); give the directory "
            "python -m dpshare.train wrote"
        )
    run = _read_record_json(run_path, what=records.RUN_FILE)
    status = run.get("status") if isinstance(run, dict) else None
    if status != "complete":
        raise ArtifactError(
            f"the run in {run_dir} is not complete (run.json status {status!r}); a generator "
            "is saved only by a finished run: run the training again to completion "
            "(python -m dpshare.train ...)"
        )
    metrics_path = run_dir / records.METRICS_FILE
    if not metrics_path.is_file():
        raise ArtifactError(
            f"the run in {run_dir} is not complete (no {records.METRICS_FILE}, which is written "
            f"last); run the training again to completion"
        )
    metrics = _read_record_json(metrics_path, what=records.METRICS_FILE)
    if not isinstance(metrics, dict):
        raise ArtifactError(f"{metrics_path} is not a JSON object; {_RETRAIN}")
    return run, metrics


def _check_generator_run(run_dir: Path, run: dict[str, Any], metrics: dict[str, Any]) -> None:
    from dpshare.models import METHODS
    from dpshare.models.base import ReleasedModelMethod

    method = run.get("method")
    released_model = metrics.get("data/artifact") == "model"
    if not released_model and isinstance(method, str) and method in METHODS.names():
        released_model = issubclass(METHODS.get(method), ReleasedModelMethod)
    if released_model:
        raise ArtifactError(
            f"the run in {run_dir} (method {method}) released a classifier (model.pt), not a "
            "generator: there is nothing to sample; load a synthetic-data method's run "
            "(standard_gan, multidisc_gan, dp_wgan)"
        )
    if isinstance(method, str) and method in METHODS.names():
        method_cls = METHODS.get(method)
        if not getattr(method_cls, "saves_generator", True):
            # a peer library's model (docs/peers.md): its synthetic.parquet is the release
            raise ArtifactError(
                f"method={method} cannot be rebuilt from a saved run: the run in {run_dir} was "
                f"fitted by an external library ({getattr(method_cls, 'library', 'a peer')}), "
                "whose model dpshare does not save; release its synthetic.parquet "
                "(python -m dpshare.release without --sample), or train it again with a larger "
                "method.sample_size"
            )


def _check_digests(run_dir: Path, run: dict[str, Any]) -> None:
    recorded = run.get("artifact_sha256")
    digests: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    for name in (JSON_FILE, TENSOR_FILE):
        expected = digests.get(name)
        if not isinstance(expected, str):
            raise ArtifactError(
                f"run.json in {run_dir} records no sha256 for {name}: the record is from an "
                f"older dpshare or run.json was replaced, so the saved generator cannot be "
                f"verified; {_RETRAIN}"
            )
        path = run_dir / name
        if not path.is_file():
            raise ArtifactError(
                f"{name} is missing from {run_dir} although run.json records it; the run "
                f"record is incomplete or was altered: restore the file, or {_RETRAIN}"
            )
        now = records.file_sha256(path)
        if now != expected:
            raise ArtifactError(
                f"{name} in {run_dir} changed after the run (sha256 {now[:12]}... now, "
                f"{expected[:12]}... recorded in run.json); the saved generator was altered or "
                f"replaced: load an untouched run directory, or {_RETRAIN}"
            )


def _read_document(run_dir: Path) -> dict[str, Any]:
    document = _read_record_json(run_dir / JSON_FILE, what=JSON_FILE)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise ArtifactError(
            f"{JSON_FILE} in {run_dir} is not a {FORMAT} artifact (format {found!r}); {_RETRAIN}"
        )
    version = document.get("version")
    if version != VERSION:
        raise ArtifactError(
            f"{JSON_FILE} in {run_dir} is artifact version {version!r}, and this dpshare reads "
            f"version {VERSION} only (format {FORMAT}); sample it with the dpshare version that "
            f"made it (run.json environment), or {_RETRAIN}"
        )
    return document


def _read_weights(run_dir: Path, document: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    path = run_dir / TENSOR_FILE
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unreadable or non-tensor file: never unpickled
        raise ArtifactError(
            f"{TENSOR_FILE} in {run_dir} is not a tensor file loadable with "
            f"weights_only=True ({type(exc).__name__}: {exc}); {_RETRAIN}"
        ) from exc
    weights = saved.get("generator") if isinstance(saved, dict) else None
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise ArtifactError(
            f"{TENSOR_FILE} in {run_dir} does not hold {{'generator': {{name: tensor}}}}; "
            f"{_RETRAIN}"
        )
    manifest = document.get("weights", {}).get("tensors", {})
    actual = {
        k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)}
        for k, v in weights.items()
    }
    if actual != manifest:
        raise ArtifactError(
            f"the tensors in {TENSOR_FILE} do not match the manifest in {JSON_FILE} "
            f"({len(actual)} vs {len(manifest)} tensors, or other dtypes or shapes); {_RETRAIN}"
        )
    return weights


def _saved_datamodule(document: Mapping[str, Any]) -> SavedDataModule:
    data = document["data"]
    columns = [(str(name), dtype_from_json(dt)) for name, dt in data["columns"]]
    frame = pd.DataFrame({name: pd.Series([], dtype=dt) for name, dt in columns})
    schema = SavedSchema(
        name=str(data["dataset"]),
        target=str(data["target"]),
        positive_label=value_from_json(data["positive_label"]),
        frame=frame,
        sequence_features=[str(f) for f in data["sequence_features"]],
    )
    values = [value_from_json(v) for v in data["classes"]["values"]]
    classes = np.array(values, dtype=np.dtype(data["classes"]["dtype"]))
    bounds = data["sequence_bounds"]
    return SavedDataModule(
        data=schema,
        transformer=TabularTransformer.from_dict(document["transformer"]),
        classes=classes,
        label_dtype=dtype_from_json(data["label_dtype"]),
        class_prior=np.asarray(data["class_prior"], dtype=np.float64),
        sequence_bounds=None if bounds is None else np.asarray(bounds, dtype=float),
        seed=int(data["seed"]),
    )


def _rebuild_method(
    run_dir: Path, document: Mapping[str, Any], weights: Mapping[str, torch.Tensor]
) -> Any:
    from dpshare.models import METHODS
    from dpshare.registry import UnknownNameError

    name = str(document["method"])
    try:
        method_cls = METHODS.get(name)
    except UnknownNameError as exc:
        raise ArtifactError(f"{JSON_FILE} in {run_dir} names {exc}; {_RETRAIN}") from exc
    cfg = OmegaConf.create(document["method_config"])
    try:
        datamodule = _saved_datamodule(document)
        method = method_cls.for_sampling(cfg, datamodule, document["sampling_state"])
        method.load_snapshot_state({"generator": dict(weights)})
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        # a KeyError of a missing field, or load_state_dict's RuntimeError on a mismatch
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(
            f"the saved generator in {run_dir} cannot be rebuilt ({type(exc).__name__}: "
            f"{message}); {_RETRAIN}"
        ) from exc
    return method


def load_run(run_dir: str | Path) -> LoadedRun:
    """Load a complete generator run for sampling (see the module docstring).

    Raises :class:`ArtifactError` (one line naming the problem and the fix) for a missing or
    incomplete run, a run that released a classifier (``dp_lr``, ``fedavg``), a record made
    before generators were saved or by another artifact version, and an artifact whose SHA-256
    differs from the one recorded in ``run.json``. Reads no real data."""
    run_dir = Path(run_dir)
    run, metrics = _check_complete(run_dir)
    _check_generator_run(run_dir, run, metrics)
    if not (run_dir / JSON_FILE).is_file():
        older = (run_dir / records.MODEL_FILE).is_file()
        raise ArtifactError(
            f"the run in {run_dir} has no saved generator ({JSON_FILE}): "
            + (
                f"it was recorded before dpshare saved generators (format {FORMAT} version "
                f"{VERSION}), and {records.MODEL_FILE} alone lacks the transformer and the "
                "released statistics sampling needs; "
                if older
                else "the record is incomplete; "
            )
            + _RETRAIN
        )
    _check_digests(run_dir, run)
    document = _read_document(run_dir)
    weights = _read_weights(run_dir, document)
    method = _rebuild_method(run_dir, document, weights)
    return LoadedRun(run_dir=run_dir, method=method, metrics=metrics, run=run, document=document)


# ------------------------------------------------------------------ sampling options (CLI)


def parse_mapping_option(text: str | None, flag: str) -> dict[Any, Any] | None:
    """A ``--class-mix`` / ``--conditions`` / ``--refine`` value: a YAML (or JSON) mapping
    such as ``'{1: 0.3, 0: 0.7}'`` (safe YAML: no objects are built). ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise UserInputError(f"{flag} {text!r} is not a mapping ({problem})") from exc
    if not isinstance(value, dict) or not value:
        raise UserInputError(
            f"{flag} {text!r} is not a non-empty mapping; give e.g. '{{1: 0.3, 0: 0.7}}'"
        )
    return value


def match_class_keys(class_mix: Mapping[Any, Any], classes: np.ndarray) -> dict[Any, float]:
    """``class_mix`` with each key replaced by the class it names (``"1"`` names class ``1``),
    shares as floats; a key that names no class is kept (the method's error lists the
    classes), a share that is not a finite number >= 0 raises."""
    known = [c.item() if hasattr(c, "item") else c for c in classes]
    out: dict[Any, float] = {}
    for key, share in class_mix.items():
        try:
            value = float(share)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise UserInputError(
                f"class mix share for {key!r} must be a number >= 0, got {share!r}"
            )
        match = next((c for c in known if c == key and type(c) is type(key)), None)
        if match is None:
            match = next((c for c in known if str(c) == str(key)), key)
        out[match] = value
    return out
