"""Test suite (a regular package, so site-packages that ship a top-level `tests` cannot shadow it)."""
