"""The Open Inference Protocol over gRPC (KServe's and Triton's `GRPCInferenceService`), with
the protocol's published stubs (`open-inference-grpc`). With `GRPC_PORT` set, every gunicorn
worker serves it beside HTTP (gunicorn.conf.py starts it after the fork): the workers share
the port (SO_REUSEPORT, the kernel spreads connections), the model, the settings, the API
keys and the metrics files, and the inference is `web.inference`'s, as over HTTP.

Each call is accounted as an HTTP request is: a request id (`x-request-id` metadata, else
generated) and the model version in the initial metadata, a JSON access line, and the
request counter and histogram, labelled with the method's path and the HTTP status the same
failure has over HTTP (so the alerting rules see both transports).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from gevent import monkey
from open_inference.grpc import protocol as pb
from open_inference.grpc.service import GRPCInferenceServiceServicer

from tabserve import __version__
from tabserve.model.validation import RequestError
from tabserve.serving.codecs import tensors
from tabserve.web.auth import presented_key
from tabserve.web.inference import check_model, infer
from tabserve.web.logs import access_record
from tabserve.web.middleware import valid_request_id
from tabserve.web.open_inference import EXTENSIONS
from tabserve.web.responses import INTERNAL_ERROR
from tabserve.web.service import Service

log = logging.getLogger(__name__)
# gunicorn's loggers, in every worker: the access log, and the error log whose level is LOG_LEVEL
access_log = logging.getLogger("gunicorn.access")
error_log = logging.getLogger("gunicorn.error")

SERVICE = "inference.GRPCInferenceService"
OPEN_METHODS = frozenset({"ServerLive", "ServerReady"})  # the probes, as /v2/health/* is
# the HTTP status of each outcome, for the metrics' `status` label
HTTP_STATUS = {grpc.StatusCode.OK: 200, grpc.StatusCode.INVALID_ARGUMENT: 400,
               grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.NOT_FOUND: 404,
               grpc.StatusCode.INTERNAL: 500}
# where each datatype's values are in a tensor's typed contents
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


class Refused(Exception):
    """A call answered with a status other than OK, and why."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class InferenceServicer(GRPCInferenceServiceServicer):
    """The protocol's six calls, over one service."""

    def __init__(self, current: Service):
        self.current = current

    async def ServerLive(self, request, context):  # noqa: N802 - the protocol's names
        return await self._call("ServerLive", request, context,
                          lambda call: pb.ServerLiveResponse(live=True))

    async def ServerReady(self, request, context):  # noqa: N802
        return await self._call("ServerReady", request, context,
                          lambda call: pb.ServerReadyResponse(ready=True))

    async def ModelReady(self, request, context):  # noqa: N802
        def answer(call):
            # not ready rather than NOT_FOUND for another model: the clients read it so
            try:
                check_model(self.current, request.name, request.version)
            except LookupError:
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)
        return await self._call("ModelReady", request, context, answer)

    async def ServerMetadata(self, request, context):  # noqa: N802
        return await self._call("ServerMetadata", request, context, lambda call: pb.ServerMetadataResponse(
            name="tabserve", version=__version__, extensions=EXTENSIONS))

    async def ModelMetadata(self, request, context):  # noqa: N802
        return await self._call("ModelMetadata", request, context,
                          lambda call: self._metadata(request))

    async def ModelInfer(self, request, context):  # noqa: N802
        return await self._call("ModelInfer", request, context,
                          lambda call: self._infer(request, call))

    def _metadata(self, request) -> pb.ModelMetadataResponse:
        current = self.current
        check_model(current, request.name, request.version)
        bundle = current.bundle
        return pb.ModelMetadataResponse(
            name=request.name, versions=[bundle.version],
            platform=f"tabserve/{bundle.metrics.get('chosen')}",
            inputs=[_tensor_metadata(t) for t in tensors.input_tensors(bundle.schema)],
            outputs=[_tensor_metadata(t) for t in
                     tensors.output_tensors(current.predictor.shape)])

    def _infer(self, request, call: dict[str, Any]) -> pb.ModelInferResponse:
        current = self.current
        check_model(current, request.model_name, request.model_version)
        answer = infer(current, _input_tensors(request, current.settings.max_batch_records),
                       [o.name for o in request.outputs])
        call["tabserve.records"] = answer.records
        response = pb.ModelInferResponse(
            model_name=request.model_name, model_version=answer.model_version,
            id=request.id or call["tabserve.request_id"],
            outputs=[pb.ModelInferResponse.InferOutputTensor(
                name=t.name, datatype=t.datatype, shape=t.shape) for t in answer.outputs],
            # as Triton answers: its client reads only raw contents for numbers
            raw_output_contents=[t.raw() for t in answer.outputs])
        if answer.warnings:
            response.parameters["warnings"].string_param = answer.warnings
        return response

    async def _call(self, method: str, request: Any, context: grpc.aio.ServicerContext,
              answer: Callable[[dict[str, Any]], Any]):
        """One call, accounted; `answer` gets the call's record (its request id, records...)
        and its errors become statuses (a message that is not the protocol's, too)."""
        started = time.perf_counter()
        current = self.current
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        given = metadata.get("x-request-id", "")
        call = {"PATH_INFO": f"/{SERVICE}/{method}", "REQUEST_METHOD": "GRPC",
                "REMOTE_ADDR": context.peer(), "tabserve.model_version": current.bundle.version,
                "tabserve.request_id": given if valid_request_id(given) else os.urandom(16).hex()}
        await context.send_initial_metadata((("x-request-id", call["tabserve.request_id"]),
                                             ("x-model-version", call["tabserve.model_version"])))
        code = grpc.StatusCode.OK
        try:
            if method not in OPEN_METHODS:
                call["tabserve.key_id"] = self._key_id(metadata)
            if isinstance(request, Garbled):
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(request))
            return answer(call)
        except Refused as err:
            code, message = err.code, str(err)
        except LookupError as err:
            code, message = grpc.StatusCode.NOT_FOUND, str(err.args[0])
        except RequestError as err:
            current.metrics.observe_problems([p.field for p in err.problems])
            code = grpc.StatusCode.INVALID_ARGUMENT
            message = "; ".join(str(p) for p in err.problems[:20])
        except ValueError as err:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(err)
        except Exception:  # a bug: logged with its cause, answered as HTTP answers one
            log.exception("unhandled error on gRPC %s", method)
            code, message = grpc.StatusCode.INTERNAL, INTERNAL_ERROR[2]
        finally:
            seconds = time.perf_counter() - started
            status = HTTP_STATUS.get(code, 500)
            current.metrics.observe_request(call["PATH_INFO"], "GRPC", status, seconds)
            _log_access(call, status, code, seconds)
        await context.abort(code, message)

    def _key_id(self, metadata: dict[str, str]) -> str | None:
        """The id of the call's API key (None when keys are off); `Refused` without a valid
        one."""
        keys = self.current.keys
        if keys is None:
            return None
        presented = presented_key(metadata.get("authorization", ""),
                                  metadata.get("x-api-key", ""))
        key = None if presented is None else keys.match(presented)
        if key is None:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED,
                          ("the API key is not valid" if presented else
                           "this call needs an API key") +
                          ": send it as 'authorization: Bearer <key>' or 'x-api-key: <key>' "
                          "metadata")
        return key


