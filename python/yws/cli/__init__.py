"""The ``yws`` command: one module per command group; ``yws.cli.main:main`` is the console
script."""
