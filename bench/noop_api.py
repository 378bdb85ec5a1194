"""The HTTP layer's own ceiling: a Flask app whose submit does nothing.

``python -m bench load`` serves it with the API's gunicorn settings (gthread,
1 process, the same threads) and drives it with the same clients, so the
figures beside ours say how much of the machine the WSGI stack alone takes
before any validation, database write or worker runs.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/api/tunix/run")
def submit():
    body = request.get_json()
    return jsonify(id="0" * 32, status="pending", **body), 202
