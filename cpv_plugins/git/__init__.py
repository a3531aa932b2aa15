"""The ``git-tags`` versioning backend and the git plumbing under it (any git host)."""
