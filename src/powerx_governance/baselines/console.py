"""Console pages of groups and of a plugin's fleet view."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
