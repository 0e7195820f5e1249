"""The jobs component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="jobs",
    summary="The job queue every component's tasks run on (local jobs table).",
    tables=("powerx_governance.jobs.tables",),
)
