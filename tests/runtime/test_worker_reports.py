"""Reports from worker processes: the line format, the pipe, and the pool's verdict per worker."""

from __future__ import annotations

import os

import pytest

from crank.runtime.worker_reports import (
    ProcessReport,
    ReportWriter,
    WorkerHealth,
    WorkerReport,
    fold_reports,
    with_overdue_tasks,
)

EXPECTED = {"good": ("a.x",), "bad": ("b.y",), "slow": ("c.z",)}


def process(**states: tuple[str, str | None]) -> ProcessReport:
    return ProcessReport(
        tuple(
            WorkerReport(name, EXPECTED[name], state, reason=reason)  # type: ignore[arg-type]
            for name, (state, reason) in states.items()
        )
    )


def test_a_report_survives_the_line_format() -> None:
    report = ProcessReport(
        (
            WorkerReport("good", ("a.x",), "ready"),
            WorkerReport("bad", ("b.y",), "failed", reason="ImportError: no"),
            WorkerReport("slow", ("c.z",), "not_ready", live=False, reason="stuck"),
        )
    )
    line = report.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert ProcessReport.from_line(line) == report
    busy = ProcessReport(report.workers, running=2)
    assert ProcessReport.from_line(busy.to_line()) == busy
    assert report.live is False


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[]",
        b'{"workers": 1}',
        b'{"workers": [{"name": "x", "state": "odd"}]}',
        b'{"workers": [], "running": -1}',
        b'{"workers": [], "running": "1"}',
    ],
)
def test_a_line_that_is_not_a_report_is_refused(line: bytes) -> None:
    with pytest.raises(ValueError):
        ProcessReport.from_line(line)


def test_each_overdue_handler_makes_its_worker_not_live_with_every_reason() -> None:
    report = ProcessReport(
        (
            WorkerReport("good", ("a.x",), "ready"),
            WorkerReport("both", ("b.y", "b.z"), "ready"),
        )
    )
    late = with_overdue_tasks(report, [("b.y", "batch late"), ("b.z", "task late")])
    assert late.workers == (
        WorkerReport("good", ("a.x",), "ready"),
        WorkerReport("both", ("b.y", "b.z"), "ready", live=False, reason="batch late; task late"),
    )
    assert with_overdue_tasks(report, []) is report


def test_the_pool_verdict_per_worker() -> None:
    health = fold_reports(
        EXPECTED,
        [
            process(
                good=("ready", None), bad=("failed", "ImportError: no"), slow=("starting", "setup")
            ),
            process(good=("not_ready", "warming"), bad=("failed", "ImportError: no")),
        ],
    )
    assert health == {
        "bad": WorkerHealth("bad", ("b.y",), "failed", "ImportError: no"),
        "good": WorkerHealth("good", ("a.x",), "ready", None, ready_processes=1),
        "slow": WorkerHealth("slow", ("c.z",), "starting", "setup"),
    }
    assert [w.problem() for w in health.values()] == [
        "worker 'bad' failed to load: ImportError: no",
        None,
        "worker 'slow' is starting: setup",
    ]
    nobody = fold_reports(EXPECTED, [])
    assert (
        nobody["good"].problem() == "worker 'good' is starting: no worker process has reported yet"
    )


def test_the_writer_sends_lines_through_a_pipe_and_notices_a_closed_one() -> None:
    read_fd, write_fd = os.pipe()
    writer = ReportWriter.from_env({"CRANK_REPORT_FD": str(write_fd)})
    report = process(good=("ready", None))
    assert writer.write(report)
    with os.fdopen(read_fd, "rb") as stream:
        assert ProcessReport.from_line(stream.readline()) == report
    # the reader is gone (the supervisor died): the writer says so instead of raising
    assert writer.write(report) is False
    assert writer.fd is None
    os.close(write_fd)
    assert ReportWriter.from_env({}).write(report) is False
