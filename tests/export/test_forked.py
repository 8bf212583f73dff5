import os

import numpy as np
import pytest

from limuse_export.forked import ChildFailed, Forked


def test_results_arrive_by_name_in_any_order_of_asking():
    shared = np.arange(5)  # inherited by the fork, not pickled

    def job(send):
        send("first", os.getpid())
        send("second", shared * 2)

    child = Forked(job)
    assert np.array_equal(child.get("second"), np.arange(5) * 2)
    assert child.get("first") != os.getpid()  # it ran in another process
    child.close()


def test_an_exception_in_the_child_is_raised_again_in_the_parent():
    def job(send):
        send("ok", 1)
        raise ValueError("--out: no such folder; expected a folder")

    child = Forked(job)
    assert child.get("ok") == 1
    with pytest.raises(ValueError, match="no such folder"):
        child.get("never")


def test_a_child_that_dies_is_a_clear_error():
    child = Forked(lambda send: os._exit(3))
    with pytest.raises(ChildFailed, match="exit code 3"):
        child.get("anything")


def test_asking_for_what_the_child_never_sends():
    child = Forked(lambda send: send("a", 1))
    with pytest.raises(ChildFailed, match="without sending 'b'"):
        child.get("b")


def test_without_fork_the_job_runs_inline_in_this_process():
    def job(send):
        send("pid", os.getpid())
        raise ValueError("after sending")

    side = Forked(job, fork=False)
    assert not side.forked
    assert side.get("pid") == os.getpid()
    with pytest.raises(ValueError, match="after sending"):
        side.get("never")
    side.close()
