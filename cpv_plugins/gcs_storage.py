"""Storage backend ``dvc-gs``: the DVC-format engine with the GCS transport
(imported by :func:`cpv_plugins.gcs.gcs_storage` when a workspace first needs it)."""

from __future__ import annotations

from cpv_core.plugin.protocols import BackendContext
from cpv_plugins.dvc.bucket_storage import BucketStorage
from cpv_plugins.gcs_settings import GcsSettings
from cpv_plugins.transports.gcs import GcsTransport


class GcsStorage(BucketStorage):
    """Storage backend ``dvc-gs``: DVC's format in ``gs://{bucket}/{team}/{model}``."""

    name = "dvc-gs"

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.settings = GcsSettings(ctx.config.get_config("gcs"))

    def remote_url(self) -> str:
        return f"gs://{self.settings.bucket}/{self.prefix}"

    def local_remote_options(self) -> dict[str, str]:
        # DVC's own gs remote (gcsfs) reads the same file by path; an endpoint without
        # credentials is an emulator, which DVC reaches anonymously as cpv does
        s = self.settings
        options: dict[str, str] = {}
        if s.credentials_path:
            options["credentialpath"] = str(s.credentials_path)
        if s.endpoint_url:
            options["endpointurl"] = s.endpoint_url
            if not s.credentials_path:
                options["allow_anonymous_login"] = "true"
        if s.project:
            options["projectname"] = str(s.project)
        return options

    def make_transport(self) -> GcsTransport:
        return GcsTransport(self.settings, self.prefix)
