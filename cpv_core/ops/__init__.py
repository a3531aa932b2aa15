"""One module per operation, each a function of one target object
(:class:`cpv_core.ops.target.Target`): init, transfer (upload/download), tagging,
revert, inspection, pull, stages, status, retention (gc/du), registry, report."""
