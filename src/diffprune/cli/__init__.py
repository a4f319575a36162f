"""The ``diffprune`` command: one small module per subcommand; each only parses and calls."""
