"""RemoteOpenAIServer as vLLM's tests use it (a context manager with
url_for), starting `zprefill serve` instead of vLLM: the model the test names
is served under that name ([engine] model_name) from ZP_PEER_MODEL (a local
checkpoint, models/default by default: the real Qwen3 tokenizer, so the
reranker template fits the tests' --max-model-len 100; the peers' reference
models are not here), --max-model-len
becomes --max-tokens; vLLM's other engine flags mean nothing to zprefill."""
import os
import socket
import subprocess
import tempfile
import time

import requests

ZPREFILL = os.environ.get("ZPREFILL", "./zprefill")
MODEL_DIR = os.environ.get("ZP_PEER_MODEL", "models/default")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RemoteOpenAIServer:
    def __init__(self, model, vllm_serve_args=(), *args, **kwargs):
        self.model = model
        cli = list(vllm_serve_args)
        max_len = "256"
        if "--max-model-len" in cli:
            max_len = cli[cli.index("--max-model-len") + 1]
        self.port = _free_port()
        self.tmp = tempfile.mkdtemp()
        self.log = open(os.path.join(self.tmp, "log"), "w")
        ini = os.path.join(self.tmp, "peer.ini")  # the ini key: builds without --model-name too
        with open(ini, "w") as f:
            f.write(f"[engine]\nmodel_name = {model}\n")
        self.proc = subprocess.Popen(
            [ZPREFILL, "serve", "--model", MODEL_DIR, "--config", ini, "--socket",
             os.path.join(self.tmp, "s"), "--dtype", "fp32", "--max-tokens", max_len,
             "--listen-tcp", f"127.0.0.1:{self.port}", "--log-level", "warn"], stderr=self.log)
        deadline = time.time() + 120  # a liveness bound, not a speed
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("zprefill exited at start: see " + self.log.name)
            try:
                if requests.get(self.url_for("health"), timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("zprefill was not ready in 120 s")

    @property
    def url_root(self):
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, *parts):
        return self.url_root + "/" + "/".join(str(p).strip("/") for p in parts)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()
