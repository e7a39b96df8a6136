"""Noise controllers (fixed, PID, WGAN feedback): bounds, smoothness, known answers, argument
errors, the history record, and the contract with the config schema and the privacy plan."""

from __future__ import annotations

import ast
import inspect
import math
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpshare.errors import UserInputError
from dpshare.privacy import controllers
from dpshare.privacy.controllers import (
    CONTROLLERS,
    FixedController,
    NoiseController,
    PIDController,
    WGANFeedbackController,
    generated_similarity,
    make_controller,
    signal_quality,
)
from dpshare.registry import UnknownNameError

BASE_HISTORY_KEYS = {"step", "noise_multiplier", "max_grad_norm", "n_ignored"}
PID_SIGNALS = ("disc_accuracy", "frechet_distance", "val_utility")
ALL_WEIGHTS = {"disc_accuracy": 1.0, "frechet_distance": 1.0, "val_utility": 1.0}

# Any float, NaN and +-inf included, for any known signal and one nobody reads.
signal_values = st.floats(allow_nan=True, allow_infinity=True, width=64)
signal_traces = st.lists(
    st.dictionaries(
        keys=st.sampled_from([*PID_SIGNALS, "generated_similarity", "utility", "unread"]),
        values=signal_values,
    ),
    min_size=1,
    max_size=60,
)


@st.composite
def pid_kwargs(draw: st.DrawFn) -> dict:
    sigma_min = draw(st.floats(0.05, 5.0))
    sigma_max = sigma_min + draw(st.floats(0.0, 10.0))
    return {
        "sigma_min": sigma_min,
        "sigma_max": sigma_max,
        "max_grad_norm": 1.0,
        "kp": draw(st.floats(0.0, 20.0)),
        "ki": draw(st.floats(0.0, 5.0)),
        "kd": draw(st.floats(0.0, 5.0)),
        "window": draw(st.integers(1, 10)),
        "setpoint": draw(st.floats(0.0, 1.0)),
        "max_step_change": draw(st.floats(0.001, 5.0)),
        "integral_limit": draw(st.floats(0.0, 10.0)),
        "fd_scale": draw(st.floats(0.01, 100.0)),
        "signal_weights": ALL_WEIGHTS,
    }


def pid(**overrides: object) -> PIDController:
    kwargs: dict = {
        "sigma_min": 0.5,
        "sigma_max": 2.0,
        "max_grad_norm": 1.0,
        "kp": 1.0,
        "ki": 0.1,
        "kd": 0.05,
        "window": 3,
        "setpoint": 0.5,
        "max_step_change": 0.25,
        "integral_limit": 2.0,
        "signal_weights": ALL_WEIGHTS,
    }
    kwargs.update(overrides)
    return PIDController(**kwargs)


def feedback(**overrides: object) -> WGANFeedbackController:
    kwargs: dict = {
        "sigma_min": 1.0,
        "sigma_max": 4.0,
        "clip_min": 0.5,
        "clip_max": 1.0,
        "similarity_threshold": 0.9,
        "sigma_factor": 0.5,
        "clip_factor": 0.8,
        "patience": 3,
    }
    kwargs.update(overrides)
    return WGANFeedbackController(**kwargs)


# ------------------------------------------------------------------------------ similarity


def test_generated_similarity_known_values() -> None:
    zeros, ones = np.zeros((4, 3)), np.ones((4, 3))
    assert generated_similarity(zeros, zeros) == 1.0
    assert generated_similarity(zeros, ones) == pytest.approx(0.5)  # rms 1
    assert generated_similarity(zeros, 3.0 * ones) == pytest.approx(0.25)  # rms 3
    # per-element RMS: independent of batch size and feature count
    assert generated_similarity(np.zeros((100, 50)), np.ones((100, 50))) == pytest.approx(0.5)
    assert math.isnan(generated_similarity(zeros, np.full((4, 3), np.nan)))
    assert generated_similarity(zeros, np.full((4, 3), 1e300)) == 0.0  # overflow: 0, not nan


