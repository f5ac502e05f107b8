#!/usr/bin/env python3
"""A chat client in Python, generated from the .proto files with grpcio-tools.

Generate the stubs (once), then run it against a server's gRPC port:

    pip install grpcio-tools
    python3 -m grpc_tools.protoc -I im-protocol/proto --python_out=gen \
        --grpc_python_out=gen im/v1/im.proto im/v1/grpc.proto
    PYTHONPATH=gen python3 examples/python/grpc_chat.py 127.0.0.1:50051 \
        alice 'alice password' --to BOB_USER_ID --text 'hello from python'

It logs in with the unary Api.Login, opens the Chat.Connect stream with the
token in the `authorization` metadata, says Hello, sends one direct message,
prints the ack, then prints every message event until one from the other
side arrives (or --wait seconds pass). Each line printed is JSON.
"""
import argparse
import json
import queue
import sys
import threading

import grpc
from im.v1 import grpc_pb2_grpc, im_pb2


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("address", help="host:port of the gRPC listener")
    parser.add_argument("username")
    parser.add_argument("password")
    parser.add_argument("--to", type=int, required=True, help="user id to message")
    parser.add_argument("--text", default="hello from python")
    parser.add_argument("--wait", type=float, default=30.0)
    args = parser.parse_args()

    channel = grpc.insecure_channel(args.address)
    api = grpc_pb2_grpc.ApiStub(channel)
    auth = api.Login(im_pb2.Login(username=args.username, password=args.password))
    print(json.dumps({"logged_in": auth.user_id}), flush=True)

    # Frames to send; None ends the stream (a clean close).
    outgoing: "queue.Queue[im_pb2.ClientFrame | None]" = queue.Queue()

    def requests():
        while True:
            frame = outgoing.get()
            if frame is None:
                return
            yield frame

    chat = grpc_pb2_grpc.ChatStub(channel)
    frames = chat.Connect(requests(), metadata=[("authorization", f"Bearer {auth.token}")])
    outgoing.put(im_pb2.ClientFrame(request_id=1, hello=im_pb2.Hello(protocol_version=1, device_id="python")))
    outgoing.put(
        im_pb2.ClientFrame(
            request_id=2,
            send=im_pb2.SendMessage(
                to_user_id=args.to,
                client_msg_id="python-1",
                content=im_pb2.Content(text=im_pb2.Text(body=args.text)),
            ),
        )
    )
    # Give up after --wait seconds without the reply.
    timer = threading.Timer(args.wait, frames.cancel)
    timer.start()
    status = 1
    try:
        for frame in frames:
            kind = frame.WhichOneof("body")
            if kind is None:
                # A heartbeat: answer with an empty frame.
                outgoing.put(im_pb2.ClientFrame())
            elif kind == "response":
                result = frame.response.WhichOneof("result")
                if result == "error":
                    print(json.dumps({"error": frame.response.error.message}), flush=True)
                    break
                if result == "ack":
                    ack = frame.response.ack
                    print(json.dumps({"ack": {"conversation_id": ack.conversation_id, "seq": ack.seq}}), flush=True)
            elif frame.event.WhichOneof("kind") == "message":
                m = frame.event.message
                print(json.dumps({"message": {"from": m.sender_id, "seq": m.seq, "text": m.content.text.body}}), flush=True)
                if m.sender_id != auth.user_id:
                    status = 0
                    break
    except grpc.RpcError as e:
        print(json.dumps({"rpc_error": str(e.code())}), flush=True)
    finally:
        timer.cancel()
        outgoing.put(None)
        channel.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
