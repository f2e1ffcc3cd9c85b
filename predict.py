"""The WSGI entry point: `gunicorn predict:app` serves the model at MODEL_PATH (default model.bin)."""

import sys

from tabserve.model.bundle import ModelLoadError
from tabserve.web.app import create_app
from tabserve.settings import ConfigError

try:
    app = create_app()
except (ModelLoadError, ConfigError) as err:
    # one line instead of a traceback; gunicorn then stops: never serve without a model
    print(f"error: {err}", file=sys.stderr, flush=True)
    sys.exit(1)