def test_generated_similarity_rejects_mismatched_or_empty_batches() -> None:
    with pytest.raises(ValueError, match="same shape"):
        generated_similarity(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="empty"):
        generated_similarity(np.zeros((0, 3)), np.zeros((0, 3)))


finite_batches = st.integers(1, 6).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n),
        st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(pair=finite_batches)
def test_generated_similarity_is_bounded_symmetric_and_one_on_identity(pair) -> None:
    a, b = (np.asarray(x).reshape(-1, 1) for x in pair)
    s = generated_similarity(a, b)
    assert 0.0 <= s <= 1.0
    assert s == generated_similarity(b, a)
    assert generated_similarity(a, a) == 1.0
    if np.max(np.abs(a - b)) > 1e-6:  # tinier differences may round to exactly 1
        assert s < 1.0


# -------------------------------------------------------------------------------- qualities


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("disc_accuracy", 0.5, 1.0),
        ("disc_accuracy", 0.75, 0.5),
        ("disc_accuracy", 0.25, 0.5),
        ("disc_accuracy", 1.0, 0.0),
        ("disc_accuracy", 0.0, 0.0),
        ("disc_accuracy", 1.7, 0.0),  # out of range (noisy): clipped
        ("frechet_distance", 0.0, 1.0),
        ("frechet_distance", 2.0, math.exp(-1.0)),  # fd_scale = 2
        ("frechet_distance", -0.1, 1.0),  # numerically negative: 0
        ("val_utility", 0.5, 0.0),
        ("val_utility", 0.75, 0.5),
        ("val_utility", 1.0, 1.0),
        ("val_utility", 0.2, 0.0),
    ],
)
def test_signal_quality_normalisations(name: str, value: float, expected: float) -> None:
    assert signal_quality(name, value, fd_scale=2.0) == pytest.approx(expected)


def test_signal_quality_unknown_signal_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="disc_accuracy, frechet_distance, val_utility"):
        signal_quality("fid", 1.0, fd_scale=1.0)


# ------------------------------------------------------------------------------------- fixed


@settings(max_examples=50, deadline=None)
@given(trace=signal_traces)
def test_fixed_never_changes(trace: list[dict]) -> None:
    controller = FixedController(noise_multiplier=1.3, max_grad_norm=0.7)
    for step, signals in enumerate(trace):
        controller.observe(step, signals)
        assert controller.noise_multiplier == 1.3
        assert controller.max_grad_norm == 0.7
    assert controller.signals_needed() == ()
    assert [h["n_ignored"] for h in controller.history] == [float(len(s)) for s in trace]


# --------------------------------------------------------------------------------------- pid


@settings(max_examples=200, deadline=None)
@given(kwargs=pid_kwargs(), trace=signal_traces)
def test_pid_sigma_stays_in_bounds_moves_smoothly_and_integral_is_bounded(
    kwargs: dict, trace: list[dict]
) -> None:
    controller = PIDController(**kwargs)
    assert controller.noise_multiplier == kwargs["sigma_max"]  # starts high
    previous = controller.noise_multiplier
    for step, signals in enumerate(trace):
        controller.observe(step, signals)
        sigma = controller.noise_multiplier
        assert math.isfinite(sigma)
        assert kwargs["sigma_min"] <= sigma <= kwargs["sigma_max"]
        assert abs(sigma - previous) <= kwargs["max_step_change"] + 1e-12
        assert abs(controller.integral) <= kwargs["integral_limit"]
        assert controller.max_grad_norm == 1.0
        previous = sigma
    assert len(controller.history) == len(trace)


@settings(max_examples=100, deadline=None)
@given(
    quality=st.floats(0.6, 1.0),
    kp=st.floats(0.1, 10.0),
    ki=st.floats(0.0, 2.0),
    kd=st.floats(0.0, 2.0),
    window=st.integers(1, 8),
    max_step_change=st.floats(0.01, 1.0),
)
def test_pid_sustained_high_quality_lowers_sigma_monotonically_to_the_floor(
    quality: float, kp: float, ki: float, kd: float, window: int, max_step_change: float
) -> None:
    controller = pid(
        kp=kp, ki=ki, kd=kd, window=window, max_step_change=max_step_change, setpoint=0.5
    )
    # each update lowers sigma by at least min(max_step_change, kp * (quality - setpoint))
    min_drop = min(max_step_change, kp * (quality - 0.5))
    needed = math.ceil((2.0 - 0.5) / min_drop) + 1
    sigmas = []
    for step in range(needed):
        controller.observe(step, {"val_utility": 0.5 + 0.5 * quality})  # quality q exactly
        sigmas.append(controller.noise_multiplier)
    assert all(b <= a for a, b in zip([2.0, *sigmas], sigmas, strict=False))
    assert sigmas[-1] == 0.5


