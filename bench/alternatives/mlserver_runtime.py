"""Seldon MLServer runtime for the course model, for `bench/run.py --alternatives`: the Open
Inference Protocol (V2) with a pandas-coded request, as MLServer's docs show for tabular data."""

import os
import pickle

from mlserver import MLModel
from mlserver.codecs import NumpyCodec, PandasCodec
from mlserver.types import InferenceRequest, InferenceResponse


class Churn(MLModel):
    async def load(self) -> bool:
        with open(os.environ["COURSE_MODEL"], "rb") as f:
            self.dv, self.model = pickle.load(f)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        frame = PandasCodec.decode_request(payload)
        probabilities = self.model.predict_proba(self.dv.transform(frame.to_dict("records")))[:, 1]
        return InferenceResponse(model_name=self.name, outputs=[
            NumpyCodec.encode_output("churn_probability", probabilities)])
