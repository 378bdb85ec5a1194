"""What the training raises on purpose, and the exit status each one means."""


class InputError(Exception):
    """Bad input: job file, dataset, weights, device.  Exit status 2."""

    exit_code = 2


class ConfigError(InputError):
    """Raised when the job file is unreadable, or its spec or placement invalid."""


class DatasetError(InputError):
    """Raised when the dataset file cannot be read or holds a malformed line."""


class WeightsNotFound(InputError):
    """Raised when a real preset's weights or tokenizer are not on disk."""


class WeightsInvalid(InputError):
    """Raised when a model's weights cannot be made or trusted: the packaged
    GGUF is missing or corrupt, its metadata or tensors do not fit the
    catalog preset, the converted model scores like noise, or a downloaded
    copy's checksum is not its manifest's (``workers/weights``).  Nothing
    is left installed."""


class DeviceUnavailable(InputError):
    """Raised when JAX finds no backend, or no GPU where ``device`` is ``gpu``."""


class Terminated(Exception):
    """Stopped by SIGTERM (after the step in flight, with a checkpoint).  Exit status 143."""

    exit_code = 128 + 15


class StopTraining(Exception):
    """Raised from a training hook to leave tunix's loop between two steps."""