@settings(max_examples=100, deadline=None)
@given(
    quality=st.floats(0.0, 0.45),
    kp=st.floats(0.0, 10.0),
    ki=st.floats(0.0, 2.0),
    kd=st.floats(0.0, 2.0),
    window=st.integers(1, 8),
    steps=st.integers(1, 50),
)
def test_pid_sustained_low_quality_keeps_sigma_at_the_ceiling(
    quality: float, kp: float, ki: float, kd: float, window: int, steps: int
) -> None:
    controller = pid(kp=kp, ki=ki, kd=kd, window=window, setpoint=0.5)
    for step in range(steps):
        controller.observe(step, {"val_utility": 0.5 + 0.5 * quality})
        assert controller.noise_multiplier == 2.0
    # the integral does not wind up while sigma is pinned at the ceiling
    assert controller.integral == 0.0


def test_pid_one_update_known_answer() -> None:
    controller = pid(kp=1.0, ki=0.5, kd=0.0, window=1, max_step_change=10.0, integral_limit=0.2)
    controller.observe(0, {"val_utility": 1.0})  # quality 1, error 0.5, integral clamped to 0.2
    entry = controller.history[-1]
    assert entry["quality"] == entry["window_quality"] == 1.0
    assert entry["error"] == 0.5
    assert entry["integral"] == 0.2
    assert entry["p_term"] == 0.5 and entry["i_term"] == pytest.approx(0.1)
    assert entry["control"] == pytest.approx(0.6)
    assert controller.noise_multiplier == pytest.approx(1.4)
    assert entry["sigma_change"] == pytest.approx(-0.6)


def test_pid_derivative_and_sliding_window_known_answer() -> None:
    controller = pid(kp=0.0, ki=0.0, kd=1.0, window=2, max_step_change=10.0)
    controller.observe(0, {"val_utility": 1.0})  # q 1.0, window mean 1.0, e 0.5, D 0
    controller.observe(1, {"val_utility": 0.5})  # q 0.0, window mean 0.5, e 0.0, D -0.5
    controller.observe(2, {"val_utility": 0.5})  # q 0.0, window [0, 0], e -0.5, D -0.5
    first, second, third = controller.history
    assert first["d_term"] == 0.0 and first["sigma_change"] == 0.0
    assert second["window_quality"] == 0.5 and second["d_term"] == -0.5
    assert third["window_quality"] == 0.0 and third["d_term"] == -0.5
    assert third["window_size"] == 2.0
    # sigma started at the ceiling; the two negative derivative kicks cannot push it higher
    assert controller.noise_multiplier == 2.0


def test_pid_missing_and_nonfinite_signals_are_skipped_and_weights_renormalised() -> None:
    controller = pid(signal_weights={"disc_accuracy": 3.0, "val_utility": 1.0})
    controller.observe(0, {"disc_accuracy": 0.75, "val_utility": math.nan, "unread": 1.0})
    entry = controller.history[-1]
    assert entry["quality"] == pytest.approx(0.5)  # disc_accuracy alone (weight renormalised)
    assert entry["n_ignored"] == 2.0
    assert math.isnan(entry["signal/val_utility"]) and "quality/val_utility" not in entry
    controller.observe(1, {"disc_accuracy": 0.75, "val_utility": 1.0})
    assert controller.history[-1]["quality"] == pytest.approx((3 * 0.5 + 1 * 1.0) / 4)


