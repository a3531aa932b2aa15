"""One team/model workspace on disk: where it is, which backends serve it, its
lock, journal and crash recovery (``workspace``), what a source may contain
(``sources``), reading its versions and stages back (``history``), the gc fence
(``gc_fence``) and the Checkpointer's run folders (``run_folders``).

``from cpv_core.workspace import Workspace`` (the path before 0.4) keeps working.
"""

from cpv_core.workspace.meta import (
    DEFAULT_FILES,
    FORMAT_VERSION,
    MAX_META_BYTES,
    META_DIR,
    META_FILE,
    RESERVED_TOP,
    check_meta,
    check_target_rel,
)
from cpv_core.workspace.workspace import (
    LOCK_FILE,
    LOCK_TIMEOUT_ENV,
    LOCK_TIMEOUT_S,
    SCAFFOLD,
    Workspace,
    lock_timeout_from_env,
    readme_text,
)

__all__ = [
    "DEFAULT_FILES",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "LOCK_TIMEOUT_ENV",
    "LOCK_TIMEOUT_S",
    "MAX_META_BYTES",
    "META_DIR",
    "META_FILE",
    "RESERVED_TOP",
    "SCAFFOLD",
    "Workspace",
    "check_meta",
    "check_target_rel",
    "lock_timeout_from_env",
    "readme_text",
]
