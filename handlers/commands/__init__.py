"""CLI subcommands; every module here registers itself with ``handlers.cli``."""