def test_pid_observation_without_usable_signal_changes_nothing() -> None:
    controller = pid(window=2)
    for step in range(4):
        controller.observe(step, {"val_utility": 1.0})
    sigma, integral = controller.noise_multiplier, controller.integral
    controller.observe(4, {"val_utility": math.inf, "disc_accuracy": math.nan})
    controller.observe(5, {})
    assert controller.noise_multiplier == sigma and controller.integral == integral
    entry = controller.history[-1]
    assert math.isnan(entry["quality"]) and math.isnan(entry["error"])
    assert entry["sigma_change"] == 0.0 and entry["window_size"] == 2.0


def test_pid_integral_is_clamped_at_the_floor_and_sigma_recovers_when_quality_collapses() -> None:
    controller = pid(kp=1.0, ki=0.5, window=1, max_step_change=0.25, integral_limit=2.0)
    for step in range(20):
        controller.observe(step, {"val_utility": 1.0})  # error +0.5 each time
    assert controller.noise_multiplier == 0.5
    assert controller.integral == 2.0  # clamped, then frozen while sigma sits at the floor
    # quality 0 (error -0.5): u = -0.5 + 0.5 * I with I falling by 0.5 per update, so sigma
    # leaves the floor at the third update (I = 0.5, u = -0.25) and climbs from there
    sigmas = []
    for step in range(20, 25):
        controller.observe(step, {"val_utility": 0.5})
        sigmas.append(controller.noise_multiplier)
    assert sigmas == pytest.approx([0.5, 0.5, 0.75, 1.0, 1.25])


def test_pid_signals_needed_are_the_weighted_ones() -> None:
    controller = pid(signal_weights={"disc_accuracy": 1.0, "val_utility": 0.0})
    assert controller.signals_needed() == ("disc_accuracy",)


# ----------------------------------------------------------------------------- wgan feedback


def test_wgan_feedback_lowers_sigma_and_c_after_patience_stable_checks() -> None:
    controller = feedback(patience=3)
    assert (controller.noise_multiplier, controller.max_grad_norm) == (4.0, 1.0)  # starts high
    controller.observe(0, {})  # first check: no previous batch, nothing to compare
    for step in (1, 2):
        controller.observe(step, {"generated_similarity": 0.95})
        assert (controller.noise_multiplier, controller.max_grad_norm) == (4.0, 1.0)
    controller.observe(3, {"generated_similarity": 0.95})
    assert controller.noise_multiplier == pytest.approx(2.0)
    assert controller.max_grad_norm == pytest.approx(0.8)
    assert [h["action"] for h in controller.history] == [0.0, 0.0, 0.0, -1.0]
    assert [h["stable_count"] for h in controller.history] == [0.0, 1.0, 2.0, 0.0]
    # the next notch needs another `patience` stable checks
    for step in (4, 5):
        controller.observe(step, {"generated_similarity": 0.99})
    assert controller.noise_multiplier == pytest.approx(2.0)
    controller.observe(6, {"generated_similarity": 0.99})
    assert controller.noise_multiplier == pytest.approx(1.0)
    assert controller.max_grad_norm == pytest.approx(0.64)


def test_wgan_feedback_raises_sigma_back_when_results_diverge() -> None:
    controller = feedback(patience=1)
    controller.observe(0, {"generated_similarity": 0.95})
    controller.observe(1, {"generated_similarity": 0.95})
    assert controller.noise_multiplier == pytest.approx(1.0)
    controller.observe(2, {"generated_similarity": 0.2})
    assert controller.noise_multiplier == pytest.approx(2.0)
    assert controller.max_grad_norm == pytest.approx(0.8)
    assert controller.history[-1]["action"] == 1.0


def test_wgan_feedback_nonfinite_similarity_holds_the_state() -> None:
    controller = feedback(patience=2)
    controller.observe(0, {"generated_similarity": 0.95})
    controller.observe(1, {"generated_similarity": math.nan})
    assert controller.history[-1]["stable_count"] == 1.0
    assert controller.history[-1]["n_ignored"] == 1.0
    controller.observe(2, {"generated_similarity": 0.95})
    assert controller.noise_multiplier == pytest.approx(2.0)


