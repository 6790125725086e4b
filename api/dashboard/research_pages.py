"""The dashboard's research pages (issue 19): sweeps (the caller's sweep jobs and a form to submit
one) and a sweep's page (the heatmap of its objective and the ranked table). They are shells like
every other page (api.dashboard.pages: the same template, the same Content-Security-Policy);
static/research.js fills them from /api/v1/sweeps with the caller's token, and also adds the
Monte Carlo fan to the backtest report page. Kept apart from pages.py so the research views can
grow without touching the trader pages' module.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.dashboard.pages import _page

router = APIRouter(include_in_schema=False)


@router.get("/sweeps")
def sweeps() -> HTMLResponse:
    """The caller's sweep jobs and the form that submits one (the API's 422s shown by field)."""
    return _page("page", "sweeps", "sweeps")


@router.get("/sweeps/{job_id}")
def sweep(job_id: str) -> HTMLResponse:
    """One sweep: the objective over two chosen parameters as a heatmap, and every combination ranked."""
    return _page("page", "sweep", f"sweep {job_id}", job_id)
