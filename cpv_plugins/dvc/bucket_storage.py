"""What the DVC-format backends on a bucket (S3, GCS, Azure) share: objects under
``{team}/{model}/`` of one bucket or container, and no second local copy of each
file unless ``cache.copy`` asks for one."""

from __future__ import annotations

from cpv_core.plugin.settings import flag_setting
from cpv_plugins.dvc import CACHE_COPY_KEY
from cpv_plugins.dvc.engine import DvcStorage


class BucketStorage(DvcStorage):
    """A :class:`DvcStorage` whose remote is ``{team}/{model}`` in a bucket."""

    @property
    def prefix(self) -> str:
        return f"{self.ctx.team}/{self.ctx.model}"

    def keeps_cache_copy(self) -> bool:
        # a second local copy is pure cost on the way to a remote (and 70 GB for a 70 GB checkpoint)
        return flag_setting(
            self.ctx.config,
            CACHE_COPY_KEY,
            False,
            f"cpv config set {CACHE_COPY_KEY} false (upload from the workspace file) or true (keep a cache copy, as DVC does)",
        )
