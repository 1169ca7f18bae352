"""TEI's published OpenAPI document (docs/openapi.json of
huggingface/text-embeddings-inference, fetched by tools/fetch_peer_tests.sh)
against zprefill: each TEI path zprefill serves, its success and error
answers validated against the schema the document gives for that status."""
import json
import os

import jsonschema
import pytest
import requests

from tests.utils import RemoteOpenAIServer



def json_schema(x):
    """OpenAPI 3.0's schema dialect as JSON Schema: "nullable: true" is a
    type that also takes null (jsonschema knows no nullable)."""
    if isinstance(x, list):
        return [json_schema(v) for v in x]
    if not isinstance(x, dict):
        return x
    out = {k: json_schema(v) for k, v in x.items() if k != "nullable"}
    if x.get("nullable") and "type" in x:
        out["type"] = [x["type"], "null"]
    return out


SPEC = json_schema(json.load(open(os.path.join(os.environ["ZP_PEER_TESTS"], "tei", "openapi.json"))))


@pytest.fixture(scope="module")
def server():
    with RemoteOpenAIServer("tei-model", ["--max-model-len", "100"]) as s:
        yield s


def validate(path, method, status, body):
    op = SPEC["paths"][path][method]
    resp = op["responses"].get(str(status))
    assert resp is not None, f"{method.upper()} {path}: status {status} is not in TEI's document"
    content = resp.get("content", {}).get("application/json")
    if content is None:
        return
    schema = dict(content["schema"], components=SPEC["components"])
    jsonschema.validate(body, schema)


CASES = [
    ("/embed", {"inputs": "What is Deep Learning?"}, 200),
    ("/embed", {"inputs": ["a", "b"], "normalize": False, "truncate": True}, 200),
    ("/embed", {"inputs": []}, 400),
    ("/embed", {"inputs": "word " * 300}, 413),
    ("/rerank", {"query": "What is Deep Learning?", "texts": ["Deep Learning is ..."]}, 200),
    ("/rerank", {"query": "q", "texts": ["a", "b"], "return_text": True, "raw_scores": True}, 200),
    ("/rerank", {"query": "q", "texts": []}, 400),
    ("/tokenize", {"inputs": "test tokens"}, 200),
    ("/tokenize", {"inputs": ["a", "b c"]}, 200),
    ("/v1/embeddings", {"input": "What is Deep Learning?"}, 200),
]


@pytest.mark.parametrize("path,body,status", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_post(server, path, body, status):
    r = requests.post(server.url_for(path), json=body)
    # an input over the longest sequence: TEI answers 413 (batch size) or 422
    want = {413: (413, 422)}.get(status, (status,))
    assert r.status_code in want, r.text
    validate(path, "post", r.status_code, r.json())


def test_info(server):
    r = requests.get(server.url_for("info"))
    assert r.status_code == 200
    validate("/info", "get", 200, r.json())


def test_health(server):
    r = requests.get(server.url_for("health"))
    assert r.status_code == 200


DECODE = [
    ({"ids": [1, 2, 3]}, 200),
    ({"ids": [[1, 2], [3]], "skip_special_tokens": False}, 200),
    ({"ids": "not ids"}, 422),
]


@pytest.mark.parametrize("body,status", DECODE, ids=["single", "batch", "bad"])
def test_decode(server, body, status):
    r = requests.post(server.url_for("decode"), json=body)
    assert r.status_code == status, r.text
    validate("/decode", "post", status, r.json())
    if status == 200:  # the text of what /tokenize gave back
        t = requests.post(server.url_for("tokenize"), json={"inputs": "round trip"}).json()
        ids = [tok["id"] for tok in t[0]]
        assert requests.post(server.url_for("decode"), json={"ids": ids}).json() == ["round trip"]
