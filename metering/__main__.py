"""``python -m metering`` runs the ``metering`` command."""

from metering.cli import main

main()
