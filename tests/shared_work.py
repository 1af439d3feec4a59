"""Two slow steps under one root, run by `python -m tests.shared_work FOLDER` through the
suite's luigid: the concurrency test starts two of these at once. Each step records which
process ran it, so the test can tell that every task ran exactly once; the step named by
RF_TEST_FAILING_STEP fails at once, and the other one then takes RF_TEST_HOLD_SECONDS (only
the step named by RF_TEST_HOLDING_STEP, when it is set)."""

import os
import sys
import time
from pathlib import Path

import luigi


class SlowStep(luigi.Task):
    folder = luigi.Parameter()
    name = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"{self.folder}/{self.name}.done")

    def run(self):
        Path(self.folder, f"{self.name}.ran-by-{os.getpid()}").touch()
        # Each step waits until the other one has started: one worker runs one task at a
        # time, so the two steps certainly run in the two runs, however slowly one starts.
        other = "b" if self.name == "a" else "a"
        deadline = time.monotonic() + 60
        while not list(Path(self.folder).glob(f"{other}.ran-by-*")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"step {other} never started in another run")
            time.sleep(0.05)
        if self.name == os.environ.get("RF_TEST_FAILING_STEP"):
            raise RuntimeError(f"step {self.name} fails, as the test asked")
        # With a failing step, the other one outlasts the run that failed by far.
        held = 6 if os.environ.get("RF_TEST_FAILING_STEP") else 2
        if self.name == os.environ.get("RF_TEST_HOLDING_STEP", self.name):
            held = float(os.environ.get("RF_TEST_HOLD_SECONDS", held))
        time.sleep(held)
        with self.output().open("w") as out:
            out.write(str(os.getpid()))


class SharedRoot(luigi.Task):
    folder = luigi.Parameter()

    def requires(self):
        return [SlowStep(folder=self.folder, name=name) for name in ("a", "b")]

    def output(self):
        return luigi.LocalTarget(f"{self.folder}/root.done")

    def run(self):
        Path(self.folder, f"root.ran-by-{os.getpid()}").touch()
        with self.output().open("w") as out:
            out.write(str(os.getpid()))


if __name__ == "__main__":
    from rf_pipelines.errors import BuildFailed
    from rf_pipelines.tasks.runner import build

    try:
        build([SharedRoot(folder=sys.argv[1])], local_scheduler=False)
    except BuildFailed as err:
        print("\n".join(f"Error: {line}" for line in err.lines), file=sys.stderr)
        sys.exit(err.exit_code)
