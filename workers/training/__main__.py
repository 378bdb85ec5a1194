"""The command line: ``python -m workers.training JOB_JSON_PATH`` runs one
training; ``python -m workers.training --param-counts`` prints the exact
parameter count of every catalog model (``tasks/models.py`` cites them)."""

import signal
import sys
import threading
import traceback

from tasks.artifacts import Scratch

from .errors import InputError, Terminated
from .events import emit, log, report_error
from .loop import train
from .model import abstract_param_count, setup_jax_env
from .spec import load_job

USAGE = "usage: python -m workers.training JOB_JSON_PATH | --param-counts\n"


def _print_param_counts():
    from tasks.models import MODELS

    setup_jax_env("cpu")
    for spec in MODELS.values():
        print(f"{spec.model_id} {abstract_param_count(spec)} (catalog: {spec.param_count})")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--param-counts"]:
        _print_param_counts()
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write(USAGE)
        return 2
    job = None
    # First thing: a SIGTERM during the imports or the compilation must not
    # kill the process with the default action.  The handler only sets the
    # flag; the training loop stops between two steps.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        job = load_job(argv[0])
        train(job, emit, log=log, stop=stop)
        return 0
    except (InputError, Terminated) as exc:
        code, error = exc.exit_code, exc
    except KeyboardInterrupt as exc:
        code, error = 130, exc
    except BaseException as exc:  # noqa: BLE001 - report every failure as one line
        code, error = 1, exc
        if job is not None:
            try:
                with open(Scratch.at(job.run.run_dir).traceback, "w", encoding="utf-8") as fh:
                    fh.write(traceback.format_exc())
            except OSError:
                pass
    report_error(error)
    return code


if __name__ == "__main__":
    sys.exit(main())
