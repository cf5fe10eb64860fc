"""Logs in Docker's json-file format: what tools that read Docker's logs read, with tail,
since/until, the streams apart, and follow that ends when the container ends."""

from __future__ import annotations

import json
import threading
import time

import pytest

from isolate.container import Container, ContainerConfig, ContainerStore
from isolate.container.logs import parse_log_time
from isolate.container.state import parse_time
from isolate.errors import ConfigError

pytestmark = pytest.mark.root


def finished(cs: ContainerStore, script: str) -> Container:
    c = cs.create(ContainerConfig("busybox", ["sh", "-c", script]))
    c.start()
    c.wait(timeout=60)
    return c


def test_the_file_is_dockers_json_file(containers: ContainerStore) -> None:
    c = finished(containers, "printf 'a\\n'; printf 'b\\n' >&2; printf 'no newline'")
    with open(c.log_path, "rb") as f:
        lines = f.read().splitlines()
    records = [json.loads(line) for line in lines]
    # Each stream in its order (two pipes: their interleaving is not kept, as in Docker).
    assert [r["log"] for r in records if r["stream"] == "stdout"] == ["a\n", "no newline"]
    assert [r["log"] for r in records if r["stream"] == "stderr"] == ["b\n"]
    for r in records:
        assert list(r) == ["log", "stream", "time"]
        assert r["time"].endswith("Z") and len(r["time"].split(".")[1]) == 10
        assert parse_time(r["time"]) > 0


def test_tail_streams_since_and_until(containers: ContainerStore) -> None:
    c = finished(containers, "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done")
    # The two streams are two pipes: the log keeps each in order, not their interleaving.
    assert list(c.logs(tail=2)) == list(c.logs())[-2:]
    assert [r.text for r in c.logs(stderr=False, tail=2)] == ["out4\n", "out5\n"]
    assert [r.text for r in c.logs(stdout=False)][:2] == ["err1\n", "err2\n"]
    assert list(c.logs(tail=0)) == []
    records = list(c.logs())
    middle = records[4].time
    assert [r.text for r in c.logs(since=middle)] == [r.text for r in records[4:]]
    assert [r.text for r in c.logs(until=middle)] == [r.text for r in records[:4]]
    assert list(c.logs(since="1h")) == records
    assert list(c.logs(until=0)) == []
    with pytest.raises(ConfigError):
        list(c.logs(tail=-1))
    with pytest.raises(ConfigError):
        parse_log_time("yesterday")


def test_since_and_until_take_a_datetime_though_logs_never_import_the_module() -> None:
    import datetime

    when = datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc)
    assert parse_log_time(when) == parse_log_time("2023-11-14T22:13:20Z") \
        == 1_700_000_000 * 10**9


def test_follow_reads_on_and_ends_with_the_container(containers: ContainerStore) -> None:
    c = containers.create(ContainerConfig("busybox", [
        "sh", "-c", "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second; "
        "echo third"]))
    c.start()
    seen: list[str] = []
    done = threading.Event()

    def follow() -> None:
        for rec in c.logs(follow=True):
            seen.append(rec.text)
        done.set()

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    while "first\n" not in seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert seen == ["first\n"] and not done.is_set()
    c.exec_run(["touch", "/tmp/go"])
    assert done.wait(timeout=60)
    t.join()
    assert seen == ["first\n", "second\n", "third\n"]


def test_long_lines_are_split_as_docker_splits_them(containers: ContainerStore) -> None:
    c = finished(containers, "head -c 40000 /dev/zero | tr '\\0' x; echo")
    texts = [r.text for r in c.logs()]
    assert [len(t) for t in texts] == [16384, 16384, 40000 - 32768 + 1]
    assert "".join(texts) == "x" * 40000 + "\n"


def test_rotated_files_are_read_oldest_first(containers: ContainerStore) -> None:
    c = finished(containers, "echo current")
    def record(text: str, second: int) -> str:
        return json.dumps({"log": text, "stream": "stdout",
                           "time": f"2020-01-01T00:00:{second:02d}.000000001Z"}) + "\n"
    with open(c.log_path + ".2", "w") as f:
        f.write(record("oldest\n", 1))
    with open(c.log_path + ".1", "w") as f:
        f.write(record("older\n", 2) + '{"torn": ')
    texts = [r.text for r in c.logs()]
    assert texts == ["oldest\n", "older\n", "current\n"]
    assert [r.text for r in c.logs(tail=2)] == ["older\n", "current\n"]
    assert [r.text for r in c.logs(follow=True)] == texts
