"""The ``workbench`` command line."""
