"""The FastAPI application of `powerx version serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from powerx_governance import __version__
from powerx_governance.api import docs, openapi, problems
from powerx_governance.api.edge import EdgeGuard
from powerx_governance.components import COMPONENTS
from powerx_governance.console.rendering import STATIC_URL, refused_page, static_files
from powerx_governance.kernel import Component, ComponentError, resolve
from powerx_governance.service import GovernanceService


def _router(reference: str, owner: str) -> APIRouter:
    found = resolve(reference, owner)
    if not isinstance(found, APIRouter):
        raise ComponentError(f"component {owner!r}: {reference} is not a FastAPI APIRouter")
    return found


def create_app(
    service: GovernanceService, *, background: bool = True, components: tuple[Component, ...] = COMPONENTS
) -> FastAPI:
    """The app: every component's API routers, then the console's; with `background` the job worker
    and scheduler run while it serves."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if background:
            service.start()
        try:
            yield
        finally:
            if background:
                service.stop()

    title = "PowerX Version Governance"
    app = FastAPI(
        title=title,
        version=__version__,
        description="Plugin version posture, prioritised patches and decisions for every PowerX tenant.",
        lifespan=lifespan,
        docs_url=None,  # docs.install serves it from shipped files
        redoc_url=None,  # ReDoc loads from a CDN; /docs is the one API page
    )
    app.state.service = service
    docs.install(app, title=title)
    problems.install(app)
    openapi.install(app)
    app.add_middleware(EdgeGuard, pages=refused_page)
    app.add_middleware(
        problems.BodyLimit, limit=service.settings.max_body_bytes
    )  # outermost: bounds what the guard reads
    for component in components:
        for reference in component.routers:
            app.include_router(_router(reference, component.name))
    app.mount(STATIC_URL, static_files(), name="console-static")  # before the console's catch-all page
    for component in components:
        for reference in component.console_routers:
            app.include_router(_router(reference, component.name))

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"description": "the store does not answer", "content": {"application/json": {}}}},
    )
    def readyz() -> JSONResponse:
        """The store answers."""
        try:
            with service.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any database failure means not ready
            return JSONResponse({"status": "unavailable", "detail": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}
        },
    )
    def metrics() -> Response:
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
