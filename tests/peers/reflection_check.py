"""A gRPC reflection client that no one on the project wrote: grpcio + grpcio-reflection.

Usage: reflection_check.py HOST:PORT --service NAME... --method FULL.METHOD=INPUT.TYPE...

Through reflection v1alpha (grpcio-reflection's own client) and v1 (the same client pointed at
the v1 service, whose messages are wire-identical), lists the server's services, checks that each
--service is listed, and resolves each --method to its input message. Exits non-zero on any
mismatch and prints one JSON line per version.
"""

import argparse
import json
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


class _V1Stub:
    """grpcio-reflection ships only v1alpha stubs; v1 differs only in the service name."""

    def __init__(self, channel):
        self.ServerReflectionInfo = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )


def check(channel, version, services, methods):
    database = ProtoReflectionDescriptorDatabase(channel)
    if version == "v1":
        database._stub = _V1Stub(channel)
    listed = sorted(database.get_services())
    missing = [s for s in services if s not in listed]
    pool = DescriptorPool(database)
    resolved = {}
    wrong = {}
    for spec in methods:
        method, expected_input = spec.split("=", 1)
        actual = pool.FindMethodByName(method).input_type.full_name
        resolved[method] = actual
        if actual != expected_input:
            wrong[method] = {"expected": expected_input, "actual": actual}
    result = {"version": version, "services": listed, "resolved": resolved}
    print(json.dumps(result))
    if missing or wrong:
        print(f"{version}: missing services {missing}, wrong inputs {wrong}", file=sys.stderr)
        return False
    return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("--service", action="append", default=[])
    parser.add_argument("--method", action="append", default=[])
    args = parser.parse_args()
    with grpc.insecure_channel(args.address) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        ok = all([check(channel, v, args.service, args.method) for v in ("v1", "v1alpha")])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
