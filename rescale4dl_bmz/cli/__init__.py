"""The `rescale4dl` command: `main` builds the parser; one module per sub-command."""
