"""The web wing: the Flask app factory and routes, WSGI middleware, the Open Inference
Protocol, the OpenAPI document, metrics, settings and logs. It serves what `serving` answers;
nothing else imports it but the entry points (`predict.py`, `gunicorn.conf.py`)."""
