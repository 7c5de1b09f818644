#!/usr/bin/env python3
"""Write a one-binary container image as a docker archive, for `ctr images import`.

hack/cluster.sh builds the node's own images with it: the pod sandbox (pause), CoreDNS and Jaeger
(the chart's in-cluster tracing backend), each a static Go binary from hack/build-k8s-bins.sh and
nothing else (no shell, no libc), so no registry and no base image are needed. The archive is
reproducible: fixed timestamps, owners and order, so the same binary gives the same image id.

Usage: hack/local-image.py --binary PATH --path /pause --ref localhost/baton-pause:v1.0.0
           [--user 65535:65535] [--arg ARG ...] [--env NAME=VALUE ...] --output FILE
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile


def _layer(binary: str, path: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            d = tarfile.TarInfo("/".join(parts[:i]))
            d.type = tarfile.DIRTYPE
            d.mode = 0o755
            tar.addfile(d)
        info = tarfile.TarInfo("/".join(parts))
        info.mode = 0o755
        info.size = os.path.getsize(binary)
        with open(binary, "rb") as f:
            tar.addfile(info, f)
    return buf.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--binary", required=True)
    p.add_argument("--path", required=True, help="where the binary lives in the image")
    p.add_argument(
        "--ref", required=True, help="the image's name, e.g. localhost/baton-pause:v1.0.0"
    )
    p.add_argument("--user", default="65535:65535")
    p.add_argument("--arg", action="append", default=[], help="an argument after the entrypoint")
    p.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE in the image's environment"
    )
    p.add_argument("--output", required=True)
    a = p.parse_args()
    for e in a.env:
        if "=" not in e or not e.split("=", 1)[0]:
            p.error(f"--env {e!r}: not NAME=VALUE")

    layer = _layer(a.binary, a.path)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64" if os.uname().machine == "x86_64" else "arm64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": [a.path], "Cmd": a.arg, "User": a.user, "Env": a.env},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "hack/local-image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id[len("sha256:") :] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [a.ref], "Layers": [layer_name]}]
    files = [
        (config_name, config_bytes),
        (layer_name, layer),
        ("manifest.json", json.dumps(manifest, separators=(",", ":")).encode()),
    ]
    tmp = a.output + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo(layer_name.split("/")[0])
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tar.addfile(d)
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, a.output)
    print(f"{a.output}: {a.ref}, config {config_name[:12]}, layer {len(layer)} bytes")


if __name__ == "__main__":
    main()
