"""The jobs component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="jobs",
    summary="The job queue every component's tasks run on (local jobs table, or procrastinate).",
    tables=("powerx_governance.jobs.tables",),
    routers=("powerx_governance.jobs.routes:router",),
    commands={
        "jobs": "powerx_governance.jobs.cli:jobs_app",
        "worker": "powerx_governance.jobs.worker:worker_command",
    },
    settings="powerx_governance.jobs.settings:read_settings",
    install="powerx_governance.jobs.prune:install",
)
