"""Tenant manifests from the PowerX tenant directory service over HTTP.

`GET {base}/internal/tenants?page_size=N&page_token=T` lists tenants page by page;
`GET {base}/internal/tenants/{tenant_uuid}/manifest` answers one tenant's manifest (DESIGN §4).
The whole list is read first (a page that cannot be read makes the source unavailable: the
scan could not know it is incomplete), then manifests are fetched concurrently. A tenant whose
manifest cannot be fetched or validated is yielded with a problem naming it, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import islice
from typing import Annotated, Final, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from powerx_governance.errors import InputProblem
from powerx_governance.http.client import (
    ErrorCallback,
    HttpPolicy,
    HttpSourceError,
    RetryingClient,
    request_headers,
)
from powerx_governance.inventory.loader import ManifestResult, manifest_from_data
from powerx_governance.sources.interface import SourceUnavailableError

MAX_MANIFEST_BYTES: Final = 16 * 1024 * 1024
MAX_PAGE_BYTES: Final = 16 * 1024 * 1024
_IN_FLIGHT_PER_WORKER: Final = 4  # enough queued work to keep workers busy, bounded memory

T = TypeVar("T")
R = TypeVar("R")


class _TenantRef(msgspec.Struct, frozen=True):
    tenant_uuid: Annotated[str, msgspec.Meta(min_length=1)]


class _TenantPage(msgspec.Struct, frozen=True):
    tenants: tuple[_TenantRef, ...]
    next_page_token: str | None = None


_PAGE_DECODER: Final = msgspec.json.Decoder(_TenantPage)


def check_base_url(base_url: str) -> str:
    """`base_url` without its trailing slash; ValueError unless it is an absolute http(s) URL."""
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"expected an http(s) base URL, got {base_url!r}")
    return base_url.rstrip("/")


def _bounded_map(
    pool: ThreadPoolExecutor, work: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """`work` over `items` on `pool`, at most `window` in flight, results in completion order."""
    pending = iter(items)
    in_flight: set[Future[R]] = {pool.submit(work, item) for item in islice(pending, window)}
    try:
        while in_flight:
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            in_flight |= {pool.submit(work, item) for item in islice(pending, len(done))}
            for future in done:
                yield future.result()
    finally:
        for future in in_flight:  # the consumer stopped early: drop what has not started
            future.cancel()


def _failed(url: str, tenant_uuid: str, field_name: str | None, error: str) -> ManifestResult:
    problem = InputProblem(url, f"tenant {tenant_uuid}", field_name, error, tenant_uuid)
    return ManifestResult(url, None, problem)


def _for_listed_tenant(result: ManifestResult, url: str, tenant_uuid: str) -> ManifestResult:
    """The validated result, its problem attributed to the listed tenant, or a tenant mismatch."""
    if result.problem is not None:
        problem = replace(result.problem, record=f"tenant {tenant_uuid}", tenant_uuid=tenant_uuid)
        return ManifestResult(url, None, problem)
    if result.manifest is not None and result.manifest.tenant_uuid != tenant_uuid:
        return _failed(
            url, tenant_uuid, "tenant_uuid", f"manifest is for tenant {result.manifest.tenant_uuid!r}"
        )
    return result


@dataclass(frozen=True)
class HttpTenantSource:
    """The PowerX tenant directory service (`TenantSource`)."""

    base_url: str
    token: str | None = field(default=None, repr=False)
    policy: HttpPolicy = field(default_factory=HttpPolicy)
    page_size: int = 500
    workers: int = 8
    name: str = "tenant-directory"
    on_error: ErrorCallback | None = field(default=None, repr=False, compare=False)
    max_manifest_bytes: int = MAX_MANIFEST_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", check_base_url(self.base_url))
        if self.page_size < 1 or self.workers < 1:
            raise ValueError("page_size and workers must be at least 1")

    def manifests(self, tenants: Iterable[str] | None = None) -> Generator[ManifestResult, None, None]:
        """Every listed tenant's manifest (or only `tenants`, without listing), in completion order.

        Closing the generator early stops the fetches that have not started and closes the client.
        """
        with self._client() as client:
            uuids = list(dict.fromkeys(tenants)) if tenants is not None else self._list_tenants(client)
            with ThreadPoolExecutor(self.workers, thread_name_prefix=self.name) as pool:
                fetch = partial(self._manifest, client)
                yield from _bounded_map(pool, fetch, uuids, self.workers * _IN_FLIGHT_PER_WORKER)

    def _client(self) -> RetryingClient:
        return RetryingClient(
            self.name,
            self.policy,
            headers=request_headers(self.token),
            on_error=self.on_error,
            max_connections=self.workers,
        )

    def _list_tenants(self, client: RetryingClient) -> list[str]:
        """Every tenant uuid, in listing order, once each."""
        uuids: dict[str, None] = {}
        token: str | None = None
        seen_tokens: set[str] = set()
        while True:
            page = self._page(client, token)
            uuids.update(dict.fromkeys(ref.tenant_uuid for ref in page.tenants))
            token = page.next_page_token
            if not token:
                return list(uuids)
            if token in seen_tokens:
                raise SourceUnavailableError(self.name, f"tenant listing repeats page token {token!r}")
            seen_tokens.add(token)

    def _page(self, client: RetryingClient, token: str | None) -> _TenantPage:
        url = f"{self.base_url}/internal/tenants"
        params: dict[str, str | int] = {"page_size": self.page_size}
        if token:
            params["page_token"] = token
        try:
            return _PAGE_DECODER.decode(client.request("GET", url, params=params, limit=MAX_PAGE_BYTES))
        except HttpSourceError as exc:
            raise SourceUnavailableError(self.name, f"cannot list tenants: {exc.message}") from exc
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise SourceUnavailableError(self.name, f"unusable tenant list from {url}: {exc}") from exc

    def _manifest(self, client: RetryingClient, tenant_uuid: str) -> ManifestResult:
        """One tenant's validated manifest, or a problem naming the tenant; never raises for bad input."""
        url = f"{self.base_url}/internal/tenants/{quote(tenant_uuid, safe='')}/manifest"
        try:
            body = client.request("GET", url, limit=self.max_manifest_bytes)
        except HttpSourceError as exc:
            return _failed(url, tenant_uuid, None, exc.summary)
        try:
            raw = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            return _failed(url, tenant_uuid, None, f"invalid JSON: {exc}")
        return _for_listed_tenant(manifest_from_data(raw, url), url, tenant_uuid)
