"""flashsale's HTTP API: FastAPI routes over the engine. Build it with `api.app.create_app`."""
