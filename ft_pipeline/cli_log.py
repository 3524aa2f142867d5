"""Where `ft-pipeline run` sends Dagster's event log: a file it names, and the terminal.

By default the terminal gets the one-line-per-step summary (cli_steps) plus, while a step
runs, what the step itself says: its warnings always, its progress lines (training steps,
rows scored) at most one of a kind every `PROGRESS_EVERY_S` seconds. Every event of every
run (Dagster's DEBUG engine events, stack traces, library warnings) goes to the log file.
`-v` prints Dagster's own console log as well, as `dagster dev` does.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

PROGRESS_EVERY_S = 30.0
FORMAT = "%(asctime)s - %(levelname)s - %(message)s"
MLFLOW_LEVEL = "MLFLOW_LOGGING_LEVEL"
MLFLOW_BARS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def _kind(message: str) -> str:
    """What makes lines "of a kind": their first word, digits dropped ("step 61/282 ..." and
    "step 62/282 ..." are one kind; "resumed from checkpoint" is another)."""
    first = message.split(maxsplit=1)[0] if message.strip() else ""
    return re.sub(r"[\d/.,:%]+", "", first).lower()


class StepEcho(logging.Handler):
    """Prints a step's own messages (not Dagster's engine events), progress throttled."""

    def __init__(self, stream=None, every_s: float = PROGRESS_EVERY_S) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.every_s = every_s
        self.last: dict[tuple[str, str], float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        if meta.get("dagster_event") is not None:  # STEP_START, ASSET_MATERIALIZATION, ...
            return
        message = str(meta.get("orig_message") or record.getMessage()).strip()
        if not message:
            return
        step = meta.get("step_key") or "run"
        key, now = (step, _kind(message)), time.monotonic()
        if record.levelno < logging.WARNING and now - self.last.get(key, -1e9) < self.every_s:
            return
        self.last[key] = now
        if record.levelno < logging.WARNING:  # progress: its first line
            text = message.splitlines()[0]
        else:
            text = f"{record.levelname}: " + message.replace("\n", "\n        ")
        print(f"      {step}: {text}", file=self.stream or sys.stdout, flush=True)


class RunLog:
    """The log file of one `ft-pipeline run` and the Dagster loggers its runs use."""

    def __init__(self, folder: Path, verbose: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = folder / f"run-{stamp}.log"
        n = 1
        while self.path.exists():
            n += 1
            self.path = folder / f"run-{stamp}-{n}.log"
        self.verbose = verbose
        self.file = logging.FileHandler(self.path, encoding="utf-8")
        self.file.setFormatter(logging.Formatter(FORMAT))
        self.file.setLevel(logging.DEBUG)
        self.echo = StepEcho()

    def loggers(self) -> dict[str, dg.LoggerDefinition]:
        """Logger definitions for a job: the file and the step echo (and Dagster's console
        log with -v)."""
        handlers = [self.file] if self.verbose else [self.file, self.echo]

        @dg.logger(description="ft-pipeline run: every event to the named log file")
        def ft_pipeline_cli(_init_context) -> logging.Logger:
            logger = logging.Logger("dagster", level=logging.DEBUG)
            for handler in handlers:
                logger.addHandler(handler)
            return logger

        loggers = {"ft_pipeline_cli": ft_pipeline_cli}
        if self.verbose:
            loggers["console"] = dg.colored_console_logger
        return loggers

    def run_config(self) -> dict:
        """A job uses only the loggers its run config names (else Dagster's console one)."""
        loggers: dict = {name: {} for name in self.loggers()}
        if "console" in loggers:  # as `dagster dev` shows a run: engine events too
            loggers["console"] = {"config": {"log_level": "DEBUG"}}
        return {"loggers": loggers}

    @contextmanager
    def quiet_libraries(self):
        """Without -v: Python warnings go to the file only, and MLflow says only warnings.
        Everything is put back as it was on exit (the CLI also runs inside tests)."""
        if self.verbose:
            yield
            return
        warned = logging.getLogger("py.warnings")
        saved = (warned.propagate, os.environ.get(MLFLOW_LEVEL), os.environ.get(MLFLOW_BARS))
        logging.captureWarnings(True)
        warned.addHandler(self.file)
        warned.propagate = False
        os.environ.setdefault(MLFLOW_LEVEL, "WARNING")
        os.environ.setdefault(MLFLOW_BARS, "false")  # artifact download bars
        mlflow_logger = logging.getLogger("mlflow")
        mlflow_level = mlflow_logger.level
        if "mlflow" in sys.modules:
            mlflow_logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logging.captureWarnings(False)
            warned.removeHandler(self.file)
            warned.propagate = saved[0]
            for name, value in ((MLFLOW_LEVEL, saved[1]), (MLFLOW_BARS, saved[2])):
                if value is None:
                    os.environ.pop(name, None)
            mlflow_logger.setLevel(mlflow_level)

    def close(self) -> None:
        self.file.close()
