"""Where the ONNX Runtime shared library is: ``$ORT_DYLIB_PATH``, else the one bundled in the
``onnxruntime`` package this wheel depends on (found without importing it)."""

import importlib.util
import os
import pathlib


def find():
    """The library's path, or ``None`` (the runtime then reports what is missing)."""
    env = os.environ.get("ORT_DYLIB_PATH")
    if env:
        return env
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        capi = pathlib.Path(root) / "capi"
        for pattern in ("libonnxruntime.so*", "libonnxruntime.*dylib", "onnxruntime.dll"):
            found = sorted(p for p in capi.glob(pattern) if p.is_file())
            if found:
                # The versioned file (libonnxruntime.so.1.31.1) sorts last.
                return str(found[-1])
    return None
