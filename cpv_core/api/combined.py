"""CombinedCheckpointsManage: model and data versioned together, atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cpv_core.api.model_data import DataCheckpointsManage, ModelsCheckpointsManage
from cpv_core.domain.artifacts import CombinedMetadata
from cpv_core.domain.kinds import KindSpec, check_kwargs
from cpv_core.domain.records import validate_message
from cpv_core.domain.versions import Version
from cpv_core.errors import VersionExistsError
from cpv_core.ops import stages
from cpv_core.ops.revert import revert_targets
from cpv_core.ops.tagging import allocate_and_publish
from cpv_core.plugin.protocols import StageEvent, VersionRecord
from cpv_core.workspace.history import current_stages, fetch_versions, find_version, parse_tag_arg
from cpv_core.workspace.workspace import Workspace


class CombinedCheckpointsManage:
    """Tag and revert model and data together, atomically (the seed API).

    A combined version ``checkpoint/vX.Y`` names one model version and one
    data version at the same commit; all three tags and the branch are
    published in one atomic push, so either all land on the remote or none
    do (and no local tag is left behind). Model and data keep their own
    version sequences: the model can be at v1.3 while the data is at v0.4.
    """

    KIND = "checkpoint"
    #: what stages (:mod:`cpv_core.ops.stages`) need to know of this kind
    spec = KindSpec("checkpoint", dir_only=False, keeps_name=False)

    def __init__(self, team_name: str, model_name: str, repo_path: str | Path | None = None, **kwargs: Any) -> None:
        self.models = ModelsCheckpointsManage(team_name, model_name, repo_path, **kwargs)
        self.data: DataCheckpointsManage = self.models.sibling(DataCheckpointsManage)

    @property
    def ws(self) -> Workspace:
        return self.models.ws

    @property
    def dry_run(self) -> bool:
        return self.models.dry_run

    def records(self) -> list[VersionRecord]:
        return self.ws.versioning.list_versions(self.KIND)

    def echo(self, line: str) -> None:
        self.models.echo(line)

    def plan(self, lines: list[str]) -> list[str]:
        return self.models.plan(lines)

    def hint(self, *, cli: str, python: str) -> str:
        return self.models.hint(cli=cli, python=python)

    # -- stages of combined versions (:mod:`cpv_core.ops.stages`) ------------------------------
    def promote(self, version: str, stage: str, message: str | None = None, **kwargs: Any) -> StageEvent | None:
        """Put combined version ``version`` (any selector) into ``stage`` under the stage
        rules; ``force=True`` overrides them (recorded). None when nothing changed."""
        check_kwargs("promote", kwargs)
        return stages.promote(
            self, version, stage, message, force=bool(kwargs.get("force")), dry_run=bool(kwargs.get("dry_run", self.dry_run))
        )

    def demote(self, stage: str, message: str | None = None, **kwargs: Any) -> StageEvent | None:
        """Empty ``stage`` of the combined versions."""
        check_kwargs("demote", kwargs)
        return stages.demote(self, stage, message, dry_run=bool(kwargs.get("dry_run", self.dry_run)))

    def stages(self) -> dict[str, str]:
        """Stage -> the combined version holding it now (after fetching the remote)."""
        return {stage: str(e.version) for stage, e in current_stages(stages.stage_events(self, fetch=True)).items()}

    def stage_history(self, stage: str | None = None) -> list[StageEvent]:
        """Every change of every stage of the combined versions (or of ``stage``)."""
        return [e for e in stages.stage_events(self, fetch=True) if stage is None or e.stage == stage]

    def find(self, tag: str | None, *, fetch: bool = True) -> VersionRecord:
        return find_version(
            self.ws,
            self.KIND,
            tag,
            fetch=fetch,
            create_hint="create one with " + self.hint(cli="`cpv checkpoint create`", python="tag_model_and_data()"),
        )

    def _pair(self, record: VersionRecord) -> tuple[VersionRecord, VersionRecord]:
        model_v, data_v = record.metadata.get("model"), record.metadata.get("data")
        return self.models.find(model_v, fetch=False), self.data.find(data_v, fetch=False)

    def tag_model_and_data(
        self, version_tag: str | None = None, model_message: str | None = None, data_message: str | None = None, **kwargs: Any
    ) -> tuple[str, str]:
        """Version the current model and data together; returns ``(model_tag, data_tag)``.

        With ``version_tag`` all three (model, data, checkpoint) get that
        version, and it must be free in each sequence. Without, a model or
        data whose content already has a version keeps it (data versions only
        move when the data changed), the others take their next version, and
        the pair gets the next combined version, ``get_combined_metadata()``.
        """
        check_kwargs("tag_model_and_data", kwargs, "major")
        dry_run = bool(kwargs.get("dry_run", self.dry_run))
        explicit = parse_tag_arg(version_tag)
        model_message = validate_message(model_message, "model message")
        data_message = validate_message(data_message, "data message")
        ws = self.ws
        ws.require_initialized()
        with ws.lock():
            m_info = self.models.check_taggable()
            d_info = self.data.check_taggable()
            if not dry_run:
                fetch_versions(self.ws, required=True)
                ws.versioning.push_branch()  # tags must point at a commit the remote branch has
            m_meta, d_meta = self.models.tag_metadata(m_info), self.data.tag_metadata(d_info)
            # content that already has a version keeps it: data only gets a new
            # version when the data changed (likewise the model)
            reused: dict[str, str] = {}
            if explicit is None:
                for kind, info in (("model", m_info), ("data", d_info)):
                    same = [r.version for r in ws.versioning.list_versions(kind) if r.metadata.get("digest") == info.digest]
                    if same:
                        reused[kind] = same[-1]
                for record in self.records():
                    if record.metadata.get("model") == reused.get("model") and record.metadata.get("data") == reused.get("data"):
                        raise VersionExistsError(
                            f"this model and data are already combined version {record.version} "
                            f"(model {reused['model']}, data {reused['data']})",
                            fix="upload a new model or data checkpoint first, or pass an explicit version",
                        )
            kinds = [k for k in ("model", "data") if k not in reused] + [self.KIND]

            def build(versions: Mapping[str, Version]) -> dict[str, tuple[str, Mapping[str, Any]]]:
                names = {**reused, **{k: str(v) for k, v in versions.items()}}
                mv, dv, cv = names["model"], names["data"], names[self.KIND]
                link = {"checkpoint": cv}
                out = {
                    "model": (model_message or "", {**m_meta, "lineage": {**link, "data": dv}}),
                    "data": (data_message or "", {**d_meta, "lineage": {**link, "model": mv}}),
                    self.KIND: (
                        model_message or data_message or "",
                        {
                            "model": mv,
                            "data": dv,
                            "model_digest": m_info.digest,
                            "data_digest": d_info.digest,
                            "metrics": m_meta["metrics"],
                            "size": m_info.size + d_info.size,
                        },
                    ),
                }
                return {k: v for k, v in out.items() if k in versions}

            versions = allocate_and_publish(
                ws,
                kinds,
                explicit,
                bool(kwargs.get("major")),
                build,
                dry_run=dry_run,
                plan=self.models.plan,
                echo=self.models.echo,
                with_branch=True,
            )
            names = {**reused, **{k: str(v) for k, v in versions.items()}}
            return names["model"], names["data"]

    def revert_model_and_data(self, tag: str, **kwargs: Any) -> CombinedMetadata:
        """Restore model and data to the versions named by combined version ``tag``, in one commit."""
        check_kwargs("revert_model_and_data", kwargs)
        dry_run = bool(kwargs.get("dry_run", self.dry_run))
        force = bool(kwargs.get("force", False))
        record = self.find(tag, fetch=not dry_run)
        model_rec, data_rec = self._pair(record)
        with self.ws.lock():
            revert_targets(
                self.ws,
                [(self.models, model_rec), (self.data, data_rec)],
                f"Revert to checkpoint {record.version} (model {model_rec.version}, data {data_rec.version})",
                force=force,
                dry_run=dry_run,
            )
        return self._combined(record)

    def _combined(self, record: VersionRecord) -> CombinedMetadata:
        model_rec, data_rec = self._pair(record)
        return CombinedMetadata(
            version=record.version,
            commit=record.commit,
            date=record.date,
            author=record.author,
            message=record.message,
            model=self.models.metadata_for(model_rec),
            data=self.data.metadata_for(data_rec),
        )

    def get_combined_metadata(self, tag: str | None = None, **kwargs: Any) -> CombinedMetadata:
        """Both metadata records of combined version ``tag`` (default: latest) and their link."""
        check_kwargs("get_combined_metadata", kwargs)
        return self._combined(self.find(tag))

    def read_checkpoint_tag(self, **kwargs: Any) -> list[str]:
        """All combined versions, sorted."""
        check_kwargs("read_checkpoint_tag", kwargs)
        self.ws.require_initialized()
        fetch_versions(self.ws, required=False)
        return [r.version for r in self.records()]

    def list_checkpoints(self) -> list[CombinedMetadata]:
        """Every combined version with both records, oldest first."""
        self.ws.require_initialized()
        fetch_versions(self.ws, required=False)
        return [self._combined(r) for r in self.records()]

    def models_trained_on(self, data_version: str) -> list[str]:
        """Model versions whose lineage names data version ``data_version``."""
        return self.data.models_trained_on(data_version)
