"""One function run in a forked child process beside the parent, handing results back by name.

The export pipeline traces the int8 file in one process and the float and QONNX files in another: each
trace is single-threaded Python (most of the main job's time), so two cores halve the wall time. fork
shares the loaded models with the child without pickling them; only what the child sends (serialized
ONNX bytes, arrays, dicts) crosses the pipe. With fork=False, or where fork does not exist, the function
runs inline first, in this process, and .get hands back what it sent.
"""
from __future__ import annotations

import multiprocessing
import traceback
from typing import Any, Callable

Send = Callable[[str, Any], None]
_DONE, _ERROR = "__done__", "__error__"


class ChildFailed(RuntimeError):
    """The child raised an exception that could not be sent back as itself."""


class Forked:
    """Forked(job) starts job(send) in a child; .get(name) waits for what the child sent as `name`.
    An exception in the child is raised again by .get in the parent (the same type where it pickles).
    .forked: whether the job runs in a child process (fork=False runs it inline)."""

    def __init__(self, job: Callable[[Send], None], fork: bool = True):
        self._received: dict[str, Any] = {}
        self._finished = False
        self.forked = fork and "fork" in multiprocessing.get_all_start_methods()
        if not self.forked:
            self._run_inline(job)
            return
        context = multiprocessing.get_context("fork")
        self._pipe, child_end = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(job, child_end), daemon=True)
        self._process.start()
        child_end.close()

    def _run_inline(self, job) -> None:
        self._process = None
        try:
            job(lambda name, value: self._received.__setitem__(name, value))
        except BaseException as exc:  # raised by get(), as in the forked case
            self._received[_ERROR] = exc
        self._finished = True

    def get(self, name: str) -> Any:
        while name not in self._received:
            if _ERROR in self._received:
                raise self._received[_ERROR]
            if self._finished:
                raise ChildFailed(f"the export's child process ended without sending {name!r}")
            try:
                key, value = self._pipe.recv()
            except EOFError:
                self._finish()
                raise ChildFailed(f"the export's child process died (exit code {self._process.exitcode}) "
                                  f"before sending {name!r}") from None
            except Exception as exc:  # a result or an exception that does not unpickle here
                self.close()
                raise ChildFailed(f"cannot read what the export's child process sent: {exc}") from exc
            if key == _DONE:
                self._finish()
            else:
                self._received[key] = value
        return self._received[name]

    def _finish(self) -> None:
        self._finished = True
        if self._process is not None:
            self._process.join()
            self._pipe.close()

    def close(self) -> None:
        """Stop the child if it still runs (the parent failed first)."""
        if self._process is not None and not self._finished:
            self._process.kill()
            self._finish()


def _child(job, pipe) -> None:
    try:
        job(lambda name, value: pipe.send((name, value)))
        pipe.send((_DONE, None))
    except BaseException as exc:
        try:
            pipe.send((_ERROR, exc))
        except Exception:  # an exception that does not pickle: its text
            pipe.send((_ERROR, ChildFailed("".join(traceback.format_exception(exc)).rstrip())))
    finally:
        pipe.close()
