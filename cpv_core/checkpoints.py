"""The seeds' module: the three manager classes, as the design documents import them.

``from cpv_core.checkpoints import ModelsCheckpointsManage,
DataCheckpointsManage, CombinedCheckpointsManage`` keeps working; the classes
live in :mod:`cpv_core.api.model_data` and :mod:`cpv_core.api.combined`.
"""

from __future__ import annotations

from cpv_core.api.combined import CombinedCheckpointsManage
from cpv_core.api.model_data import DataCheckpointsManage, ModelsCheckpointsManage

__all__ = ["ModelsCheckpointsManage", "DataCheckpointsManage", "CombinedCheckpointsManage"]