def test_wgan_feedback_accuracy_weight_combines_similarity_and_utility() -> None:
    controller = feedback(patience=1, accuracy_weight=0.5)
    assert controller.signals_needed() == ("generated_similarity", "utility")
    controller.observe(0, {"generated_similarity": 1.0, "utility": 0.6})  # score 0.8 < 0.9
    assert controller.history[-1]["score"] == pytest.approx(0.8)
    assert controller.noise_multiplier == 4.0
    controller.observe(1, {"generated_similarity": 1.0, "utility": 0.9})  # score 0.95
    assert controller.noise_multiplier == pytest.approx(2.0)
    controller.observe(2, {"generated_similarity": 0.95})  # utility absent: similarity alone
    assert controller.history[-1]["score"] == 0.95
    # with accuracy_weight = 0 a utility signal is not read
    plain = feedback(patience=1)
    plain.observe(0, {"generated_similarity": 0.95, "utility": 0.0})
    assert plain.noise_multiplier == pytest.approx(2.0)
    assert plain.history[-1]["n_ignored"] == 1.0


@settings(max_examples=200, deadline=None)
@given(
    trace=signal_traces,
    threshold=st.floats(0.0, 1.0),
    sigma_factor=st.floats(0.01, 0.99),
    clip_factor=st.floats(0.01, 1.0),
    patience=st.integers(1, 4),
    accuracy_weight=st.floats(0.0, 1.0),
)
def test_wgan_feedback_respects_sigma_and_clip_bounds(
    trace: list[dict],
    threshold: float,
    sigma_factor: float,
    clip_factor: float,
    patience: int,
    accuracy_weight: float,
) -> None:
    controller = feedback(
        similarity_threshold=threshold,
        sigma_factor=sigma_factor,
        clip_factor=clip_factor,
        patience=patience,
        accuracy_weight=accuracy_weight,
    )
    for step, signals in enumerate(trace):
        controller.observe(step, signals)
        assert 1.0 <= controller.noise_multiplier <= 4.0
        assert 0.5 <= controller.max_grad_norm <= 1.0


def test_wgan_feedback_converges_to_the_floor_when_stable() -> None:
    controller = feedback(patience=2, sigma_factor=0.9, clip_factor=0.9)
    for step in range(200):
        controller.observe(step, {"generated_similarity": 1.0})
    assert controller.noise_multiplier == 1.0
    assert controller.max_grad_norm == 0.5


# --------------------------------------------------------------------------------- history


@pytest.mark.parametrize(
    ("controller", "extra_keys"),
    [
        (FixedController(noise_multiplier=1.0, max_grad_norm=1.0), set()),
        (pid(), set(PIDController.HISTORY_KEYS)),
        (feedback(), set(WGANFeedbackController.HISTORY_KEYS)),
    ],
    ids=["fixed", "pid", "wgan_feedback"],
)
def test_history_has_one_entry_per_observe_with_documented_keys(
    controller: NoiseController, extra_keys: set[str]
) -> None:
    traces = [
        {},
        {"disc_accuracy": 0.6, "generated_similarity": 0.5},
        {"val_utility": math.nan, "generated_similarity": math.inf},
        {"frechet_distance": 3.0, "generated_similarity": 0.97},
    ]
    for i, signals in enumerate(traces):
        controller.observe(10 * (i + 1), signals)
    history = controller.history
    assert len(history) == len(traces)
    assert [h["step"] for h in history] == [10.0, 20.0, 30.0, 40.0]
    for entry, signals in zip(history, traces, strict=True):
        assert BASE_HISTORY_KEYS | extra_keys <= set(entry)
        assert {f"signal/{k}" for k in signals} <= set(entry)
        assert all(isinstance(v, float) for v in entry.values())
    assert history[-1]["noise_multiplier"] == controller.noise_multiplier
    history[-1]["noise_multiplier"] = -1.0  # a copy: the controller's record is unchanged
    assert controller.history[-1]["noise_multiplier"] == controller.noise_multiplier


