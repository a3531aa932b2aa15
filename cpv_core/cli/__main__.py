"""``python -m cpv_core.cli``: the same as ``cpv``."""

from cpv_core.cli import main

main()
