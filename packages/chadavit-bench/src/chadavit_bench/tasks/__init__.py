"""The task registry: one module per task, each defining `TASK` (see `tasks.base.Task`).

Adding a task is one new module here plus its name in `TASK_MODULES`; the CLI's help and task list,
the runner's plan, the headline scores and the report all read the registry. Task modules import
their protocols (scikit-learn, matplotlib) inside their functions, so reading the registry is cheap.
"""

from __future__ import annotations

import importlib

from chadavit_bench.tasks.base import Flag, Headline, Job, Skip, Task, TaskOutput

# In this order: in `--help`, in `run-all`, in the headline scores and in the report.
TASK_MODULES = ("knn", "linear", "regression", "reconstruction", "joint", "chammi", "attention")

REGISTRY: dict[str, Task] = {
    name: importlib.import_module(f"{__name__}.{name}").TASK for name in TASK_MODULES
}
TASKS = tuple(REGISTRY)
TASK_HELP = {name: task.help for name, task in REGISTRY.items()}

__all__ = ["REGISTRY", "TASKS", "TASK_HELP", "Flag", "Headline", "Job", "Skip", "Task", "TaskOutput"]
