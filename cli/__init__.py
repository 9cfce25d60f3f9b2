"""The ``rectflow`` command line: thin typer commands over :mod:`rectflow.api`."""
