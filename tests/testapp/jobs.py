"""Tasks in a module that is not called tasks.py: found through TASKQ["TASK_MODULES"]."""

from django_taskq import shared_task


@shared_task
def from_jobs_module(x):
    return x * 2
