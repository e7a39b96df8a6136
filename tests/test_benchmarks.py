"""The step benchmark (benchmarks/bench_dp_step.py) on tiny models with tiny repeat counts:
report structure, every Opacus mode timed or listed as unsupported with its reason, ratios
positive, JSON and Markdown written. Seconds on a CPU; ``make bench`` runs the real thing."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT

BENCH = REPO_ROOT / "benchmarks" / "bench_dp_step.py"
# multidisc_gan: ~700 train records, 40 real + 40 generated rows, a 16-unit trunk
MD_TINY = [
    "method.discriminator_dims=[16]",
    "method.generator_dims=[16]",
    "method.head_hidden=8",
    "method.rff_features=8",
]


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_dp_step", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load_bench()


@pytest.fixture(autouse=True, scope="module")
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory) -> Path:
    """A tiny MNIST in the official IDX format (synthetic strokes), so the test needs no
    download and no shared dataset."""
    from dpshare.data.mnist import FILES, write_idx

    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    sizes = {"train": 300, "test": 50}
    for role, name in FILES.items():
        split, kind = role.split("_")
        n = sizes[split]
        if kind == "images":
            array = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        else:
            array = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / name, array)
    return root


def _check_model(result: dict, bench: ModuleType) -> None:
    variants = result["variants"]
    assert list(variants) == list(bench.VARIANTS), "every mode is listed, in order"
    base = variants[bench.NON_PRIVATE]
    assert base["status"] == "ok"
    for name, v in variants.items():
        assert v["status"] in ("ok", "unsupported"), name
        if v["status"] == "unsupported":
            assert name != bench.NON_PRIVATE
            assert isinstance(v["reason"], str) and v["reason"].strip(), name
            continue
        assert v["min_ms"] <= v["q1_ms"] <= v["median_ms"] <= v["q3_ms"] <= v["max_ms"]
        assert v["min_ms"] > 0
        assert len(v["times_ms"]) == result["repeats"]
        assert set(v["phases_median_ms"]) == {"forward", "backward", "optimizer"}
        if name != bench.NON_PRIVATE:
            assert v["ratio_median"] > 0
            assert v["ratio_median"] == pytest.approx(v["median_ms"] / base["median_ms"])
            assert v["meets_target"] == (v["ratio_median"] <= bench.TARGET_RATIO)
            assert v["ledger_check_median_ms"] >= 0
            assert v["built_by"]
    # the project's default mode (book-keeping), Opacus ghost and per-sample hooks work for both
    assert result["project_default_mode"] == "bk"
    assert variants["bk"]["status"] == "ok"
    assert variants["ghost"]["status"] == "ok"
    assert variants["hooks"]["status"] == "ok"
    assert result["fastest_dp_mode"] in bench.DP_MODES


def test_step_benchmark_report_structure(bench: ModuleType, tiny_mnist: Path, tmp_path) -> None:
    report = bench.run(
        models=["multidisc_gan", "dp_wgan"],
        warmup=1,
        repeats=3,
        threads=1,
        batch_size=40,
        max_records=1000,
        overrides={
            "multidisc_gan": MD_TINY,
            "dp_wgan": [
                f"dataset.root={tiny_mnist}",
                "dataset.verify_checksums=false",
                "method.critic_channels=4",
            ],
        },
    )
    assert report["machine"]["torch_threads"] == 1
    assert report["machine"]["cpu_model"]
    assert set(report["models"]) == {"multidisc_gan", "dp_wgan"}
    for result in report["models"].values():
        _check_model(result, bench)
        assert result["rows_per_step"] == 80  # 40 real + 40 generated
        assert result["batch_source"] == "--batch-size"
    md = report["models"]["multidisc_gan"]
    assert md["heads"] == ["statistical", "semantic"]
    assert md["encoded_width"] > 0

    paths = bench.write_reports(report, tmp_path)
    assert [p.name for p in paths] == ["dp_step.json", "dp_step.md"]
    written = json.loads((tmp_path / "dp_step.json").read_text())
    assert written["models"]["dp_wgan"]["variants"]["ghost"]["ratio_median"] > 0
    text = (tmp_path / "dp_step.md").read_text()
    assert "| ghost |" in text and "| hooks |" in text and "| bk |" in text
    assert "Target met by the project default (bk)" in text


def test_a_mode_that_fails_is_listed_with_its_reason(bench: ModuleType) -> None:
    def ok():
        return bench.StepSetup(step=lambda: (1e-4, 1e-4, 1e-4), built_by="test")

    def broken():
        raise RuntimeError("no per-sample gradients for this layer")

    result = bench.bench_model(
        "toy", {bench.NON_PRIVATE: ok, "hooks": ok, "ew": broken}, warmup=0, repeats=2
    )
    assert result["variants"]["ew"] == {
        "status": "unsupported",
        "reason": "RuntimeError: no per-sample gradients for this layer",
    }
    assert result["variants"]["hooks"]["ratio_median"] > 0
    with pytest.raises(ValueError, match="non_private"):
        bench.bench_model("toy", {"hooks": ok}, warmup=0, repeats=1)
    with pytest.raises(ValueError, match="repeats"):
        bench.time_variants({"x": ok()}, warmup=0, repeats=0)


def test_summary_statistics_have_known_values(bench: ModuleType) -> None:
    stats = bench.summarize([0.004, 0.001, 0.003, 0.002, 0.005])  # seconds
    assert stats["median_ms"] == pytest.approx(3.0)
    assert stats["q1_ms"] == pytest.approx(2.0)
    assert stats["q3_ms"] == pytest.approx(4.0)
    assert (stats["min_ms"], stats["max_ms"]) == pytest.approx((1.0, 5.0))
