"""Every seed scenario as a Python example (``examples/python``), each run
as a script in its own process and working directory, its output checked
against what the seed's program must print."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"


def run(name, tmp_path, expect_rc=0):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert proc.returncode == expect_rc, proc.stdout + proc.stderr
    return proc.stdout, proc.stderr


# Lines printed by concurrent processes may interleave (a print's text and
# its newline are two writes), so those checks count substrings of the
# whole output.


def test_every_example_is_checked():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(CHECKS), scripts ^ set(CHECKS)


def check_process(out, _):
    assert out.count("主") == 1
    for who in ("egon", "alex"):
        assert out.count(f"{who} piaoing") == 1
        assert out.index(f"{who} piaoing") < out.index(f"{who} piao end")


def check_lock(out, _):
    lines = out.splitlines()  # under the lock: one process prints at a time
    assert len(lines) == 6
    for i in range(0, 6, 2):  # each process runs and is done before the next runs
        pid = lines[i].split()[0]
        assert lines[i : i + 2] == [f"{pid} is running", f"{pid} is done"]


def check_ticket(out, _):
    assert out.count("查到的余票数 [1]") == 5
    assert out.count("购票成功") == 1


def check_queue_001(out, _):
    assert out.splitlines() == ["True", "1", "2", "3", "True"]


def check_producer_consumer(out, _):
    assert {i: out.count(f"消费者吃了包子{i}") for i in range(3)} == {0: 3, 1: 3, 2: 3}
    assert out.count("None") == 2 and out.rstrip().endswith("主")


def check_joinable(out, _):
    assert out.count(" 吃 ") == 9 and out.count(" 生产了 ") == 9
    assert out.rstrip().endswith("主")


def check_queue_002(out, _):
    assert out.splitlines() == [
        "False",
        "True",
        "消息列队已满,现有消息数量:3",
        "消息列队已满,现有消息数量:3",
        "消息1",
        "消息2",
        "消息3",
    ]


def check_write_read(out, _):
    lines = out.splitlines()  # one process at a time
    assert [line for line in lines if line.startswith("Get")] == [f"Get {v} from queue." for v in "ABC"]
    assert lines[-1] == "所有数据都写入并且读完"


def check_pool(out, _):
    lines = out.splitlines()  # one worker at a time (apply waits)
    got = [line.split(":")[-1] for line in lines if line.startswith("reader从Queue获取到消息")]
    assert got == list("dongGe")
    assert lines[-1].endswith("End")


def check_pipe(out, _):
    assert out.splitlines() == ["Hello The_Third_Wave"]


def check_pipe_lock(out, stderr):
    # One consumer holds the end; another that tries while it lives fails
    # at once, clearly (one that comes after it ended takes the end over).
    assert stderr.count("Traceback") == stderr.count("is in use by process"), stderr
    assert out.count("吃了") == 10
    for i in range(10):
        assert out.count(f"吃了egon生产泔水{i}") == 1


def check_dict_ticket(out, _):
    assert out.count("抢票成功") == 1 and out.count("没有票") == 4
    assert out.rstrip().endswith("最后余票 0")


def check_queue_004(out, stderr):
    assert out.splitlines() == ["1", "2"]
    assert "Empty" in stderr.splitlines()[-1]


CHECKS = {
    "seed001_process.py": (check_process, 0),
    "seed001_lock.py": (check_lock, 0),
    "seed001_ticket.py": (check_ticket, 0),
    "seed001_queue.py": (check_queue_001, 0),
    "seed001_producer_consumer.py": (check_producer_consumer, 0),
    "seed001_joinable.py": (check_joinable, 0),
    "seed002_queue.py": (check_queue_002, 0),
    "seed002_write_read.py": (check_write_read, 0),
    "seed002_pool_manager_queue.py": (check_pool, 0),
    "seed003_pipe.py": (check_pipe, 0),
    "seed003_pipe_lock.py": (check_pipe_lock, 0),
    "seed004_manager_dict_ticket.py": (check_dict_ticket, 0),
    "seed004_queue.py": (check_queue_004, 1),
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example(name, tmp_path):
    check, rc = CHECKS[name]
    out, stderr = run(name, tmp_path, rc)
    check(out, stderr)
