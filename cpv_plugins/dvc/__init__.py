"""The DVC-format storage engine and what it is made of: the format (``layout``),
the cache and manifests, tracking, pushing, materialising, the stat cache, part
digests, early uploads and the upload session. Public for storage authors: a new
object store subclasses :class:`cpv_plugins.dvc.engine.DvcStorage` with a transport
(:mod:`cpv_plugins.transports`)."""

#: keep a copy of each uploaded file in the workspace's DVC cache (default false for a
#: bucket store: a second local copy is pure cost on the way to a remote)
CACHE_COPY_KEY = "cache.copy"
