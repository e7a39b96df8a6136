"""Checks that must run before Hydra starts a job.

Hydra creates the run (or sweep) folder itself, before ``dpshare.train`` gets control, so an
``output_root`` under a regular file or in a read-only place ends in Hydra's traceback
(``NotADirectoryError``). :class:`OutputDirCheck` is a Hydra callback that checks the folder
first and exits like every other bad input: one ``error: ...`` line, status 2. It is switched on
in ``conf/config.yaml``::

    hydra:
      callbacks:
        output_dir_check:
          _target_: dpshare.preflight.OutputDirCheck
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dpshare.errors import UserInputError
from dpshare.reporting import records


class OutputDirCheck(Callback):
    """Refuse an unwritable output folder before Hydra tries to create it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_output_dir(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_output_dir(config, "hydra.sweep.dir")


def check_output_dir(config: DictConfig, key: str) -> None:
    """Create the PARENT of the folder named by ``key`` (the run folder itself is Hydra's to
    create; its parent holds no timestamp) and check that it can be written; on failure print
    one ``error:`` line and exit with status 2."""
    try:
        folder = OmegaConf.select(config, key)
    except OmegaConfBaseException:
        return  # not resolvable here (e.g. a ${hydra:...} value): Hydra reports it itself
    if not folder:
        return
    try:
        records.prepare_run_dir(Path(str(folder)).parent)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
