"""``dirstore``: content-addressed objects in a plain directory.

An example of a third-party cpv storage plugin. It implements
:class:`cpv_core.backends.StorageBackend` with the standard library only, on
top of :class:`cpv_core.bases.StorageBackendBase`, which supplies the methods
that have a sensible default (``commit_paths``, ``checkout``, ``verify`` ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from cpv_core import StorageError, ValidationError, hookimpl
from cpv_core.plugin.bases import StorageBackendBase
from cpv_core.plugin.protocols import BackendContext, StorageBackendInfo, TrackedArtifact, TransferStats
from cpv_core.trust import check_oid, check_relpath, contained, select_sub_path

POINTER_SUFFIX = ".dirstore.json"
CHUNK = 1024 * 1024


def md5_of(path: Path) -> str:
    """MD5 of a file's bytes."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class DirStore(StorageBackendBase):
    """Storage backend ``dirstore``."""

    name = "dirstore"

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        root = ctx.config.get_config("dirstore.root")
        base = Path(root).expanduser() if root else ctx.config.config_dir / "dirstore"
        self.root = base / ctx.team / ctx.model / "objects"

    # -- helpers -----------------------------------------------------------
    def _object(self, md5: str) -> Path:
        md5 = check_oid(md5, "object id", allow_dir=False)
        return self.root / md5[:2] / md5[2:]

    def _files(self, path: str) -> dict[str, Path]:
        target = self.workspace / path
        if target.is_file():
            return {PurePosixPath(path).name: target}
        return {p.relative_to(target).as_posix(): p for p in sorted(target.rglob("*")) if p.is_file()}

    def _pointer(self, path: str) -> dict:
        return self._parse((self.workspace / self.pointer_path(path)).read_bytes(), self.pointer_path(path))

    @staticmethod
    def _parse(pointer: bytes, where: str) -> dict:
        """A pointer read back from the repository: every hash and path checked
        (cpv's trust rule: repository content is data, never authority)."""
        try:
            data = json.loads(pointer)
        except (ValueError, RecursionError):
            raise ValidationError(f"{where} is not JSON", fix="restore it with git checkout") from None
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ValidationError(f"{where} has no file list", fix="restore it with git checkout")
        check_oid(data.get("md5"), where, allow_dir=False)
        for rel, md5 in data["files"].items():
            check_relpath(rel, where, "file entry")
            check_oid(md5, where, allow_dir=False)
        if not isinstance(data.get("size"), int) or isinstance(data.get("size"), bool):
            raise ValidationError(f"{where} has no size", fix="restore it with git checkout")
        return data

    # -- StorageBackend ------------------------------------------------------
    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def describe_remote(self) -> str:
        return str(self.root)

    def pointer_path(self, path: str) -> str:
        return f"{path}{POINTER_SUFFIX}"

    def track(self, paths: Sequence[str]) -> list[TrackedArtifact]:
        out = []
        for path in paths:
            files = {rel: md5_of(p) for rel, p in self._files(path).items()}
            size = sum(p.stat().st_size for p in self._files(path).values())
            is_dir = (self.workspace / path).is_dir()
            digest = hashlib.md5(json.dumps(files, sort_keys=True).encode()).hexdigest() if is_dir else next(iter(files.values()))
            pointer = {"md5": digest, "size": size, "dir": is_dir, "files": files}
            (self.workspace / self.pointer_path(path)).write_text(json.dumps(pointer, indent=1, sort_keys=True) + "\n")
            out.append(TrackedArtifact(path, f"md5:{digest}", size, len(files), self.pointer_path(path)))
        return out

    def push(self, paths: Sequence[str]) -> TransferStats:
        moved = skipped = 0
        for path in paths:
            pointer = self._pointer(path)
            sources = self._files(path)
            for rel, md5 in pointer["files"].items():
                obj = self._object(md5)
                if obj.exists():
                    skipped += 1
                    continue
                obj.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=obj.parent)
                os.close(fd)
                shutil.copyfile(sources[rel], tmp)
                os.replace(tmp, obj)
                moved += 1
        return TransferStats(transferred=moved, skipped=skipped)

    def describe_pointer(self, path: str, pointer: bytes) -> TrackedArtifact | None:
        data = self._parse(pointer, self.pointer_path(path))
        return TrackedArtifact(path, f"md5:{data['md5']}", int(data["size"]), len(data["files"]), self.pointer_path(path))

    def materialize(self, rev: str, path: str, pointer: bytes, dest: Path) -> TrackedArtifact:
        tracked = PurePosixPath(path).parts[0]
        data = self._parse(pointer, self.pointer_path(tracked))
        prefix = "/".join(PurePosixPath(path).parts[1:])
        files = data["files"] if data["dir"] else {"": data["md5"]}
        chosen = select_sub_path(files, prefix, f"{tracked} at {rev}") if prefix else files
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        try:
            for rel, md5 in chosen.items():
                obj = self._object(md5)
                if not obj.exists() or md5_of(obj) != md5:
                    raise StorageError(
                        f"object {md5} of {tracked}/{rel} is missing or corrupt in {self.root}",
                        fix="re-upload that version from a machine that has it",
                    )
                out = contained(staging / dest.name, rel, f"{tracked} at {rev}") if rel else staging / dest.name
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(obj, out)
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(staging / dest.name, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        size = sum(p.stat().st_size for p in ([dest] if dest.is_file() else dest.rglob("*")) if p.is_file())
        return TrackedArtifact(path, f"md5:{data['md5']}", size, len(chosen), self.pointer_path(tracked))

    def manifest(self, rev: str, path: str, pointer: bytes) -> dict[str, str]:
        data = self._parse(pointer, self.pointer_path(path))
        return dict(data["files"]) if data["dir"] else {"": data["md5"]}

    def status(self, paths: Sequence[str]) -> dict[str, str]:
        result = {}
        for path in paths:
            pointer_file = self.workspace / self.pointer_path(path)
            target = self.workspace / path
            if not target.exists():
                result[path] = "missing"
            elif not pointer_file.exists():
                result[path] = "untracked"
            else:
                files = {rel: md5_of(p) for rel, p in self._files(path).items()}
                result[path] = "unchanged" if files == self._pointer(path)["files"] else "modified"
        return result


@hookimpl
def cpv_storage_backends() -> list[StorageBackendInfo]:
    """Offer the dirstore backend."""
    return [StorageBackendInfo("dirstore", DirStore, "content-addressed objects in a plain directory", settings=("dirstore.root",))]
