"""``alliance projector`` as a subprocess beside a ``Service`` (its environment, its own log)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable

from tests.faults.service import Service, alliance_command


class Projector:
    def __init__(self, service: Service, name: str, *, extra_env: dict[str, str] | None = None) -> None:
        self.log = service.home / f"projector-{name}.log"
        # info: the "leadership" lines say which projector leads
        self.env = {**service.env, "ALLIANCE_LOG_LEVEL": "info", **(extra_env or {})}
        self.code = service.code
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*alliance_command(self.code), "projector", *args], env=self.env,
                                         cwd=self.code, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def leads(self, leader: str = "projections") -> bool:
        """Whether its log says it took ``leader`` (and has not said it stood down since)."""
        state = None
        for line in self.text().splitlines():
            if '"leadership"' in line and f'"leader": "{leader}"' in line.replace('":"', '": "'):
                state = "standing by" not in line
        return bool(state)

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def wait_for(condition: Callable[[], bool], *, within: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True

