# The serving image: gunicorn predict:app on port 9696, as a non-root user (the last stage,
# what `docker build .` makes). The AWS Lambda image: `docker build --target lambda .`.
# Build stage: install the locked runtime packages (a stale lock fails the build), and the
# [lambda] packages apart in /opt/lambda, for the Lambda image only; onnxruntime only for a
# model that needs it. The list comes from
# Pipfile.lock, or with `--build-arg LOCK=uv` from uv.lock (the same versions: docs/uv.md).
FROM python:3.11-slim AS build
ARG LOCK=pipenv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIPENV_VERBOSITY=-1
# the locking tool lives in its own venv so that only the project's packages reach the image
RUN python -m venv /opt/lock && /opt/lock/bin/pip install --quiet \
    "$(if [ "$LOCK" = uv ]; then echo uv==0.13.9; else echo pipenv==2026.10.3; fi)"
WORKDIR /build
COPY Pipfile Pipfile.lock pyproject.toml uv.lock ./
# Test suites inside the wheels are never imported when serving: removed (pip and setuptools
# too: the final stage keeps the base image's). Bytecode is compiled ahead (+50 MB) because
# compiling pandas and scikit-learn at every start doubles the cold start.
# pip installs the lock's own list with its hashes (`pipenv install --system` skipped
# `packaging`, which pipenv's own venv holds at the same version, and gunicorn's gevent worker
# needs it)
RUN if [ "$LOCK" = uv ]; then \
        export="/opt/lock/bin/uv export --locked --no-emit-project --format requirements-txt" \
        && $export --no-default-groups -o requirements.txt && $export --only-group lambda -o lambda.txt \
        && $export --only-group onnx -o onnx.txt; \
    else \
        /opt/lock/bin/pipenv verify \
        && /opt/lock/bin/pipenv requirements --hash > requirements.txt \
        && /opt/lock/bin/pipenv requirements --hash --categories lambda > lambda.txt \
        && /opt/lock/bin/pipenv requirements --hash --categories onnx > onnx.txt; \
    fi \
    && pip install --quiet --no-deps --require-hashes -r requirements.txt \
    && pip install --quiet --no-deps --require-hashes --target /opt/lambda -r lambda.txt \
    && cd /usr/local/lib/python3.11/site-packages \
    && rm -rf pandas/tests numpy/*/tests numpy/tests scipy/*/tests scipy/*/*/tests \
              sklearn/*/tests sklearn/tests pip setuptools \
    && find . /opt/lambda -name __pycache__ -type d -prune -exec rm -rf {} + \
    && python -m compileall -q -j 2 . /opt/lambda > /dev/null
# onnxruntime and onnx (Pipfile's [onnx]) only for a model.bin that holds an ONNX graph, as its
# header declares (` onnx`); any other model's image is built without them. (The site's pip is
# removed above: the locking venv's installs them beside, and what is not there yet is copied.)
COPY model.bin ./
RUN if head -n 1 model.bin | grep -q " onnx"; then \
        /opt/lock/bin/pip install --quiet --no-deps --require-hashes --target /opt/onnx -r onnx.txt \
        && cp -a -n /opt/onnx/. /usr/local/lib/python3.11/site-packages/ \
        && python -m compileall -q -j 2 /usr/local/lib/python3.11/site-packages > /dev/null; \
    fi

# The Lambda image: the same packages, app and model, run by AWS's runtime interface client
# (awslambdaric), which asks Lambda's Runtime API for events and calls
# lambda_function.lambda_handler. Lambda runs it read-only but for /tmp (docs/lambda.md).
FROM python:3.11-slim AS lambda
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MODEL_PATH=/var/task/model.bin
COPY --from=build /usr/local/lib/python3.11/site-packages /usr/local/lib/python3.11/site-packages
COPY --from=build /opt/lambda /usr/local/lib/python3.11/site-packages
RUN useradd --no-create-home --uid 10001 --user-group app
WORKDIR /var/task
COPY lambda_function.py model.bin ./
COPY tabserve ./tabserve
USER app
ENTRYPOINT ["python", "-m", "awslambdaric"]
CMD ["lambda_function.lambda_handler"]

# The serving image
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MODEL_PATH=/app/model.bin PORT=9696
COPY --from=build /usr/local/lib/python3.11/site-packages /usr/local/lib/python3.11/site-packages
COPY --from=build /usr/local/bin/gunicorn /usr/local/bin/gunicorn
# no home: nothing the server runs writes one (gunicorn.conf.py turns off the control socket)
RUN useradd --no-create-home --uid 10001 --user-group app
WORKDIR /app
COPY gunicorn.conf.py predict.py model.bin ./
COPY tabserve ./tabserve
USER app
# 9697: the conventional GRPC_PORT (gRPC is served only when GRPC_PORT is set)
EXPOSE 9696 9697
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=2)"]
# exec form: gunicorn is PID 1 and gets SIGTERM itself, so it drains requests before exiting
CMD ["gunicorn", "predict:app"]
