"""Only where vLLM is not installed (tests/test_peers.sh checks): the response
models vLLM's HTTP tests validate against, with the fields vLLM's protocol
declares (vllm/entrypoints/pooling/*/protocol.py), and current_platform."""
