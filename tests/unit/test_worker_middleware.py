"""Worker middleware: the pure parts (no database)."""

import dramatiq
from dramatiq.brokers.stub import StubBroker

from tasks import errors
from workers.middleware import AdmitAfterClaim, AdmitAfterEnd, RunMetrics, RunRegistry, worker_middleware
from workers.middleware.run_registry import TRACEBACK_LINES, _exit_code, describe


def raised(exc):
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_an_error_with_details_is_described_by_them_without_a_traceback():
    # Given a platform error carrying details
    exc = raised(errors.UnknownModel("unknown model 'x'; known models: a, b", field="model_id"))
    # When it is described for the run's `error`
    error = describe(exc)
    # Then the type, message and details are kept, and no traceback
    assert error == {"type": "UnknownModel", "message": "unknown model 'x'; known models: a, b",
                     "code": "unknown_model", "field": "model_id"}


def test_an_unexpected_error_is_described_with_the_end_of_its_traceback():
    # Given an unexpected exception raised deep in a recursion
    def deep(n):
        if n == 0:
            raise ZeroDivisionError("division by zero")
        deep(n - 1)

    try:
        deep(60)
    except ZeroDivisionError as exc:
        error = describe(exc)
    # Then the traceback is kept, bounded, and ends with the error line
    assert error["type"] == "ZeroDivisionError"
    assert error["message"] == "division by zero"
    assert 0 < len(error["traceback"]) <= TRACEBACK_LINES
    assert error["traceback"][-1] == "ZeroDivisionError: division by zero"


def test_an_error_without_a_message_is_described_by_its_repr():
    error = describe(raised(TimeoutError()))
    assert error["type"] == "TimeoutError"
    assert error["message"] == "TimeoutError()"


def test_a_stopped_run_names_the_final_status_it_ends_in():
    assert errors.RunCancelled("x").status == "cancelled"
    assert errors.RunTimedOut("x").status == "timeout"
    assert isinstance(errors.RunCancelled("x"), errors.RunFailed)


def test_the_exit_code_is_read_from_a_dict_result_only():
    assert _exit_code({"exit_code": 0}) == 0
    assert _exit_code({"kind": "dry_run"}) is None
    assert _exit_code(None) is None
    assert _exit_code("done") is None


OURS = (RunMetrics, AdmitAfterEnd, RunRegistry, AdmitAfterClaim)


def test_the_registry_claims_last_but_for_the_admission_after_a_claim_and_finishes_first():
    # Given the worker's middleware as added to a broker
    broker = StubBroker()
    for middleware in worker_middleware(pool=None, worker_id="host:1", hostname="host", heartbeat_timeout_s=30):
        broker.add_middleware(middleware)
    # Then only the admission after a claim follows RunRegistry: `before_*`
    # hooks run in order, so that pass sees the claim committed
    assert isinstance(broker.middleware[-1], AdmitAfterClaim)
    assert isinstance(broker.middleware[-2], RunRegistry)
    assert broker.middleware[-2].worker_id == "host:1"
    # And RunMetrics and the admission after an end come before it: `after_*`
    # hooks run in reverse, so they see the status the registry recorded
    ours = [type(m) for m in broker.middleware if isinstance(m, OURS)]
    assert ours == list(OURS)


def test_without_metrics_the_registry_and_the_admission_keep_their_places():
    middleware = worker_middleware(pool=None, worker_id="h:1", hostname="h", heartbeat_timeout_s=30, metrics=False)
    assert not any(isinstance(m, RunMetrics) for m in middleware)
    assert [type(m) for m in middleware[-3:]] == [AdmitAfterEnd, RunRegistry, AdmitAfterClaim]


def test_run_metrics_ignore_a_message_the_registry_did_not_claim():
    # Given a message no run was claimed for (skipped)
    message = dramatiq.Message(queue_name="q", actor_name="a", args=("x",), kwargs={}, options={})
    # When the metrics hook runs
    # Then it records nothing and raises nothing
    RunMetrics().after_process_message(None, message, result=None, exception=None)
