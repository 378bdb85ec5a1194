"""The HTTP API: a thin Flask app that validates requests, writes the run
registry and, in the same transaction, the run's message.  It never trains
in-process."""

from flask import Flask

from tasks.broker import get_broker
from tasks.settings import get_settings

from . import (audit, auth, bodies, catalog, checkpoints, console, db, errors, exports, fleet, health, observability, openapi,
               parse, request_slots, run_artifacts, runs, samples, streams, sweeps, users)

#: Largest request body accepted (413 beyond).
MAX_BODY_BYTES = 1024 * 1024


def create_app(test_config=None):
    app = Flask(__name__)
    settings = get_settings()
    app.config.from_mapping(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        SYNC_TIMEOUT_S=settings.sync_timeout_s,
        JSON_SORT_KEYS=False,
        # Test seams (the unit tier, which has no database): users are looked
        # for (app/auth.py) and mutating requests audited (app/audit.py).
        USERS_AUTH=True,
        AUDIT=True,
        # The database's schema, checked here once (app/health.py): refused
        # when it is ahead of this code, if it answers.
        SCHEMA_CHECK=True,
    )
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False
    if app.config["SCHEMA_CHECK"]:
        health.check_schema_at_start(app.config["SETTINGS"].database_url)
    # The process' broker and its connection pool (``tasks/broker.py``), made
    # here, not at import; they open no connection until a request needs one.
    get_broker()

    app.url_map.converters["run_id"] = parse.RunIdConverter
    db.init_app(app)
    errors.init_app(app)
    audit.init_app(app)
    # A request takes an API slot only once it is authenticated and its body
    # is in (slow or anonymous clients hold no slot): in this order.
    auth.init_app(app)
    bodies.init_app(app)
    request_slots.init_app(app)
    observability.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(catalog.bp)
    app.register_blueprint(runs.bp)
    app.register_blueprint(sweeps.bp)
    app.register_blueprint(streams.bp)
    app.register_blueprint(checkpoints.bp)
    app.register_blueprint(samples.bp)
    app.register_blueprint(exports.bp)
    app.register_blueprint(run_artifacts.bp)
    app.register_blueprint(fleet.bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(console.bp)
    return app
