"""Celery tasks of the catalog: feed ingest (queue ``ingest``), thin wrappers around ``catalog.feeds``.

The web process imports this module (admin enqueues ingests); it imports nothing heavy.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from catalog.feeds import FEED_RUN_TIME_LIMIT_SECONDS, feed_run_execute, feed_run_mark_failed, feeds_ingest_scheduled
from catalog.models import FeedRun

logger = logging.getLogger(__name__)


@shared_task(
    name="catalog.tasks.ingest_feed",
    acks_late=True,
    soft_time_limit=FEED_RUN_TIME_LIMIT_SECONDS - 60,
    time_limit=FEED_RUN_TIME_LIMIT_SECONDS,
)
def ingest_feed(run_id: int) -> str:
    """Do one ``FeedRun`` (``catalog.feeds.feed_run_execute``); returns its final status, or ``"skipped"`` when
    it was not ``queued`` (another worker has it, or it is done: a redelivered message changes nothing).

    Past the soft time limit the run fails with ``time_limit`` (the rows done so far stay).
    """
    try:
        run = feed_run_execute(run_id=run_id)
    except SoftTimeLimitExceeded:
        run = FeedRun.objects.filter(pk=run_id).first()
        if run is not None:
            feed_run_mark_failed(
                run=run, code="time_limit", message="The ingest took longer than its time limit; rows done are kept."
            )
        return FeedRun.Status.FAILED
    return run.status if run is not None else "skipped"


@shared_task(name="catalog.tasks.ingest_scheduled_feeds", acks_late=True, soft_time_limit=300, time_limit=360)
def ingest_scheduled_feeds() -> list[int]:
    """Beat's feed re-ingest: start a run of each scheduled feed (``catalog.feeds.feeds_ingest_scheduled``);
    returns the run ids sent to the ``ingest`` queue."""
    runs = feeds_ingest_scheduled()
    logger.info("scheduled feed ingest: %d run(s) sent", len(runs))
    return [run.pk for run in runs]
