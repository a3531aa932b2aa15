"""cpv's default plugins, registered through the ``cpv`` entry-point group like any third-party plugin.

* :mod:`cpv_plugins.git_tags` - versioning: git commits and annotated tags.
* :mod:`cpv_plugins.local` - the embedded default: a local-directory DVC remote
  and a local bare git repository per team/model; no cloud account needed.
* :mod:`cpv_plugins.dvc_s3` - storage on S3 through DVC; AWS credentials.
* :mod:`cpv_plugins.bitbucket_ssh` - hosting on Bitbucket over SSH; SSH credentials.

Heavy libraries (dvc, boto3, git) are imported inside the functions that use
them, so registering these plugins costs nothing at start-up.
"""
