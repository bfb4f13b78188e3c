"""The benchmark of issue 7: `python -m bench` (or bench/run). See bench/run.py."""
