"""An OTLP/gRPC trace receiver built on OpenTelemetry's own protocol package
(`opentelemetry-proto`) and grpcio: nothing of ordermesh's. It accepts
`opentelemetry.proto.collector.trace.v1.TraceService/Export` and appends every span it receives
to a file, one JSON object per line, flushed at once, so a test can read what the platform
exported.

    python otlp_receiver.py <port> <out.jsonl>

It prints "listening" once it accepts calls and runs until it is killed.
"""

import json
import sys
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    if kind in ("array_value", "kvlist_value", "bytes_value"):
        return str(value)
    return value


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, out):
        self.out = out

    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            resource = {a.key: value_of(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    record = {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "status": span.status.code,
                        "service_name": resource.get("service.name"),
                        "attributes": {a.key: value_of(a.value) for a in span.attributes},
                    }
                    self.out.write(json.dumps(record) + "\n")
        self.out.flush()
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "a", encoding="utf-8") as out:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(out), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        print("listening", flush=True)
        server.wait_for_termination()


if __name__ == "__main__":
    main()
