"""Every config option composes; typos and wrong types fail at composition with clear messages."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import CONF_DIR, compose_config

GROUPS = ["dataset", "method", "privacy", "eval", "trainer", "logger", "scale", "experiment"]


# option files that configure a registered method differently (their `name` is that method's)
VARIANTS = {
    "multidisc_gan_mix": "multidisc_gan",
    "dp_wgan_ours": "dp_wgan",
    "fedavg_random_clients": "fedavg",
}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes_and_resolves(group: str, option: str) -> None:
    cfg = compose_config([f"{group}={option}"])
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["dataset"]["name"]
    if group not in ("experiment", "trainer", "scale"):
        assert container[group]["name"] == VARIANTS.get(option, option)


def test_every_group_has_an_option() -> None:
    for group in GROUPS:
        assert _options(group), f"conf/{group}/ is empty"


def test_defaults() -> None:
    cfg = compose_config([])
    assert cfg.dataset.name == "bank_sim"
    assert cfg.method.name == "standard_gan"
    assert cfg.privacy.name == "none"
    assert cfg.scale.name == "paper"
    assert cfg.dataset.n_transactions >= 100_000  # Deng 2026 Table 2: 100,000+ records
    assert cfg.trainer.max_epochs == cfg.scale.max_epochs


def test_misspelt_key_fails_at_composition() -> None:
    with pytest.raises(ConfigCompositionException, match="batch_sise"):
        compose_config(["method.batch_sise=3"])


def test_wrong_type_fails_at_composition() -> None:
    with pytest.raises(ConfigCompositionException, match="batch_size"):
        compose_config(["method.batch_size=lots"])


def test_top_level_wrong_type_fails() -> None:
    with pytest.raises(ConfigCompositionException, match="seed"):
        compose_config(["seed=abc"])


def test_unknown_dataset_lists_valid_options() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(["dataset=nonexistent"])
    assert "bank_sim" in str(err.value.__cause__ or err.value) or "bank_sim" in repr(err.value)


def test_misspelt_key_in_a_yaml_file_fails(tmp_path) -> None:
    """A typo inside a group YAML (not just an override) is caught by the schema."""
    import shutil

    from hydra import compose, initialize_config_dir

    from dpshare.config import register_configs

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    text = (conf / "method" / "standard_gan.yaml").read_text()
    (conf / "method" / "standard_gan.yaml").write_text(text.replace("latent_dim:", "latnet_dim:"))
    register_configs()
    with (
        initialize_config_dir(config_dir=str(conf), version_base="1.3"),
        pytest.raises(ConfigCompositionException, match="latnet_dim"),
    ):
        compose("config", overrides=["run_dir=x"])


def test_scale_smoke_caps_records() -> None:
    cfg = compose_config(["scale=smoke"])
    assert cfg.scale.max_records is not None and cfg.scale.max_records < 100_000


def test_experiment_values_override_root_defaults() -> None:
    # `_self_` comes first in conf/config.yaml, so an experiment's keys win over the root's.
    cfg = compose_config(["experiment=bank_sim_standard_gan"])
    assert cfg.experiment_name == "bank_sim_standard_gan"
    assert "non_private" in cfg.tags
    assert compose_config([]).experiment_name == "default"


def test_torch_threads_is_applied_and_bad_values_are_refused() -> None:
    import torch

    from dpshare.errors import UserInputError
    from dpshare.train import _configure_threads

    before = torch.get_num_threads()
    try:
        assert _configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert _configure_threads(None) == torch.get_num_threads()  # not a multirun: untouched
        for bad in (0, -2, "2", 1.5, True):
            with pytest.raises(UserInputError, match="torch_threads"):
                _configure_threads(bad)
    finally:
        torch.set_num_threads(before)
