"""The public Python API: ``CheckpointManager`` (one method per operation, each a
delegate to :mod:`cpv_core.ops`), the seed classes, ``Checkpointer`` and the
framework callbacks."""