class Garbled:
    """A request whose bytes are not the protocol's message (grpcio would answer INTERNAL,
    "Exception deserializing request!": the client's fault is INVALID_ARGUMENT)."""

    def __init__(self, kind: type):
        self.kind = kind

    def __str__(self) -> str:
        return f"the request is not a {self.kind.__name__} message"


def _lenient(kind: type) -> Callable[[bytes], Any]:
    """`kind`'s parser that gives a `Garbled` for bytes it cannot parse, instead of raising."""
    def parse(data: bytes):
        try:
            return kind.FromString(data)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError, or a recursion limit
            return Garbled(kind)
    return parse


# each call of the protocol and the message it takes
CALLS = {"ServerLive": pb.ServerLiveRequest, "ServerReady": pb.ServerReadyRequest,
         "ModelReady": pb.ModelReadyRequest, "ServerMetadata": pb.ServerMetadataRequest,
         "ModelMetadata": pb.ModelMetadataRequest, "ModelInfer": pb.ModelInferRequest}


def _handlers(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """The protocol's calls, their requests parsed by `_lenient`."""
    return grpc.method_handlers_generic_handler(SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name), request_deserializer=_lenient(kind),
            response_serializer=lambda message: message.SerializeToString())
        for name, kind in CALLS.items()})


