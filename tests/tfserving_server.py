"""A real gRPC server speaking TF Serving's PredictionService and ModelService.

``tensorflow_model_server`` cannot be installed on our build machines, so tests
run the SavedModels under ``<models_dir>/<name>/<version>/`` behind this server
instead. It follows TF Serving where our client can tell: model name, version
(latest when none is given) and signature are honoured; unknown models and
versions are NOT_FOUND, an unknown signature FAILED_PRECONDITION, bad inputs
INVALID_ARGUMENT; messages up to 256 MiB pass both ways.

In-process::

    server, port = start_tfserving_server(models_dir)
    server.stop(); server.start()   # back on the same port
    server.predict_delay = 5.0      # every Predict sleeps first (deadline tests)

As a process: ``python -m tests.tfserving_server --models DIR --port 8500``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
DEFAULT_SIGNATURE = "serving_default"
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE

_loaded_savedmodels: dict[Path, object] = {}
_loading_lock = threading.Lock()


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code = code
        self.details = details


class ModelRepository:
    """The SavedModels under ``models_dir``, loaded on first use and kept (per process)."""

    def __init__(self, models_dir):
        self.models_dir = Path(models_dir)

    def versions(self, name: str) -> list[int]:
        model_dir = self.models_dir / name
        if not name or "/" in name or not model_dir.is_dir():
            return []
        return sorted(
            int(path.name)
            for path in model_dir.iterdir()
            if path.name.isdigit() and (path / "saved_model.pb").is_file()
        )

    def resolve_version(self, model_spec) -> int:
        versions = self.versions(model_spec.name)
        if model_spec.HasField("version"):
            if model_spec.version.value not in versions:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: "
                    f"Specific({model_spec.name}, {model_spec.version.value})",
                )
            return model_spec.version.value
        if model_spec.version_label:
            raise RequestError(grpc.StatusCode.UNIMPLEMENTED, "version labels are not supported")
        if not versions:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Latest({model_spec.name})",
            )
        return versions[-1]

    def signature(self, name: str, version: int, signature_name: str):
        savedmodel = self._load(self.models_dir / name / str(version))
        signature_name = signature_name or DEFAULT_SIGNATURE
        if signature_name not in savedmodel.signatures:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{signature_name}" not found.',
            )
        return signature_name, savedmodel.signatures[signature_name]

    def _load(self, path: Path):
        path = path.resolve()
        with _loading_lock:
            if path not in _loaded_savedmodels:
                _loaded_savedmodels[path] = tf.saved_model.load(str(path))
            return _loaded_savedmodels[path]


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: "FakeTFServing"):
        self.server = server

    def Predict(self, request, context):
        self.server.predict_calls += 1
        if self.server.predict_delay:
            self.server.stopping.wait(self.server.predict_delay)
        try:
            return self._predict(request)
        except RequestError as error:
            context.abort(error.code, error.details)

    def _predict(self, request):
        repository = self.server.repository
        version = repository.resolve_version(request.model_spec)
        if self.server.state(request.model_spec.name, version) != AVAILABLE:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Specific({request.model_spec.name}, {version})",
            )
        signature_name, signature = repository.signature(
            request.model_spec.name, version, request.model_spec.signature_name
        )
        inputs = decode_inputs(request.inputs, signature.structured_input_signature[1])
        try:
            outputs = signature(**inputs)
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from error
        wanted = list(request.output_filter) or list(outputs)
        unknown = [key for key in wanted if key not in outputs]
        if unknown:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, f"output tensor alias not found: {unknown}"
            )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = signature_name
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key].numpy()))
        return response


def decode_inputs(protos, specs) -> dict:
    if set(protos) != set(specs):
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input keys {sorted(protos)} do not match the signature's {sorted(specs)}",
        )
    inputs = {}
    for key, proto in protos.items():
        try:
            array = tf.make_ndarray(proto)
        except Exception as error:  # malformed TensorProto
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input {key}: {error}") from error
        spec = specs[key]
        if tf.as_dtype(array.dtype) != spec.dtype:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Expects arg {key} to be {spec.dtype.name} but {array.dtype} is provided",
            )
        if not spec.shape.is_compatible_with(array.shape):
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {key} has shape {array.shape}, the signature wants {spec.shape}",
            )
        inputs[key] = tf.constant(array)
    return inputs


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: "FakeTFServing"):
        self.server = server

    def GetModelStatus(self, request, context):
        repository = self.server.repository
        spec = request.model_spec
        try:
            overridden = (spec.name, spec.version.value) in self.server.version_states
            if spec.HasField("version") and overridden:
                versions = [spec.version.value]  # a version the test says is still loading
            elif spec.HasField("version"):
                versions = [repository.resolve_version(spec)]
            else:
                versions = repository.versions(request.model_spec.name)
                if not versions:
                    raise RequestError(
                        grpc.StatusCode.NOT_FOUND,
                        f"Could not find any versions of model {request.model_spec.name}",
                    )
        except RequestError as error:
            context.abort(error.code, error.details)
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in versions:
            status = response.model_version_status.add()
            status.version = version
            status.state = self.server.state(request.model_spec.name, version)
        return response


class FakeTFServing:
    """Start, stop and start again on the same port; tests may tune the hooks."""

    def __init__(self, models_dir, port: int = 0, host: str = "127.0.0.1"):
        self.repository = ModelRepository(models_dir)
        self.host = host
        self.port = port
        self.predict_delay = 0.0  # seconds every Predict waits before answering
        self.predict_calls = 0
        # (name, version) -> ModelVersionStatus.State reported instead of AVAILABLE
        self.version_states: dict[tuple[str, int], int] = {}
        self.stopping = threading.Event()
        self._server = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> int:
        if self._server is not None:
            raise RuntimeError("server already running")
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Without this a second server could silently share a port in use.
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self), server)
        port = server.add_insecure_port(f"{self.host}:{self.port}")
        if not port:  # older grpc returns 0 instead of raising
            raise RuntimeError(f"could not bind {self.address}")
        self.port = port
        self.stopping.clear()
        server.start()
        self._server = server
        return port

    def stop(self, grace: float | None = None) -> None:
        if self._server is None:
            return
        self.stopping.set()
        self._server.stop(grace).wait()
        self._server = None

    def state(self, name: str, version: int) -> int:
        return self.version_states.get((name, version), AVAILABLE)

    @property
    def running(self) -> bool:
        return self._server is not None

    def wait_for_termination(self) -> None:
        self._server.wait_for_termination()


def start_tfserving_server(models_dir, port: int = 0, host: str = "127.0.0.1"):
    """A started FakeTFServing over ``models_dir`` and the port it listens on."""
    server = FakeTFServing(models_dir, port=port, host=host)
    return server, server.start()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", required=True, help="folder holding <name>/<version>/")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    server, port = start_tfserving_server(args.models, port=args.port, host=args.host)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: threading.Thread(target=server.stop).start())
    print(f"listening on {args.host}:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
