"""The DVC-format storage engine and what it is made of: the format (``layout``),
the cache and manifests, tracking, pushing, materialising, the stat cache, part
digests, early uploads and the upload session. Public for storage authors: a new
object store subclasses :class:`cpv_plugins.dvc.engine.DvcStorage` with a transport
(:mod:`cpv_plugins.transports`)."""
