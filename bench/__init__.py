"""tollway's benchmark: the same load sent to a fast fake upstream directly and through tollway.

Run ``python -m bench --help``; see ``bench/README.md``.
"""
