"""Progress bars of the registry's commands: one tqdm bar per stage of a ``TrainingRun``.

tqdm writes to the command's stderr and turns itself off when that is not a terminal (``disable=None``),
so logs and tests get no carriage-return noise; summaries go to stdout.
"""

from __future__ import annotations

from typing import IO, Any

from tqdm import tqdm

from registry.selectors import STAGE_LABELS


class StageBars:
    """A ``(stage, done, total)`` callback that draws one bar per stage, labelled with ``STAGE_LABELS``.

    Call ``close()`` at the end (closes the last bar). ``disable``: None lets tqdm decide (off when ``file`` is
    not a terminal), True forces the bars off.
    """

    def __init__(self, file: IO[str] | Any, *, disable: bool | None = None) -> None:
        self.file = file
        self.disable = disable
        self.stage = ""
        self.bar: tqdm | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Move the stage's bar to ``done`` of ``total``; a new stage closes the previous bar."""
        if stage != self.stage:
            self.close()
            self.stage = stage
            label = STAGE_LABELS.get(stage, stage)
            self.bar = tqdm(total=total or None, desc=label, file=self.file, disable=self.disable, dynamic_ncols=True)
        if self.bar is None:
            return
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.update(max(0, done - self.bar.n))

    def close(self) -> None:
        """Close the current bar, if any."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
