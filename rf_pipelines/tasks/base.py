"""The shared task base: version, output paths, markers, failure messages."""

import traceback

import luigi

from rf_pipelines import config
from rf_pipelines.errors import PermanentError
from rf_pipelines.targets import MarkerTarget, output_url, target_for


class RfTask(luigi.Task):
    """Base of every rf_pipelines task.

    Subclasses set ``workflow`` (the output folder), bump ``version`` whenever their logic
    changes (outputs then go to a new path and marker; the old ones stay readable), and
    implement ``object_id()``: the id of the thing they work on (an upload, a scene).
    """

    workflow = "misc"
    version = 1

    def object_id(self):
        """The id of the object this task works on; one path segment."""
        raise NotImplementedError

    @property
    def written_by(self):
        """Recorded with everything the task writes: ``TaskFamily@vN``."""
        return f"{self.task_family}@v{self.version}"

    def output_url(self, name):
        """URL of one of this task's output files under the data root."""
        return output_url(
            config.settings().data_root,
            self.workflow,
            self.object_id(),
            self.task_family,
            self.version,
            name,
        )

    def file_target(self, name, binary=True):
        """An atomic file target for ``output_url(name)``."""
        return target_for(self.output_url(name), binary=binary)

    def marker_target(self):
        """A Postgres marker for database steps; the version is part of the marker id."""
        return MarkerTarget(
            marker_id=f"{self.task_id}@v{self.version}",
            task_family=self.task_family,
            task_version=self.version,
            params=self.to_str_params(only_significant=True),
        )

    def on_failure(self, exception):
        """Bad input gets its one-line message; anything else its traceback too."""
        if isinstance(exception, PermanentError):
            return f"{type(exception).__name__}: {exception}"
        return traceback.format_exc()
