"""edgecorn in the QUIC interop runner: the endpoint (run_endpoint.sh, Dockerfile) and a
local runner (`python -m interop`) with a UDP relay that plays the network scenarios."""
