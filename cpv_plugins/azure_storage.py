"""Storage backend ``dvc-azure``: the DVC-format engine with the Azure Blob
transport (imported by :func:`cpv_plugins.azure.azure_storage` when a workspace
first needs it)."""

from __future__ import annotations

from cpv_core.plugin.protocols import BackendContext
from cpv_plugins.azure_settings import AzureSettings
from cpv_plugins.dvc.bucket_storage import BucketStorage
from cpv_plugins.transports.azure import AzureTransport


class AzureStorage(BucketStorage):
    """Storage backend ``dvc-azure``: DVC's format in ``azure://{container}/{team}/{model}``."""

    name = "dvc-azure"

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.settings = AzureSettings(ctx.config.get_config("azure"))

    def remote_url(self) -> str:
        return f"azure://{self.settings.container}/{self.prefix}"

    def local_remote_options(self) -> dict[str, str]:
        # secrets stay in the environment: DVC's azure remote reads the connection string
        # from AZURE_STORAGE_CONNECTION_STRING, or the account name below with its own login
        account = self.settings.account_name()
        return {"account_name": account} if account else {}

    def make_transport(self) -> AzureTransport:
        return AzureTransport(self.settings, self.prefix)
