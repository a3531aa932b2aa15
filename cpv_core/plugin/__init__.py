"""The seam between the core and its backends: hook specs, the protocols a backend
implements and their base classes, the plugin manager, entry points, settings,
credentials, events and the contract suites. Plugins import from here (and from
``cpv_core.domain``, the top modules and ``cpv_core.cli.api``)."""
