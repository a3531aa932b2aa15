"""cpv's default plugins, registered through the ``cpv`` entry-point group like any third-party plugin.

* :mod:`cpv_plugins.git` - versioning ``git-tags``: git commits and annotated tags.
* :mod:`cpv_plugins.local` - the embedded default: a local-directory DVC remote
  and a local bare git repository per team/model; no cloud account needed.
* :mod:`cpv_plugins.dvc_s3` - storage on S3 through DVC; AWS credentials.
* :mod:`cpv_plugins.bitbucket_ssh` - hosting on Bitbucket over SSH; SSH credentials.

* :mod:`cpv_plugins.dvc` - the DVC-format storage engine both storage backends use;
  :mod:`cpv_plugins.transports` - how it reaches a store (a directory, S3).

Heavy libraries (dvc, boto3, git) are imported inside the functions that use
them, so registering these plugins costs nothing at start-up.

Module paths before 0.4 (``cpv_plugins.git_tags``, ``cpv_plugins.dvc_storage`` ...)
still import: they name the very modules at their new paths (see
:mod:`cpv_core.compat`).
"""

from cpv_core.compat import register as _register_old_paths

_register_old_paths(
    {
        "cpv_plugins.git_tags": "cpv_plugins.git.backend",
        "cpv_plugins.gitutil": "cpv_plugins.git.plumbing",
        "cpv_plugins.dvc_storage": "cpv_plugins.dvc.engine",
        "cpv_plugins.dvc_layout": "cpv_plugins.dvc.layout",
        "cpv_plugins.early_uploads": "cpv_plugins.dvc.early_uploads",
        "cpv_plugins.part_digests": "cpv_plugins.dvc.part_digests",
        "cpv_plugins.stat_cache": "cpv_plugins.dvc.stat_cache",
        "cpv_plugins.transport": "cpv_plugins.transports.local",
        "cpv_plugins.s3_transport": "cpv_plugins.transports.s3",
    }
)
