"""Errors the user can fix: bad input, bad options. The CLI turns them into exit code 2."""


class InputError(ValueError):
    """Invalid user input (file, folder, option). The message names the culprit and the problem."""
