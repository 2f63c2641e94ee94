"""One module per `rescale4dl` sub-command. Each defines `add_parser(subparsers)` and `run(args) -> int`."""
