"""pybpf-agent: a Prometheus exporter of kernel metrics built on pybpf.

The agent only uses pybpf's public API; its BPF programs live in programs/
and ship compiled (CO-RE) inside this package (``pybpf_agent/bpf``).
"""

__version__ = "0.1.0"