def _tensor_metadata(tensor: dict[str, Any]) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=tensor["name"],
                                                   datatype=tensor["datatype"],
                                                   shape=tensor["shape"])


def _input_tensors(request, limit: int) -> list[tensors.Tensor]:
    """The request's input tensors, with raw contents (what Triton's and KServe's clients
    send: read when the model has the field) or typed contents."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ValueError(f"raw_input_contents holds {len(raw)} tensors for "
                         f"{len(request.inputs)} inputs")
    if raw:
        return [tensors.Tensor(tensor.name, tensor.datatype, raw=raw[i])
                for i, tensor in enumerate(request.inputs)]
    return [tensors.Tensor(tensor.name, tensor.datatype, data=_typed_contents(tensor, limit))
            for tensor in request.inputs]


def _typed_contents(tensor, limit: int) -> list:
    field = CONTENTS.get(tensor.datatype)
    if field is None:
        raise ValueError(f"input {tensors.shown(tensor.name)}: datatype "
                         f"{tensors.shown(tensor.datatype)} is not one of {', '.join(CONTENTS)}")
    contents = getattr(tensor.contents, field)
    if len(contents) > limit:  # before a Python object is made for each
        raise ValueError(f"input {tensors.shown(tensor.name)}: {len(contents)} values exceed "
                         f"the limit of {limit} records (MAX_BATCH_RECORDS)")
    values = list(contents)
    if field != "bytes_contents":
        return values
    try:
        return [value.decode() for value in values]
    except UnicodeDecodeError:
        raise ValueError(f"input {tensors.shown(tensor.name)}: an element is not UTF-8 text") from None


def _log_access(call: dict[str, Any], status: int, code: grpc.StatusCode,
                seconds: float) -> None:
    line = access_record(call, status, seconds, error_log.isEnabledFor(logging.DEBUG))
    if line is not None:
        access_log.info(json.dumps({**line, "grpc_status": code.name}))


class GrpcServer:
    """A `grpc.aio` server on an event loop of its own thread, in this worker: one thread
    takes a call from the network to the answer (grpcio's synchronous server hands each call
    from its polling thread to a pool thread, and both take the call's lock)."""

    def __init__(self, current: Service, port: int):
        # the standard library's selector and sockets, not gevent's (its worker patches them)
        selector = monkey.get_original("selectors", "DefaultSelector")()
        self.loop = asyncio.SelectorEventLoop(selector)
        self.thread = threading.Thread(target=self.loop.run_forever, name="grpc", daemon=True)
        self.thread.start()
        try:
            self.server = self._run(self._start(current, port))
        except BaseException:
            self._close()
            raise

    def _run(self, coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _start(self, current: Service, port: int) -> grpc.aio.Server:
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", current.settings.max_body_bytes)])
        server.add_generic_rpc_handlers((_handlers(InferenceServicer(current)),))
        try:
            server.add_insecure_port(f"0.0.0.0:{port}")
        except RuntimeError:
            raise OSError(f"cannot serve gRPC on GRPC_PORT={port}: another program holds the "
                          "port; choose another GRPC_PORT") from None
        await server.start()
        return server

    def stop(self, grace: float) -> None:
        """Refuse new calls, give those under way `grace` seconds, then stop the thread."""
        try:
            self._run(self.server.stop(grace))
        finally:
            self._close()

    def _close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def serve(current: Service, port: int) -> GrpcServer:
    """Start serving the protocol on `port`, in this process, beside its other workers."""
    return GrpcServer(current, port)
