"""Benchmarks: the product beside its peers (run.sh), delivery latency, resume replay."""
