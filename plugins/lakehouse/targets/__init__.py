"""Targets build each step of a DAG as an operator, at the same task ids on every target.

``local`` runs on this machine (Spark, DuckDB, a directory lake); ``aws`` uses the Amazon
provider's operators. The DAG files ask ``load_target()`` for each step and never branch on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lakehouse.settings import target_name


def load_target(env: Mapping[str, str] = os.environ) -> Any:
    """Return the target named by ``LAKEHOUSE_TARGET``; reads only the environment."""
    if target_name(env) == "aws":
        from lakehouse.targets.aws import AwsTarget

        return AwsTarget()
    from lakehouse.targets.local import LocalTarget

    return LocalTarget()
