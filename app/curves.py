"""Loss curves of many runs in one answer (a comparison, a sweep)."""

from tasks import registry


def series_json(conn, run_ids, points):
    """The ``SeriesList`` answer for ``run_ids``, in their order, each curve
    downsampled to ``points``."""
    curves = registry.series(conn, run_ids, points)
    data = []
    for run_id in run_ids:
        steps, losses = curves.get(str(run_id), ([], []))
        data.append({"run_id": str(run_id), "steps": steps, "loss": losses})
    return {"points": points, "data": data}
