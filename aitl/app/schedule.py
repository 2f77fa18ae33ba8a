"""The scheduler's cron jobs, kept in step with the schedules an admin edits in App Home.

Jobs only queue work for the worker (or do something short); a job's cron is re-read while the
scheduler runs, so a change in App Home applies at the next poll instead of the next restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from apscheduler.schedulers.background import BackgroundScheduler

from aitl.core.crontab import cron_trigger

log = logging.getLogger(__name__)
Job = Callable[[], object]


class Schedule:
    """APScheduler jobs by id, each with the crontab it was last given."""

    def __init__(self, functions: Mapping[str, Job], crons: Mapping[str, str]) -> None:
        self.functions = dict(functions)
        self.crons = {job_id: crons[job_id] for job_id in self.functions}
        self.jobs = self._scheduler()

    @property
    def running(self) -> bool:
        return bool(self.jobs.running)

    def start(self) -> None:
        self.jobs.start()

    def pause(self) -> None:
        """Stop firing (leadership lost); ``start`` resumes with a fresh scheduler."""
        if self.jobs.running:
            self.jobs.shutdown(wait=True)
        self.jobs = self._scheduler()

    def sync(self, crons: Mapping[str, str]) -> dict[str, str]:
        """Apply changed crontabs to their jobs; returns the ones that changed."""
        changed = {
            job_id: cron
            for job_id, cron in crons.items()
            if job_id in self.functions and cron != self.crons[job_id]
        }
        for job_id, cron in changed.items():
            self.jobs.reschedule_job(job_id, trigger=cron_trigger(cron))
            self.crons[job_id] = cron
            log.info("scheduler: %s now runs at '%s' (UTC)", job_id, cron)
        return changed

    def next_runs(self) -> dict[str, object]:
        """When each job fires next (None until the scheduler leads)."""
        return {job.id: getattr(job, "next_run_time", None) for job in self.jobs.get_jobs()}

    def _scheduler(self) -> BackgroundScheduler:
        jobs = BackgroundScheduler(timezone="UTC")
        for job_id, func in self.functions.items():
            jobs.add_job(
                func,
                cron_trigger(self.crons[job_id]),
                id=job_id,
                max_instances=1,
                coalesce=True,
            )
        return jobs
