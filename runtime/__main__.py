"""``python -m runtime`` is the ``shoal`` command."""

from runtime.cli import main

main()
