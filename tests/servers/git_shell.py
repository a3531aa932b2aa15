#!/usr/bin/env python3
"""Forced command for the test sshd: a Bitbucket-like git server.

Only ``git-upload-pack``, ``git-receive-pack`` and ``git-upload-archive`` on
``{workspace}/{repo}.git`` under ROOT are allowed; anything else is refused,
as Bitbucket refuses shells. Repositories must exist (Bitbucket Cloud needs
them created first).
"""

import os
import re
import shlex
import sys

ALLOWED = {"git-upload-pack", "git-receive-pack", "git-upload-archive"}
PATH_RE = re.compile(r"^/?([A-Za-z0-9._-]+)/([A-Za-z0-9._-]+\.git)/?$")


def main() -> int:
    root = sys.argv[1]
    original = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    if not original:
        sys.stderr.write("authenticated, but this server only serves git repositories\n")
        return 1
    try:
        argv = shlex.split(original)
    except ValueError:
        argv = []
    if len(argv) != 2 or argv[0] not in ALLOWED:
        sys.stderr.write(f"refused: {original!r}\n")
        return 1
    match = PATH_RE.match(argv[1])
    if not match or ".." in argv[1]:
        sys.stderr.write(f"refused path: {argv[1]!r}\n")
        return 1
    repo = os.path.join(root, match.group(1), match.group(2))
    if not os.path.isdir(repo):
        sys.stderr.write(f"repository does not exist: {match.group(1)}/{match.group(2)}\n")
        return 1
    os.execvp(argv[0], [argv[0], repo])
    return 1


if __name__ == "__main__":
    sys.exit(main())
