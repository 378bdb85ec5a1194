"""CSV answers (``/runs.csv``, a sweep's ``trials.csv``, a run's
``metrics.csv``): the rows the JSON answers hold, one per line, for a
spreadsheet or pandas.

Each cell is the JSON value as text, so a CSV equals its JSON answer cell by
cell: null is empty, true and false are spelled so, numbers as JSON writes
them, an object or list as its compact JSON.  Written by the stdlib ``csv``
module (quoting as RFC 4180: a comma, quote or line break quotes the cell).

NOTE: cells are not escaped for spreadsheets: a run named ``=SUM(A1)``
reads as a formula in Excel.  The data is written as it is (a CSV that
differs from the API's rows would be wrong for every other reader).
"""

import csv
import io
import json

from flask import Response


def cell(value):
    """``value`` (a JSON answer's) as one CSV cell."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def csv_answer(filename, header, rows):
    """A ``text/csv`` answer of ``rows`` (lists of JSON values, in the order
    of ``header``), to be saved as ``filename``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([cell(v) for v in row] for row in rows)
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
