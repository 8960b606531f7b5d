"""``python -m registry_sdk``: the ``registry`` command."""

from registry_sdk.cli import main

main()
