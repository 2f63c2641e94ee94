"""Errors the user can fix: bad input, bad options. The CLI turns them into exit code 2."""


class InputError(ValueError):
    """Invalid user input (file, folder, option). The message names the culprit and the problem."""


# Exit codes of the `rescale4dl` command (one contract for CLI, Python and Prefect).
EXIT_OK = 0               # every requested factor finished
EXIT_INTERNAL = 1         # a bug or an unexpected fault
EXIT_INPUT = 2            # bad input or options, refused before any work
EXIT_PARTIAL = 3          # the sweep finished, but at least one factor failed: results are partial
EXIT_ENVIRONMENT = 4      # disk full, read-only, no permission: "PATH: cause"
# 130 / 143: stopped by SIGINT / SIGTERM (128 + the signal number)


# the sweep's stages in words, for failure messages
STAGE_WORDS = {"data": "rescaling", "rescale": "rescaling", "train": "training", "predict": "prediction",
               "evaluate": "evaluation", "prepare": "preparation", "finish": "the final report"}


class FactorFailed(RuntimeError):
    """One factor's stage failed. `cause` is one line in plain words; `log` holds the whole story."""

    def __init__(self, factor: str, stage: str, cause: str, log: str | None = None):
        self.factor, self.stage, self.cause, self.log = factor, stage, cause, log
        where = f" (full log: {log})" if log else ""
        super().__init__(f"factor {factor} failed in {stage}: {cause}{where}")

    def __reduce__(self):  # keep the fields across processes (Dask) and Prefect's result store
        return type(self), (self.factor, self.stage, self.cause, self.log)

    def as_dict(self) -> dict:
        return {"stage": self.stage, "cause": self.cause, "log": self.log}


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, the way a person wants a failure summarised."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def is_environment_fault(exc: BaseException) -> bool:
    """An OS error that no retry of the next factor can escape (full or read-only disk, no permission)."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM,
                                                      errno.EDQUOT)


def describe_validation_error(exc, within: str = "") -> str:
    """A pydantic `ValidationError` in one line for people: 'where: what; where: what'.

    `where` is the dotted path of the field (`training.architecture.unet.depth`), prefixed by
    `within` (the section the model sits in); a check of the whole model names no field.
    Pydantic's "Value error, " prefix is dropped. The one rendering of every config, record and
    metadata error.
    """
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in (within, *err["loc"]) if p != "")
        what = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {what}" if where else what)
    return "; ".join(parts)
