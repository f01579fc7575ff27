"""The Flask example app, instrumented by moesif-agent.

Configured by the environment: MOESIF_APPLICATION_ID and MOESIF_BASE_URI (for instance the
local collector, http://127.0.0.1:8787). EXAMPLE_INSTRUMENT=0 serves the bare app.

    gunicorn examples.flask_app:app
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request

from moesif_agent.integrations.flask import Moesif


def create_app(instrument: bool = True) -> Flask:
    app = Flask(__name__)

    @app.get("/items/<item_id>")
    def get_item(item_id: str) -> Response:
        return jsonify(id=item_id, name=f"item {item_id}")

    @app.post("/items")
    def create_item() -> tuple[Response, int]:
        return jsonify(request.get_json(force=True, silent=True)), 201

    @app.get("/stream")
    def stream() -> Response:
        chunks = int(request.args.get("chunks", 5))
        delay = float(request.args.get("delay", 0.05))

        def generate() -> Iterator[bytes]:
            for n in range(chunks):
                if n:
                    time.sleep(delay)
                yield f"data: chunk {n}\n\n".encode()

        return Response(generate(), mimetype="text/event-stream")

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok")

    @app.get("/error")
    def error() -> Response:
        raise RuntimeError("the example app failed on purpose")

    if instrument:
        Moesif(app)
    return app


app = create_app(instrument=os.environ.get("EXAMPLE_INSTRUMENT", "1") != "0")