def test_observe_rejects_steps_that_do_not_increase_and_non_numeric_signals() -> None:
    controller = pid()
    controller.observe(5, {})
    with pytest.raises(ValueError, match="increase"):
        controller.observe(5, {})
    with pytest.raises(ValueError, match="non-negative"):
        pid().observe(-1, {})
    with pytest.raises(TypeError, match="disc_accuracy"):
        controller.observe(6, {"disc_accuracy": "0.5"})  # type: ignore[dict-item]


# ---------------------------------------------------------------------------- registry, args


def test_registry_holds_the_three_controllers() -> None:
    assert CONTROLLERS.names() == ["fixed", "pid", "wgan_feedback"]
    for name in CONTROLLERS:
        assert CONTROLLERS.get(name).name == name


def test_make_controller_builds_by_name() -> None:
    controller = make_controller("fixed", noise_multiplier=2.0, max_grad_norm=0.5)
    assert isinstance(controller, FixedController)
    assert (controller.noise_multiplier, controller.max_grad_norm) == (2.0, 0.5)
    assert isinstance(
        make_controller("pid", sigma_min=1.0, sigma_max=2.0, max_grad_norm=1.0), PIDController
    )
    assert isinstance(
        make_controller("wgan_feedback", sigma_min=1.0, sigma_max=2.0), WGANFeedbackController
    )


def test_make_controller_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as excinfo:
        make_controller("pi", noise_multiplier=1.0, max_grad_norm=1.0)
    assert "fixed, pid, wgan_feedback" in str(excinfo.value)


def test_make_controller_unknown_or_missing_arguments() -> None:
    with pytest.raises(UserInputError, match=r"unknown argument\(s\) \['sigma_max'\]"):
        make_controller("fixed", noise_multiplier=1.0, max_grad_norm=1.0, sigma_max=2.0)
    with pytest.raises(UserInputError, match=r"missing argument\(s\) \['sigma_min'\]"):
        make_controller("pid", sigma_max=2.0, max_grad_norm=1.0)


PID_OK = {"sigma_min": 0.5, "sigma_max": 2.0, "max_grad_norm": 1.0}
FEEDBACK_OK = {"sigma_min": 0.5, "sigma_max": 2.0}


@pytest.mark.parametrize(
    ("name", "kwargs", "key"),
    [
        ("fixed", {"noise_multiplier": 0.0, "max_grad_norm": 1.0}, "privacy.noise_multiplier"),
        ("fixed", {"noise_multiplier": 1.0, "max_grad_norm": -1.0}, "privacy.max_grad_norm"),
        ("pid", {**PID_OK, "sigma_min": 0.0}, "privacy.pid.sigma_min"),
        ("pid", {**PID_OK, "sigma_min": 3.0}, "privacy.pid.sigma_min"),
        ("pid", {**PID_OK, "sigma_max": math.nan}, "privacy.pid.sigma_max"),
        ("pid", {**PID_OK, "noise_multiplier": 5.0}, "privacy.noise_multiplier"),
        ("pid", {**PID_OK, "window": 0}, "privacy.pid.window"),
        ("pid", {**PID_OK, "window": 2.5}, "privacy.pid.window"),
        ("pid", {**PID_OK, "kp": -1.0}, "privacy.pid.kp"),
        ("pid", {**PID_OK, "ki": math.inf}, "privacy.pid.ki"),
        ("pid", {**PID_OK, "kd": "0.1"}, "privacy.pid.kd"),
        ("pid", {**PID_OK, "setpoint": 1.5}, "privacy.pid.setpoint"),
        ("pid", {**PID_OK, "max_step_change": 0.0}, "privacy.pid.max_step_change"),
        ("pid", {**PID_OK, "integral_limit": -1.0}, "privacy.pid.integral_limit"),
        ("pid", {**PID_OK, "fd_scale": 0.0}, "privacy.pid.fd_scale"),
        ("pid", {**PID_OK, "signal_weights": {"fid": 1.0}}, "privacy.pid.signal_weights"),
        ("pid", {**PID_OK, "signal_weights": {"val_utility": 0.0}}, "privacy.pid.signal_weights"),
        (
            "pid",
            {**PID_OK, "signal_weights": {"val_utility": -1.0}},
            "privacy.pid.signal_weights.val_utility",
        ),
        ("wgan_feedback", {**FEEDBACK_OK, "sigma_max": 0.1}, "privacy.wgan_feedback.sigma_min"),
        ("wgan_feedback", {**FEEDBACK_OK, "clip_min": 2.0}, "privacy.wgan_feedback.clip_min"),
        ("wgan_feedback", {**FEEDBACK_OK, "clip_max": 0.0}, "privacy.wgan_feedback.clip_max"),
        ("wgan_feedback", {**FEEDBACK_OK, "max_grad_norm": 5.0}, "privacy.max_grad_norm"),
        (
            "wgan_feedback",
            {**FEEDBACK_OK, "similarity_threshold": 1.1},
            "privacy.wgan_feedback.similarity_threshold",
        ),
        (
            "wgan_feedback",
            {**FEEDBACK_OK, "sigma_factor": 1.0},
            "privacy.wgan_feedback.sigma_factor",
        ),
        ("wgan_feedback", {**FEEDBACK_OK, "clip_factor": 0.0}, "privacy.wgan_feedback.clip_factor"),
        (
            "wgan_feedback",
            {**FEEDBACK_OK, "accuracy_weight": 2.0},
            "privacy.wgan_feedback.accuracy_weight",
        ),
        ("wgan_feedback", {**FEEDBACK_OK, "patience": 0}, "privacy.wgan_feedback.patience"),
        ("wgan_feedback", {**FEEDBACK_OK, "patience": True}, "privacy.wgan_feedback.patience"),
    ],
)
def test_bad_arguments_raise_user_input_error_naming_the_key(
    name: str, kwargs: dict, key: str
) -> None:
    with pytest.raises(UserInputError, match="^" + re.escape(key) + r"\b"):
        make_controller(name, **kwargs)


