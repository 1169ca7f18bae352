"""The peers' `tests` package as their HTTP tests import it: only the server
fixture (tests.utils.RemoteOpenAIServer) is replaced, by one that starts
zprefill (tests/test_peers.sh puts this directory first on sys.path)."""
