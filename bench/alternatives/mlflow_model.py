"""MLflow's pyfunc flavour of the course model, for `bench/run.py --alternatives`.

    python mlflow_model.py COURSE_MODEL OUT_DIR   # in the MLflow venv: saves the model

`mlflow models serve -m OUT_DIR` then answers POST /invocations {"dataframe_records": [...]}.
"""

import pickle
import sys

import mlflow.pyfunc


class Churn(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["course_model"], "rb") as f:
            self.dv, self.model = pickle.load(f)

    def predict(self, context, model_input, params=None):
        return self.model.predict_proba(self.dv.transform(model_input.to_dict("records")))[:, 1]


if __name__ == "__main__":
    mlflow.pyfunc.save_model(sys.argv[2], python_model=Churn(),
                             artifacts={"course_model": sys.argv[1]})
