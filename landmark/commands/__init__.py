"""One module per ``landmark`` subcommand: ``add_parser(subparsers)`` and ``run(args) -> int``."""
