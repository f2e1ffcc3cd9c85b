"""AWS Lambda's entry point, under the names Lambda uses by default:
`lambda_function.lambda_handler` answers API Gateway, Function URL and ALB events with the
app gunicorn serves (tabserve/web/aws_lambda.py, docs/lambda.md). The model loads here, once
per execution environment, during Lambda's init phase; a model or setting that cannot be used
fails the init with one line."""

import gc

from tabserve.serving.process import prepare_process
from tabserve.settings import environment

# before numpy, scikit-learn and xgboost load: as in gunicorn.conf.py
prepare_process(environment())

from tabserve.web.aws_lambda import lambda_handler_from_env  # noqa: E402

lambda_handler = lambda_handler_from_env()
# as gunicorn does once the app is loaded: collections then skip the model and the libraries
gc.collect()
gc.freeze()