# ------------------------------------------------------------------- contract with the config


@pytest.mark.parametrize(
    ("settings_class", "controller_class"),
    [("PIDSettings", PIDController), ("FeedbackSettings", WGANFeedbackController)],
)
def test_config_keys_equal_constructor_arguments_and_defaults(
    settings_class: str, controller_class: type[NoiseController]
) -> None:
    from dpshare.config import schema

    params = inspect.signature(controller_class.__init__).parameters
    monitor_only = {"n_probe"}  # read by the signal monitor, not by the controller
    for f in fields(getattr(schema, settings_class)):
        if f.name in monitor_only:
            continue
        assert f.name in params, f"{settings_class}.{f.name} is not a controller argument"
        if f.name in ("sigma_min", "sigma_max"):
            continue  # None in the config means "calibrate"; the plan fills them in
        default = f.default_factory() if callable(f.default_factory) else f.default
        ours = params[f.name].default
        if f.name == "signal_weights":
            ours = dict(PIDController.DEFAULT_SIGNAL_WEIGHTS)
        assert ours == default, f.name


@pytest.mark.parametrize("strategy", ["pid", "wgan_feedback"])
def test_the_privacy_plan_builds_its_controller(strategy: str) -> None:
    from conftest import compose_config
    from dpshare.privacy.plan import plan_privacy

    cfg = compose_config([f"privacy={strategy}", f"privacy.{strategy}.sigma_min=1.0"])
    plan = plan_privacy(cfg.privacy, n_train=10_000, batch_size=100, max_epochs=1)
    controller = make_controller(
        plan.name,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=plan.max_grad_norm,
        sigma_min=plan.sigma_min,
        sigma_max=plan.sigma_max,
        **plan.controller_kwargs,
    )
    assert controller.name == strategy
    assert controller.noise_multiplier == plan.sigma_max == 2.0
    assert set(plan.signals) <= set(controller.signals_needed())


# ------------------------------------------------------------------------------------ purity


def test_controllers_module_imports_no_torch_lightning_or_wandb() -> None:
    tree = ast.parse(Path(controllers.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"torch", "lightning", "pytorch_lightning", "wandb", "opacus"}
    assert imported <= {
        "__future__",
        "abc",
        "inspect",
        "math",
        "collections",
        "numbers",
        "types",
        "typing",
        "numpy",
        "dpshare",
    }
